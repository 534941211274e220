// Cache plugin `ram`: one contiguous buffer per cut; batches are gathered
// with TBB-parallel row copies.

#include <cstring>
#include <numeric>

#include <ATen/ATen.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "learndrop/sdk.h"

namespace {

class RamCache : public ld::FeatureCache {
 public:
  void begin(std::size_t cut, std::int64_t count, const std::vector<std::int64_t>& shape,
             at::ScalarType dtype) override {
    cut_ = cut;
    shape_ = shape;
    std::vector<std::int64_t> sizes = {count};
    sizes.insert(sizes.end(), shape.begin(), shape.end());
    try {
      buffer_ = at::empty(sizes, at::TensorOptions().dtype(dtype));
    } catch (const std::exception& e) {
      throw ld::Error("cache ram: cannot allocate " + std::to_string(count) + " samples at cut " + std::to_string(cut) +
                      ": " + e.what());
    }
    row_bytes_ = static_cast<std::size_t>(buffer_.numel() / std::max<std::int64_t>(count, 1)) * buffer_.element_size();
    written_.assign(static_cast<std::size_t>(count), false);
  }

  void put(const std::vector<std::int64_t>& indices, const at::Tensor& batch) override {
    if (batch.size(0) != static_cast<std::int64_t>(indices.size())) {
      throw ld::Error("cache ram: put of " + std::to_string(indices.size()) + " indices with a batch of " +
                      std::to_string(batch.size(0)));
    }
    at::Tensor rows = batch.to(buffer_.scalar_type()).contiguous();
    if (static_cast<std::size_t>(rows.numel() / std::max<std::int64_t>(rows.size(0), 1)) * rows.element_size() !=
        row_bytes_) {
      throw ld::Error("cache ram: put of a batch whose samples do not match the cache shape");
    }
    const char* src = static_cast<const char*>(rows.data_ptr());
    char* dst = static_cast<char*>(buffer_.data_ptr());
    for (std::size_t r = 0; r < indices.size(); ++r) {
      std::int64_t i = indices[r];
      check(i);
      if (written_[static_cast<std::size_t>(i)])
        throw ld::Error("cache ram: sample " + std::to_string(i) + " written twice");
      written_[static_cast<std::size_t>(i)] = true;
      std::memcpy(dst + static_cast<std::size_t>(i) * row_bytes_, src + r * row_bytes_, row_bytes_);
    }
  }

  void finish() override {
    auto missing = std::count(written_.begin(), written_.end(), false);
    if (missing != 0) throw ld::Error("cache ram: finish with " + std::to_string(missing) + " samples never written");
    written_.clear();
    written_.shrink_to_fit();
  }

  at::Tensor get(const std::vector<std::int64_t>& indices) override {
    std::vector<std::int64_t> sizes = {static_cast<std::int64_t>(indices.size())};
    sizes.insert(sizes.end(), shape_.begin(), shape_.end());
    at::Tensor out = at::empty(sizes, buffer_.options());
    for (auto i : indices) check(i);
    const char* src = static_cast<const char*>(buffer_.data_ptr());
    char* dst = static_cast<char*>(out.data_ptr());
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, indices.size(), 16), [&](const tbb::blocked_range<std::size_t>& r) {
          for (std::size_t k = r.begin(); k < r.end(); ++k) {
            std::memcpy(dst + k * row_bytes_, src + static_cast<std::size_t>(indices[k]) * row_bytes_, row_bytes_);
          }
        });
    return out.scalar_type() == at::kFloat ? out : out.to(at::kFloat);
  }

  std::int64_t bytes() const override { return buffer_.defined() ? buffer_.numel() * buffer_.element_size() : 0; }

  std::string describe() const override {
    std::string s =
        "ram, cut " + std::to_string(cut_) + ", " + std::string(c10::toString(buffer_.scalar_type())) + " [";
    for (std::size_t i = 0; i < shape_.size(); ++i) s += (i ? "," : "") + std::to_string(shape_[i]);
    return s + "] x " + std::to_string(buffer_.size(0));
  }

 private:
  void check(std::int64_t i) const {
    if (i < 0 || i >= buffer_.size(0)) {
      throw ld::Error("cache ram: index " + std::to_string(i) + " out of range [0, " + std::to_string(buffer_.size(0)) +
                      ")");
    }
  }

  std::size_t cut_ = 0;
  std::vector<std::int64_t> shape_;
  at::Tensor buffer_;
  std::size_t row_bytes_ = 0;
  std::vector<bool> written_;
};

void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kCache;
  m.name = "ram";
  m.version = "1.0.0";
  m.description = "feature maps in one contiguous RAM buffer per cut, TBB-parallel gather";
  r.add_cache(m, [](const ld::Options&, const ld::CacheContext&) { return std::make_unique<RamCache>(); });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
