// run_training: setup (run_setup.cpp: plugins and parts from the config),
// the loop (here: epochs, steps, evaluation points, drops) and reporting
// (run_report.cpp: console and run folder).
#include "learndrop/core/trainer.h"

#include <numeric>
#include <vector>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <tbb/global_control.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include "learndrop/core/interrupt.h"
#include "learndrop/core/seeds.h"
#include "run_report.h"
#include "run_setup.h"

namespace ld::core {

namespace {

using json = nlohmann::json;

// Test loss and accuracy of the full model (every stage, eval mode) on
// `device` in `precision`.
EvalResult evaluate(StagedModel& model, const Dataset& dataset, std::int64_t batch_size, at::Device device,
                    Precision precision) {
  model.eval();
  at::NoGradGuard no_grad;
  AutocastGuard autocast(device, precision);
  const std::int64_t n = dataset.size(Split::kTest);
  // Summed on the device; read once at the end.
  at::Tensor loss = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device));
  at::Tensor correct = at::zeros({}, at::TensorOptions().dtype(at::kLong).device(device));
  for (std::int64_t begin = 0; begin < n; begin += batch_size) {
    throw_if_interrupted();
    std::int64_t end = std::min(n, begin + batch_size);
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
  return {n ? loss.item<double>() / n : 0.0, n ? static_cast<double>(correct.item<std::int64_t>()) / n : 0.0};
}

/// The loop of one run: epochs of steps, evaluation points where the policy
/// decides, and drops through DropController::apply.
class Trainer {
 public:
  Trainer(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts)
      : cfg_(cfg),
        tbb_threads_(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(cfg.threads)),
        p_(prepare(cfg, host, opts)),
        report_(cfg, p_, opts),
        loss_since_point_(at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(p_.device))) {}

  json run() {
    const auto start = Clock::now();
    report_.started();
    for (std::int64_t epoch = 0; epoch < cfg_.train.epochs; ++epoch) train_epoch(epoch);
    return report_.finish(totals_, seconds_since(start));
  }

 private:
  static RunParts prepare(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts) {
    at::set_num_threads(cfg.threads);
    torch::manual_seed(cfg.seed);
    return set_up_run(cfg, host, opts);
  }
  void train_epoch(std::int64_t epoch);
  void evaluation_point(std::int64_t epoch, std::int64_t step_in_epoch, EpochTally& tally);

  const RunConfig& cfg_;
  tbb::global_control tbb_threads_;
  RunParts p_;
  RunReporter report_;
  RunTotals totals_;

  // Run state.
  std::vector<std::int64_t> order_;
  std::uint64_t epoch_seed_ = 0;
  std::int64_t step_ = 0, eval_point_ = 0;
  at::Tensor loss_since_point_;  // summed on the device
  std::int64_t steps_since_point_ = 0;
  double lr_since_point_ = 0, last_lr_ = 0;
  std::size_t shadow_cut_ = 0;  // policy.shadow: the cut the policy believes in
};

void Trainer::train_epoch(std::int64_t epoch) {
  const auto epoch_start = Clock::now();
  epoch_seed_ = mix_seed(cfg_.seed, 1000003ULL * static_cast<std::uint64_t>(epoch + 1));
  order_ = epoch_order(p_.n_train, cfg_.seed, epoch);
  p_.model->train();
  p_.controller->keep_dropped_in_eval();
  p_.feed->start(order_, 0, p_.steps_per_epoch, epoch_seed_);
  EpochTally tally(p_.device);
  const std::uint64_t cache_at_start = p_.controller->generation();
  const CacheStats stats_at_start = p_.controller->cache() ? p_.controller->cache()->stats() : CacheStats{};
  std::int64_t s = 0;
  at::Tensor x, y;
  while (p_.feed->next(x, y)) {
    throw_if_interrupted();
    last_lr_ = learning_rate(cfg_.train, static_cast<double>(epoch) + static_cast<double>(s) / p_.steps_per_epoch);
    p_.optimizer->set_lr(last_lr_);
    const std::size_t cut = p_.controller->cut();
    at::Tensor logits, loss;
    {
      AutocastGuard autocast(p_.device, p_.precision);
      logits = p_.model->forward(x, cut);
      loss = torch::nn::functional::cross_entropy(logits, y);
    }
    p_.optimizer->zero_grad();
    p_.scaler->scale_loss(loss).backward();
    // fp16 only: the parameter list is not gathered at every fp32/bf16 step.
    const bool finite = !p_.scaler->enabled() || p_.scaler->unscale(p_.optimizer->parameters());
    if (p_.policy->wants_step_gradient_norms()) p_.tracker->add_step_gradients(cut);
    if (finite) p_.optimizer->step();  // fp16: a step with inf/NaN gradients is skipped
    p_.scaler->update(finite);
    lr_since_point_ += last_lr_;
    const std::int64_t b = y.size(0);
    const at::Tensor loss_value = loss.detach().to(at::kDouble);
    tally.loss_sum += loss_value * static_cast<double>(b);
    tally.correct_sum += logits.argmax(1).eq(y).sum();
    tally.seen += b;
    tally.flops += b * p_.profile.flops_from(cut);
    totals_.flops_full += b * p_.profile.flops_from(0);
    loss_since_point_ += loss_value;
    ++steps_since_point_;
    ++step_;
    ++s;
    const std::int64_t period = p_.policy->period_steps();
    if (period > 0 ? step_ % period == 0 : s == p_.steps_per_epoch) evaluation_point(epoch, s, tally);
    report_.live(epoch, s, tally, epoch_start);
  }
  const double train_seconds = seconds_since(epoch_start);
  totals_.train_seconds += train_seconds;
  // Cache reads of this epoch (a cache built during the epoch counts from zero).
  CacheStats read;
  if (const FeatureCache* cache = p_.controller->cache()) {
    read = cache->stats();
    if (p_.controller->generation() == cache_at_start) {
      read.bytes_read -= stats_at_start.bytes_read;
      read.read_seconds -= stats_at_start.read_seconds;
    }
  }
  totals_.cache_read_bytes += read.bytes_read;
  totals_.cache_wait_seconds += read.read_seconds;
  totals_.flops += tally.flops;
  totals_.evaluated = (epoch + 1) % cfg_.train.eval_every == 0 || epoch + 1 == cfg_.train.epochs;
  if (totals_.evaluated) {
    totals_.last_eval = evaluate(*p_.model, *p_.dataset, cfg_.train.eval_batch_size, p_.device, p_.precision);
    totals_.eval_flops += p_.dataset->size(Split::kTest) * p_.profile.flops_from(0);
  }
  const double epoch_seconds = seconds_since(epoch_start);
  report_.epoch_done(epoch, tally, totals_, read, train_seconds, epoch_seconds);
}

