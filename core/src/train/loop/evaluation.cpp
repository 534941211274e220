#include "loop/evaluation.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>

#include "parallel/data_parallel.h"
#include "learndrop/core/drop_controller.h"
#include "learndrop/core/interrupt.h"

namespace ld::core {

namespace {
// Sums of the loss and of the correct predictions of one batch, on the device.
void add_batch(StagedModel& model, const Batch& b, at::Device device, at::Tensor& loss, at::Tensor& correct) {
  const at::Tensor labels = b.labels.to(device);
  at::Tensor images = b.images.dim() == 4 ? b.images.contiguous(at::MemoryFormat::ChannelsLast) : b.images;
  at::Tensor logits = model.forward(images.to(device), 0);
  loss += torch::nn::functional::cross_entropy(
              logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
              .to(at::kDouble);
  correct += logits.argmax(1).eq(labels).sum();
}
}  // namespace

EvalResult evaluate(StagedModel& model, const Dataset& dataset, std::int64_t batch_size, at::Device device,
                    Precision precision, DataParallel& dp) {
  model.eval();
  at::NoGradGuard no_grad;
  AutocastGuard autocast(device, precision);
  const std::int64_t n = dataset.size(Split::kTest);
  const auto [first, last] = dp.test_rows(n);
  // Summed on the device; read once at the end.
  at::Tensor loss = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device));
  at::Tensor correct = at::zeros({}, at::TensorOptions().dtype(at::kLong).device(device));
  for (std::int64_t begin = first; begin < last; begin += batch_size) {
    throw_if_interrupted();
    std::int64_t end = std::min(last, begin + batch_size);
    std::vector<std::int64_t> idx(static_cast<std::size_t>(end - begin));
    std::iota(idx.begin(), idx.end(), begin);
    add_batch(model, dataset.get_batch(Split::kTest, idx, 0), device, loss, correct);
  }
  dp.reduce({loss, correct});
  return {n ? loss.item<double>() / n : 0.0, n ? static_cast<double>(correct.item<std::int64_t>()) / n : 0.0};
}

EvalResult evaluate_samples(StagedModel& model, const Dataset& dataset, const DropController& controller,
                            std::int64_t from, std::int64_t to, std::int64_t batch_size, at::Device device,
                            Precision precision) {
  model.eval();  // as evaluate: the loop puts the model back in training mode at the next epoch
  ShiftFlip shift_flip;
  const bool untransformed = dataset.random_train_transform() && dataset.shift_flip(shift_flip);
  EvalResult r;
  {
    at::NoGradGuard no_grad;
    AutocastGuard autocast(device, precision);
    at::Tensor loss = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device));
    at::Tensor correct = at::zeros({}, at::TensorOptions().dtype(at::kLong).device(device));
    for (std::int64_t begin = from; begin < to; begin += batch_size) {
      throw_if_interrupted();
      std::vector<std::int64_t> idx;
      for (std::int64_t p = begin; p < std::min(to, begin + batch_size); ++p) idx.push_back(controller.sample_of(p));
      add_batch(model, untransformed ? dataset.get_untransformed(idx, false) : dataset.get_batch(Split::kTrain, idx, 0),
                device, loss, correct);
    }
    const auto n = static_cast<double>(to - from);
    if (n > 0) r = {loss.item<double>() / n, static_cast<double>(correct.item<std::int64_t>()) / n};
  }
  return r;
}

}  // namespace ld::core
