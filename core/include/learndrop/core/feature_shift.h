#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ld::core {

/// Random translations of cached feature maps: the dataset's random input
/// shift (a ShiftFlip of up to `max_shift` input pixels) carried to a cut
/// whose maps have `stride` input pixels per map pixel.
///
/// A convolutional prefix is translation-equivariant: shifting its input by
/// a multiple of its stride shifts its output map by that multiple divided by
/// the stride. So a shift of the cached map of the *untransformed* image
/// stands in for running the frozen prefix on the shifted image; it is exact
/// wherever the prefix's receptive field sees neither the image border nor
/// the map border, and differs inside that band (tests/unit/test_feature_shift
/// measures how much).
struct FeatureShift {
  std::int64_t stride = 1;     ///< Input pixels per map pixel (0 when not an integer).
  std::int64_t max_shift = 0;  ///< In map pixels: floor(input max_shift / stride); 0 = off.
  /// Per channel: the frozen prefix's output on an image made only of the
  /// dataset's fill value (what the map shows where the input was padding).
  std::vector<float> fill;
};

/// Translates every sample of `stored` (storage layout [B, H, W, C]) by
/// (dy[b], dx[b]) map pixels: output (y, x) is input (y + dy, x + dx), and
/// `fill` (one value per channel) outside. Float32 CPU batches are moved
/// row by row; others (bfloat16/float16, GPU) take shift_stored_gather, on
/// their device and in their type.
at::Tensor shift_stored_gather(const at::Tensor& stored, const std::vector<std::int64_t>& dy,
                               const std::vector<std::int64_t>& dx, const std::vector<float>& fill);
at::Tensor shift_stored(const at::Tensor& stored, const std::vector<std::int64_t>& dy,
                        const std::vector<std::int64_t>& dx, const std::vector<float>& fill);

/// The same translation of a model-layout batch ([B, C, H, W], any strides);
/// the input-space transform of a ShiftFlip dataset, for tests and tools.
at::Tensor shift_images(const at::Tensor& images, const std::vector<std::int64_t>& dy,
                        const std::vector<std::int64_t>& dx, const std::vector<float>& fill);

}  // namespace ld::core
