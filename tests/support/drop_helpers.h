#pragma once
// Tests drop through the same method the trainer uses, DropController::apply.

#include <cstddef>
#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "learndrop/core/drop_controller.h"

namespace ld::test {

/// DropController::apply of a decision to drop to `cut` that must drop
/// (no optimizer, no feed): what the drop did.
inline core::DropReport drop_to(core::DropController& controller, std::size_t cut) {
  return controller.apply(Decision{cut, "test"}).drop.value();
}

/// The training inputs of `indices` in the epoch of `epoch_seed` as the
/// controller's batch source gives them for a batch of exactly those samples
/// (batch 0 of the epoch): the dataset's training transform at cut 0, each
/// sample's cached view drawn for the epoch after a drop. Model layout,
/// float32, on the CPU.
inline at::Tensor inputs(const core::DropController& controller, const std::vector<std::int64_t>& indices,
                         std::uint64_t epoch_seed) {
  auto source = controller.source();
  source->begin(indices, static_cast<std::int64_t>(indices.size()), 0, 1, epoch_seed);
  at::Tensor x = source->batch(0, indices).images.to(at::kCPU).to(at::kFloat);
  source->end();
  return x;
}

}  // namespace ld::test
