#pragma once
// Test evaluation of the full model.

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "learndrop/core/device.h"
#include "learndrop/dataset.h"
#include "learndrop/model.h"
#include "loop/run_state.h"

namespace ld::core {

class DataParallel;
class DropController;

/// Test loss and accuracy of the full model (every stage, eval mode) on
/// `device` in `precision`. In a data-parallel run each rank evaluates its
/// contiguous 1/world of the test set, and the sums are all-reduced.
EvalResult evaluate(StagedModel& model, const Dataset& dataset, std::int64_t batch_size, at::Device device,
                    Precision precision, DataParallel& dp);

/// Loss and accuracy of the full model (eval mode) on the training samples
/// at positions [from, to) of `controller` (a stream's part that has just
/// arrived, before training on it), without their random transform where the
/// dataset has an untransformed form.
EvalResult evaluate_samples(StagedModel& model, const Dataset& dataset, const DropController& controller,
                            std::int64_t from, std::int64_t to, std::int64_t batch_size, at::Device device,
                            Precision precision);

}  // namespace ld::core