void Trainer::evaluation_point(std::int64_t epoch, std::int64_t step_in_epoch, EpochTally& tally) {
  const std::size_t cut = p_.controller->cut();
  PolicyInput in;
  in.eval_point = ++eval_point_;
  in.step = step_;
  in.epoch = static_cast<double>(epoch) + static_cast<double>(step_in_epoch) / p_.steps_per_epoch;
  in.cut = cut;
  in.train_loss = loss_since_point_.item<double>() / static_cast<double>(steps_since_point_);
  in.lr = last_lr_;
  in.lr_sum = lr_since_point_;
  in.steps_since_point = steps_since_point_;
  in.stages = p_.tracker->measure(cut);
  loss_since_point_.zero_();
  steps_since_point_ = 0;
  lr_since_point_ = 0;
  const std::vector<StageStats> measured = in.stages;
  if (cfg_.policy_shadow) {
    // The policy sees the run as if its drops had happened.
    in.cut = shadow_cut_;
    for (std::size_t i = 0; i < shadow_cut_; ++i) {
      in.stages[i].dropped = true;
      in.stages[i].relative_change = in.stages[i].grad_norm = in.stages[i].mean_grad_norm = 0;
    }
  }
  Decision d;
  try {
    d = p_.policy->decide(in);
  } catch (const std::exception& e) {
    throw Error("policy '" + cfg_.policy.plugin + "' failed at evaluation point " + std::to_string(in.eval_point) +
                ": " + e.what());
  }
  json stages = json::array();
  for (const auto& st : measured) {
    json j = {{"name", st.name},
              {"dropped", st.dropped},
              {"relative_change", st.relative_change},
              {"param_norm", st.param_norm},
              {"grad_norm", st.grad_norm}};
    if (p_.policy->wants_step_gradient_norms()) j["mean_grad_norm"] = st.mean_grad_norm;
    stages.push_back(std::move(j));
  }
  json line = {{"eval_point", in.eval_point},
               {"step", step_},
               {"epoch", in.epoch},
               {"cut", cut},
               {"train_loss", in.train_loss},
               {"lr", in.lr},
               {"lr_sum", in.lr_sum},
               {"decision", d.cut},
               {"reason", d.reason},
               {"stages", stages}};
  std::size_t target = d.cut;
  if (cfg_.policy_shadow) {
    line["shadow"] = true;
    line["shadow_cut"] = std::max(shadow_cut_, std::min(target, p_.model->num_stages()));  // after this point
  }
  report_.evaluation_point(line);
  if (cfg_.policy_shadow) {
    target = std::min(target, p_.model->num_stages());
    if (target > shadow_cut_) {
      report_.shadow_drop(in.epoch, step_, shadow_cut_, target, d.reason);
      shadow_cut_ = target;
    }
    return;
  }
  // The drop itself is one call: DropController::apply checks the decision,
  // stops the feed, freezes, builds the cache, trims the optimizer and hands
  // the feed the cache for the rest of the epoch.
  const DropOutcome outcome = p_.controller->apply(d, p_.optimizer.get(), p_.feed.get());
  if (!outcome.note.empty()) spdlog::warn("policy '{}': {}", cfg_.policy.plugin, outcome.note);
  if (outcome.drop) {
    tally.flops += outcome.drop->flops;
    totals_.cache_seconds += outcome.drop->seconds;
    report_.drop(*outcome.drop, in.epoch, step_, d.reason);
  }
}

}  // namespace

json run_training(const RunConfig& config, const PluginHost& host, const RunOptions& options) {
  Trainer trainer(config, host, options);
  return trainer.run();
}

}  // namespace ld::core
