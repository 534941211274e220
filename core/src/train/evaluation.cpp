#include "evaluation.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>

#include "data_parallel.h"
#include "learndrop/core/interrupt.h"

namespace ld::core {

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
    Batch b = dataset.get_batch(Split::kTest, idx, 0);
    const at::Tensor labels = b.labels.to(device);
    at::Tensor images = b.images.dim() == 4 ? b.images.contiguous(at::MemoryFormat::ChannelsLast) : b.images;
    at::Tensor logits = model.forward(images.to(device), 0);
    loss += torch::nn::functional::cross_entropy(
                logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                .to(at::kDouble);
    correct += logits.argmax(1).eq(labels).sum();
  }
  dp.reduce({loss, correct});
  return {n ? loss.item<double>() / n : 0.0, n ? static_cast<double>(correct.item<std::int64_t>()) / n : 0.0};
}

}  // namespace ld::core
