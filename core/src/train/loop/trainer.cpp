// The loop of a run: epochs, steps and evaluation points. Setup is
// run_setup.cpp (plugins and parts from the config), what a point decides and
// drops drop_sequence.cpp, reporting run_report.cpp (console and run folder),
// checkpoints run_checkpoint.cpp, and run_training.cpp starts a run, a rank
// or a resume.
#include "learndrop/core/run.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include "loop/evaluation.h"
#include "learndrop/core/interrupt.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/seeds.h"
#include "loop/trainer.h"
#include "run/branch.h"
#include "run/head_fit.h"

namespace ld::core {

using json = nlohmann::json;

Trainer::Trainer(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts, const Checkpoint* resume)
    : cfg_(cfg),
      tbb_threads_(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(cfg.threads)),
      p_(set_up_run(cfg, host, opts, resume)),
      report_(cfg, p_, opts),
      state_(p_.device),
      dp_(opts.group, cfg, {*p_.model, *p_.controller, *p_.feed, *p_.out, p_.n_train, p_.steps_per_epoch}),
      checkpoints_(cfg.train.checkpoint_every > 0 && opts.group == nullptr),
      drops_(cfg, {*p_.policy, *p_.controller, *p_.optimizer, *p_.feed, *p_.schedule, p_.judge, p_.model->num_stages()},
             state_, dp_, report_, checkpoints_),
      faults_(TestFaults::from_environment()),
      resume_(resume),
      host_(host),
      opts_(opts) {}

json Trainer::run() {
  run_start_ = Clock::now();
  report_.started();
  if (resume_) {
    restore_run(*resume_, cfg_, p_, state_, report_, checkpoints_);
    resumed_mid_epoch_ = state_.step_in_epoch > 0;
  } else if (!opts_.branch_from.empty() &&
             branch_run(cfg_, host_, opts_, p_, state_, report_, checkpoints_, branch_checkpoint_)) {
    // At the start of an epoch of the reference run, as this run would be.
  } else {
    if (cfg_.model_head == "probe") fit_head_first();
    if (p_.probe) p_.probe->measure(nullptr);  // the reference: the model at step 0
    drops_.freeze_from_start(p_.freeze_stages, "model.freeze: " + cfg_.model_freeze + " stages frozen from the start");
  }
  for (; state_.epoch < cfg_.train.epochs; ++state_.epoch) {
    const Schedule& schedule = *p_.schedule;
    if (schedule.stream() && state_.arrivals <= schedule.part_of(state_.epoch)) arrive(schedule.part_of(state_.epoch));
    train_epoch();
  }
  dp_.sync_buffers();
  return report_.finish(state_.totals, state_.wall_before + seconds_since(run_start_), state_.full_seconds_per_image());
}

void Trainer::fit_head_first() {
  // The samples the run has at its start: a stream's first part, else all.
  std::vector<std::int64_t> samples(static_cast<std::size_t>(p_.schedule->samples_in(0)));
  for (std::size_t i = 0; i < samples.size(); ++i) samples[i] = p_.controller->sample_of(static_cast<std::int64_t>(i));
  const HeadFit fit =
      fit_head(*p_.model, *p_.dataset, samples, cfg_, p_.device, p_.precision, p_.profile.flops_from(0));
  // Its time and forward work are the run's, as a full-training run of the same config pays them too.
  state_.totals.train_seconds += fit.seconds;
  state_.totals.flops += fit.feature_flops;
  state_.totals.flops_full += fit.feature_flops;
  report_.head_fitted(fit);
}

void Trainer::arrive(std::int64_t part) {
  // What the model makes of the new part before training on it (test-then-train).
  EvalResult first_look;
  if (part > 0) {
    DeferInterrupts defer(checkpoints_);
    dp_.sync_buffers();
    first_look = evaluate_samples(*p_.model, *p_.dataset, *p_.controller, p_.schedule->samples_after(part - 1),
                                  p_.schedule->samples_after(part), cfg_.train.eval_batch_size, p_.device, p_.precision);
  }
  drops_.arrive(part, part > 0 ? &first_look : nullptr);
}

void Trainer::train_epoch() {
  const auto epoch_start = epoch_start_ = Clock::now();
  const std::int64_t epoch = state_.epoch;
  epoch_seed_ = mix_seed(cfg_.seed, 1000003ULL * static_cast<std::uint64_t>(epoch + 1));
  // Positions of the samples the run has (all of them, or a stream's arrived parts).
  std::vector<std::int64_t> order =
      dp_.epoch_order(epoch, epoch_order(p_.schedule->samples_in(epoch), cfg_.seed, epoch));
  steps_ = dp_.active() ? p_.steps_per_epoch : p_.schedule->steps_in(epoch);
  flops_full_at_start_ = state_.totals.flops_full;
  epoch_build_seconds_ = 0;
  epoch_full_ = p_.controller->frozen_cut() == 0;
  p_.model->train();
  p_.controller->keep_dropped_in_eval();
  // A run resumed within this epoch goes on with the tally its checkpoint saved.
  if (!std::exchange(resumed_mid_epoch_, false)) {
    state_.step_in_epoch = 0;
    state_.tally.reset();
  } else {
    epoch_full_ = false;  // part of it ran in another process
  }
  // Before the feed starts: its producer reads the cache from then on (a
  // snapshot after it missed what the producer had read, by timing).
  reads_.start(*p_.controller);
  p_.feed->start(std::move(order), state_.step_in_epoch, steps_, epoch_seed_);
  at::Tensor x, y;
  while (true) {
    faults_.before_step(state_.step, dp_.rank());
    if (checkpoints_ && pending_signal() != 0) {
      // Stop at this step with a checkpoint; the cache stays for the resume.
      p_.feed->stop();
      const std::string where = save_checkpoint(true);
      keep_cache_for_resume(p_);
      throw Interrupted(pending_signal(),
                        "checkpoint " + where + " written; go on with: ldrop run --resume " + p_.out->dir().string());
    }
    throw_if_interrupted();
    if (!p_.feed->next(x, y)) break;
    train_step(x, y, epoch_start);
  }
  end_epoch(epoch_start);
}

void Trainer::train_step(const at::Tensor& x, const at::Tensor& y, Clock::time_point epoch_start) {
  const std::int64_t epoch = state_.epoch;
  std::int64_t& s = state_.step_in_epoch;
  state_.last_lr = p_.schedule->learning_rate(static_cast<double>(epoch) + static_cast<double>(s) / steps_);
  p_.optimizer->set_lr(state_.last_lr);
  const std::size_t cut = p_.controller->frozen_cut();
  at::Tensor logits, loss;
  {
    AutocastGuard autocast(p_.device, p_.precision);
    logits = p_.controller->forward(x);
    loss = torch::nn::functional::cross_entropy(logits, y);
    if (state_.step == faults_.nan_step) loss = loss * std::numeric_limits<double>::quiet_NaN();
  }
  p_.optimizer->zero_grad();
  const std::int64_t b = y.size(0);
  // Data-parallel: this rank's mean loss weighted by its share of the global
  // batch, gradients summed over the ranks: the gradient of the global batch's mean.
  const double share = dp_.loss_share(s, b);
  dp_.before_backward(p_.optimizer->parameters());
  p_.scaler->scale_loss(dp_.active() ? loss * share : loss).backward();
  dp_.after_backward(state_.totals);
  // fp16 only: the parameter list is not gathered at every fp32/bf16 step.
  const bool finite = !p_.scaler->enabled() || p_.scaler->unscale(p_.optimizer->parameters());
  p_.tracker->add_step_gradients(cut);
  if (finite) p_.optimizer->step();  // fp16: a step with inf/NaN gradients is skipped
  p_.scaler->update(finite);
  const at::Tensor loss_value = loss.detach().to(at::kDouble);
  state_.count_step(loss_value, dp_.active() ? loss_value * share : loss_value, logits.argmax(1).eq(y).sum(), b,
                    p_.profile.flops_from(p_.controller->cache_cut()), p_.profile.flops_from(0));
  const std::int64_t period = p_.policy->period_steps();
  if (period > 0 ? state_.step % period == 0 : s == steps_) evaluation_point();
  report_.live(epoch, s, steps_, state_.tally, epoch_start);
}

std::string Trainer::save_checkpoint(bool mid_epoch) {
  const auto start = Clock::now();
  RunState saved = state_.to_save(mid_epoch, reads_.so_far(*p_.controller, state_.read_carry), seconds_since(run_start_));
  const std::string where = write_run_checkpoint(cfg_, p_, report_, std::move(saved), start);
  if (!mid_epoch && cfg_.train.checkpoint_keep == "all") keep_epoch_checkpoint(p_.out->dir(), state_.epoch + 1);
  state_.totals.checkpoint_seconds += seconds_since(start);
  return where;
}

void Trainer::check_finite(double value, const std::string& what) const {
  state_.check_finite(value, what, cfg_.train.lr, checkpoints_ && state_.epoch >= cfg_.train.checkpoint_every);
}

void Trainer::end_epoch(Clock::time_point epoch_start) {
  const std::int64_t epoch = state_.epoch;
  RunTotals& totals = state_.totals;
  dp_.reduce_epoch(state_.tally, totals, flops_full_at_start_);
  check_finite(state_.tally.loss_sum.item<double>(), "the epoch's training loss");
  const double train_seconds = seconds_since(epoch_start);
  totals.train_seconds += train_seconds;
  totals.images += state_.tally.seen;
  // The run's own speed of full training: epochs whose every step trained
  // the whole model, without the cache builds that ended some of them.
  if (epoch_full_ && state_.tally.seen > 0) {
    state_.count_full_epoch(static_cast<double>(state_.tally.seen), train_seconds - epoch_build_seconds_);
  }
  // Cache reads of this epoch (a cache built during the epoch counts from zero).
  const CacheStats read = reads_.so_far(*p_.controller, state_.read_carry);
  state_.read_carry = CacheStats{};
  totals.cache_read_bytes += read.bytes_read;
  totals.cache_wait_seconds += read.read_seconds;
  totals.flops += state_.tally.flops;
  const bool end_of_part = p_.schedule->stream() && p_.schedule->last_of_part(epoch);
  totals.evaluated = (epoch + 1) % cfg_.train.eval_every == 0 || epoch + 1 == cfg_.train.epochs || end_of_part;
  if (totals.evaluated) {
    DeferInterrupts defer(checkpoints_);  // a signal stops the run at the next step, with a checkpoint
    dp_.sync_buffers();
    totals.last_eval = evaluate(*p_.model, *p_.dataset, cfg_.train.eval_batch_size, p_.device, p_.precision, dp_);
    totals.eval_flops += p_.dataset->size(Split::kTest) * p_.profile.flops_from(0);
  }
  const double epoch_seconds = seconds_since(epoch_start);
  report_.epoch_done(epoch, steps_, state_.tally, totals, read, train_seconds, epoch_seconds,
                     p_.schedule->stream() ? state_.arrivals : 0, p_.schedule->samples_in(epoch));
  if (end_of_part) report_.arrival_done(p_.schedule->part_of(epoch), totals.last_eval, totals.train_seconds);
  if (checkpoints_ && (epoch + 1) % cfg_.train.checkpoint_every == 0 && epoch + 1 < cfg_.train.epochs) {
    save_checkpoint(false);
  }
}

void Trainer::evaluation_point() {
  PolicyInput in = state_.point_input(steps_);
  in.cut = p_.controller->frozen_cut();
  in.samples = p_.schedule->samples_in(state_.epoch);
  in.arrivals = p_.schedule->stream() ? state_.arrivals : 1;
  dp_.reduce_point(state_.loss_since_point);
  in.train_loss = state_.loss_since_point.item<double>() / static_cast<double>(state_.steps_since_point);
  check_finite(in.train_loss, "the mean training loss since the last evaluation point");
  in.stages = p_.tracker->measure(in.cut);
  for (const auto& st : in.stages) {  // a NaN stage would read as "stopped learning" to every criterion
    check_finite(st.relative_change, "the relative change of stage " + st.name + "'s parameters");
    check_finite(st.grad_norm, "the gradient norm of stage " + st.name);
  }
  if (p_.probe) {
    const bool training = p_.model->is_training();
    p_.probe->measure(&in.stages, &in.probe_loss);
    if (p_.probe->losses()) check_finite(in.probe_loss, "the probe batch's loss");
    if (training) {
      p_.model->train();
      p_.controller->keep_dropped_in_eval();
    }
  }
  state_.end_point();
  const DropEffect e = drops_.at_point(std::move(in), {seconds_since(epoch_start_) - epoch_build_seconds_, state_.tally.seen});
  if (!e.dropped) return;
  state_.tally.flops += e.flops;
  state_.totals.cache_seconds += e.seconds;
  epoch_build_seconds_ += e.seconds;
  epoch_full_ = false;
}

}  // namespace ld::core
