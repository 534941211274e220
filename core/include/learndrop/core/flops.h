#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace ld {
class StagedModel;
}

namespace ld::core {

/// Forward FLOPs of whatever `fn` runs on the calling thread, counted from
/// the operators it dispatches: 2 x multiply-accumulates of convolutions
/// (`aten::convolution`) and of linear layers and matrix products
/// (`aten::linear`, `aten::addmm`, `aten::mm`, `aten::matmul`, `aten::bmm`).
/// Element-wise operations (bias, batch norm, activations, pooling) are not
/// counted.
std::int64_t count_forward_flops(const std::function<void()>& fn);

/// Per-sample shapes and forward FLOPs of every stage and of the head,
/// found once by propagating one sample through the model.
struct ModelProfile {
  std::vector<std::vector<std::int64_t>> stage_output_shapes;  ///< [C, H, W] after each stage.
  std::vector<std::int64_t> stage_flops;                       ///< Per sample.
  std::int64_t head_flops = 0;                                 ///< Per sample.

  /// FLOPs of one sample through stages [from, n) and the head.
  std::int64_t flops_from(std::size_t from) const;
  /// FLOPs of one sample through stages [from, to).
  std::int64_t stage_range_flops(std::size_t from, std::size_t to) const;
};

/// Profiles `model` (in eval mode, without gradients; its train/eval state is
/// restored afterwards) for one sample of `sample_shape` ([C, H, W]).
ModelProfile profile_model(StagedModel& model, const std::vector<std::int64_t>& sample_shape);

}  // namespace ld::core
