#include "run/head_fit.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>

#include "learndrop/core/interrupt.h"
#include "learndrop/core/seeds.h"
#include "learndrop/error.h"
#include "loop/optimizer.h"

namespace ld::core {

namespace {

// The batch of `idx` as the fit sees it: view 0 the untransformed image (or
// one seeded draw of the transform), view 1 its mirror.
Batch view_batch(const Dataset& dataset, const std::vector<std::int64_t>& idx, bool shift_flip, int view,
                 std::uint64_t seed) {
  if (shift_flip) return dataset.get_untransformed(idx, view == 1);
  return dataset.get_batch(Split::kTrain, idx, seed);
}

}  // namespace

HeadFit fit_head(StagedModel& model, const Dataset& dataset, const std::vector<std::int64_t>& samples,
                 const RunConfig& cfg, at::Device device, Precision precision, std::int64_t flops_per_sample) {
  const auto start = std::chrono::steady_clock::now();
  HeadFit fit;
  fit.samples = static_cast<std::int64_t>(samples.size());
  fit.epochs = cfg.model_head_epochs;
  fit.lr = cfg.model_head_lr;
  ShiftFlip sf;
  const bool augments = dataset.random_train_transform();
  const bool shift_flip = augments && dataset.shift_flip(sf);
  fit.views = shift_flip && sf.flip ? 2 : 1;
  const std::uint64_t draw_seed = mix_seed(cfg.seed, 0x6865616466697ULL);  // "headfi"
  const std::int64_t batch = cfg.train.batch_size;

  // The stages' output of every view, once, as the cache build runs them:
  // eval mode, no gradients, the run's precision.
  std::vector<at::Tensor> features, labels;
  model.eval();
  {
    at::NoGradGuard no_grad;
    AutocastGuard autocast(device, precision);
    for (int v = 0; v < fit.views; ++v) {
      for (std::size_t begin = 0; begin < samples.size(); begin += static_cast<std::size_t>(batch)) {
        throw_if_interrupted();
        const std::vector<std::int64_t> idx(samples.begin() + static_cast<std::ptrdiff_t>(begin),
                                            samples.begin() + static_cast<std::ptrdiff_t>(
                                                                  std::min(samples.size(), begin + batch)));
        Batch b = view_batch(dataset, idx, shift_flip, v, draw_seed);
        at::Tensor x = b.images.dim() == 4 ? b.images.contiguous(at::MemoryFormat::ChannelsLast) : b.images;
        x = x.to(device);
        for (std::size_t s = 0; s < model.num_stages(); ++s) x = model.forward_stage(s, x);
        features.push_back(x.to(at::kFloat));
        labels.push_back(b.labels.to(device));
      }
    }
  }
  const at::Tensor all_x = at::cat(features);
  const at::Tensor all_y = at::cat(labels);
  features.clear();
  labels.clear();
  const std::int64_t rows = all_x.size(0);
  fit.feature_bytes = static_cast<double>(all_x.numel() * all_x.element_size());
  fit.feature_flops = rows * flops_per_sample;

  // The head alone, in training mode, from its fresh initialisation.
  auto head = model.head_module();
  head->train();
  std::vector<at::Tensor> params;
  for (const auto& p : head->parameters()) params.push_back(p);
  torch::optim::SGD sgd(params, torch::optim::SGDOptions(cfg.model_head_lr)
                                    .momentum(cfg.train.momentum)
                                    .nesterov(cfg.train.nesterov && cfg.train.momentum > 0)
                                    .weight_decay(cfg.train.weight_decay));
  const std::int64_t steps_per_epoch = (rows + batch - 1) / batch;
  // The run's schedule function, set to the fit's epochs and rate: cosine to 0, no warm-up.
  TrainSettings schedule = cfg.train;
  schedule.epochs = cfg.model_head_epochs;
  schedule.lr = cfg.model_head_lr;
  schedule.lr_schedule = "cosine";
  schedule.warmup_epochs = 0;
  const std::uint64_t order_seed = mix_seed(cfg.seed, 0x6865616470ULL);  // "headp"
  std::int64_t step = 0;
  for (std::int64_t e = 0; e < cfg.model_head_epochs; ++e) {
    const std::vector<std::int64_t> order = epoch_order(rows, order_seed, e);
    const at::Tensor perm = at::tensor(order, at::kLong).to(device);
    double loss_sum = 0;
    std::int64_t correct = 0;
    for (std::int64_t begin = 0; begin < rows; begin += batch, ++step) {
      throw_if_interrupted();
      const at::Tensor pick = perm.slice(0, begin, std::min(rows, begin + batch));
      const at::Tensor x = all_x.index_select(0, pick);
      const at::Tensor y = all_y.index_select(0, pick);
      const double lr = learning_rate(schedule, static_cast<double>(step) / static_cast<double>(steps_per_epoch));
      for (auto& g : sgd.param_groups()) g.options().set_lr(lr);
      sgd.zero_grad();
      const at::Tensor logits = model.forward_head(x);
      const at::Tensor loss = torch::nn::functional::cross_entropy(logits, y);
      loss.backward();
      sgd.step();
      loss_sum += loss.item<double>() * static_cast<double>(y.size(0));
      correct += logits.argmax(1).eq(y).sum().item<std::int64_t>();
    }
    fit.train_loss = loss_sum / static_cast<double>(rows);
    fit.train_accuracy = static_cast<double>(correct) / static_cast<double>(rows);
  }
  if (!std::isfinite(fit.train_loss)) {
    throw Error("model.head: probe: the head's fit diverged (loss " + std::to_string(fit.train_loss) +
                " in its last epoch); lower model.head_lr (" + std::to_string(cfg.model_head_lr) + ")");
  }
  fit.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return fit;
}

}  // namespace ld::core
