#include "learndrop/core/feature_shift.h"

#include <algorithm>
#include <cstring>
#include <string>

#include <ATen/ATen.h>
#include <ATen/TensorIndexing.h>

#include "learndrop/error.h"

namespace ld::core {

namespace {
void check_shifts(std::int64_t batch, std::int64_t channels, const std::vector<std::int64_t>& dy,
                  const std::vector<std::int64_t>& dx, const std::vector<float>& fill) {
  if (static_cast<std::int64_t>(dy.size()) != batch || static_cast<std::int64_t>(dx.size()) != batch) {
    throw Error("internal: " + std::to_string(dy.size()) + "/" + std::to_string(dx.size()) + " shifts for a batch of " +
                std::to_string(batch));
  }
  if (static_cast<std::int64_t>(fill.size()) != channels) {
    throw Error("internal: " + std::to_string(fill.size()) + " fill values for " + std::to_string(channels) +
                " channels");
  }
}
}  // namespace

at::Tensor shift_stored_gather(const at::Tensor& stored, const std::vector<std::int64_t>& dy,
                               const std::vector<std::int64_t>& dx, const std::vector<float>& fill) {
  if (stored.dim() != 4) throw Error("internal: shift_stored needs a [B, H, W, C] batch");
  const std::int64_t b = stored.size(0), h = stored.size(1), w = stored.size(2), c = stored.size(3);
  check_shifts(b, c, dy, dx, fill);
  const auto longs = at::TensorOptions().dtype(at::kLong).device(stored.device());
  const at::Tensor ys = at::arange(h, longs).view({1, h}) + at::tensor(dy, at::kLong).to(stored.device()).view({b, 1});
  const at::Tensor xs = at::arange(w, longs).view({1, w}) + at::tensor(dx, at::kLong).to(stored.device()).view({b, 1});
  const at::Tensor inside = (ys.ge(0) & ys.lt(h)).view({b, h, 1}) & (xs.ge(0) & xs.lt(w)).view({b, 1, w});
  const at::Tensor gathered = stored.index({at::arange(b, longs).view({b, 1, 1}), ys.clamp(0, h - 1).view({b, h, 1}),
                                            xs.clamp(0, w - 1).view({b, 1, w})});
  const at::Tensor fill_values =
      at::tensor(fill, at::kFloat).to(stored.device()).to(stored.scalar_type()).view({1, 1, 1, c});
  return at::where(inside.unsqueeze(-1), gathered, fill_values).contiguous();
}

at::Tensor shift_stored(const at::Tensor& stored, const std::vector<std::int64_t>& dy,
                        const std::vector<std::int64_t>& dx, const std::vector<float>& fill) {
  if (stored.dim() != 4) throw Error("internal: shift_stored needs a [B, H, W, C] batch");
  if (!stored.is_cpu() || stored.scalar_type() != at::kFloat || !stored.is_contiguous()) {
    return shift_stored_gather(stored, dy, dx, fill);
  }
  const std::int64_t b = stored.size(0), h = stored.size(1), w = stored.size(2), c = stored.size(3);
  check_shifts(b, c, dy, dx, fill);
  at::Tensor out = at::empty_like(stored);
  const float* in = stored.data_ptr<float>();
  float* o = out.data_ptr<float>();
  std::vector<float> fill_row(static_cast<std::size_t>(w * c));
  for (std::int64_t x = 0; x < w; ++x) std::copy(fill.begin(), fill.end(), fill_row.begin() + x * c);
  const std::size_t row_bytes = static_cast<std::size_t>(w * c) * sizeof(float);
  for (std::int64_t s = 0; s < b; ++s) {
    const std::int64_t sy = dy[static_cast<std::size_t>(s)], sx = dx[static_cast<std::size_t>(s)];
    // Output columns [x0, x1) read input columns [x0 + sx, x1 + sx).
    const std::int64_t x0 = std::clamp<std::int64_t>(-sx, 0, w), x1 = std::clamp<std::int64_t>(w - sx, 0, w);
    for (std::int64_t y = 0; y < h; ++y) {
      float* dst = o + ((s * h + y) * w) * c;
      const std::int64_t iy = y + sy;
      if (iy < 0 || iy >= h || x1 <= x0) {
        std::memcpy(dst, fill_row.data(), row_bytes);
        continue;
      }
      const float* src = in + ((s * h + iy) * w) * c;
      std::memcpy(dst, fill_row.data(), static_cast<std::size_t>(x0 * c) * sizeof(float));
      std::memcpy(dst + x0 * c, src + (x0 + sx) * c, static_cast<std::size_t>((x1 - x0) * c) * sizeof(float));
      std::memcpy(dst + x1 * c, fill_row.data(), static_cast<std::size_t>((w - x1) * c) * sizeof(float));
    }
  }
  return out;
}

at::Tensor shift_images(const at::Tensor& images, const std::vector<std::int64_t>& dy,
                        const std::vector<std::int64_t>& dx, const std::vector<float>& fill) {
  if (images.dim() != 4) throw Error("internal: shift_images needs a [B, C, H, W] batch");
  at::Tensor stored = images.to(at::kFloat).permute({0, 2, 3, 1}).contiguous();
  return shift_stored(stored, dy, dx, fill).permute({0, 3, 1, 2});
}

}  // namespace ld::core
