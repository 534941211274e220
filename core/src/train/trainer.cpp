// The loop of a run: epochs, steps, evaluation points, arrivals and drops.
// Setup is run_setup.cpp (plugins and parts from the config), reporting
// run_report.cpp (console and run folder), checkpoints run_checkpoint.cpp,
// and run_training.cpp starts a run, a rank or a resume.
#include "learndrop/core/trainer.h"

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

#include "evaluation.h"
#include "learndrop/core/interrupt.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/seeds.h"
#include "trainer_loop.h"

namespace ld::core {

using json = nlohmann::json;

Trainer::Trainer(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts, const Checkpoint* resume)
    : cfg_(cfg),
      tbb_threads_(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(cfg.threads)),
      p_(prepare(cfg, host, opts, resume)),
      report_(cfg, p_, opts),
      state_(p_.device),
      dp_(opts.group, cfg, p_),
      checkpoints_(cfg.train.checkpoint_every > 0 && opts.group == nullptr),
      faults_(TestFaults::from_environment()),
      resume_(resume) {}

RunParts Trainer::prepare(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts,
                          const Checkpoint* resume) {
  at::set_num_threads(cfg.threads);
  torch::manual_seed(cfg.seed);
  if (!resume) return set_up_run(cfg, host, opts);
  const json& out = resume->meta.at("output");
  const RunOutput::Resume sizes{out.at("metrics_bytes").get<std::int64_t>(),
                                out.at("stats_bytes").get<std::int64_t>()};
  return set_up_run(cfg, host, opts, &sizes);
}

json Trainer::run() {
  run_start_ = Clock::now();
  report_.started();
  if (checkpoints_ && !p_.policy->has_state()) {
    spdlog::warn(
        "policy '{}' does not save its state (DropPolicy::has_state() is false): the checkpoints this run writes "
        "cannot be resumed (set train.checkpoint_every: 0 not to write them, or implement "
        "has_state/save_state/load_state: docs/plugins.md)",
        cfg_.policy.plugin);
  }
  if (resume_) {
    restore(*resume_);
  } else {
    if (p_.probe) p_.probe->measure(nullptr);  // the reference: the model at step 0
    freeze_from_start();
  }
  for (; state_.epoch < cfg_.train.epochs; ++state_.epoch) {
    const Schedule& schedule = *p_.schedule;
    if (schedule.stream() && state_.arrivals <= schedule.part_of(state_.epoch)) arrive(schedule.part_of(state_.epoch));
    train_epoch();
  }
  dp_.sync_buffers();
  return report_.finish(state_.totals, state_.wall_before + seconds_since(run_start_), state_.full_seconds_per_image());
}

void Trainer::freeze_from_start() {
  if (p_.freeze_stages == 0) return;
  const Decision d{p_.freeze_stages, "model.freeze: " + cfg_.model_freeze + " stages frozen from the start"};
  // Before the first epoch: the feed has not started, and reads the same
  // data after a freeze-only drop.
  const DropOutcome outcome = p_.controller->apply(d, p_.optimizer.get(), DropMode::kFreeze);
  if (outcome.drop) report_.drop(*outcome.drop, 0, 0, d.reason, nullptr);
}

void Trainer::arrive(std::int64_t part) {
  const Schedule& schedule = *p_.schedule;
  const std::int64_t before = schedule.samples_after(part - 1), after = schedule.samples_after(part);
  // What the model makes of the new part before training on it (test-then-train).
  EvalResult first_look;
  if (part > 0) {
    DeferInterrupts defer(checkpoints_);
    dp_.sync_buffers();
    first_look = evaluate_samples(*p_.model, *p_.dataset, *p_.controller, before, after, cfg_.train.eval_batch_size,
                                  p_.device, p_.precision);
  }
  ArrivalReport added;
  {
    DeferInterrupts defer(checkpoints_);  // the rows are added; the next step checkpoints
    p_.feed->stop();  // the cache may grow in place: nothing reads it meanwhile
    added = p_.controller->arrive(after);
    p_.feed->resume(std::move(added.source));
  }
  state_.arrivals = part + 1;
  // Rows added to the cache are training work, like a cache build.
  state_.totals.train_seconds += added.seconds;
  state_.totals.cache_seconds += added.seconds;
  state_.totals.flops += added.flops;
  report_.arrival(part, schedule.parts(), before, after, added, part > 0 ? &first_look : nullptr, state_.epoch);
}

CacheStats Trainer::epoch_reads() const {
  CacheStats r = state_.read_carry;
  if (const FeatureCache* cache = p_.controller->cache()) {
    CacheStats now = cache->stats();
    if (p_.controller->generation() == generation_at_start_) {
      now.bytes_read -= stats_at_start_.bytes_read;
      now.read_seconds -= stats_at_start_.read_seconds;
    }
    r.bytes_read += now.bytes_read;
    r.read_seconds += now.read_seconds;
  }
  return r;
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
  epoch_full_ = p_.controller->cut() == 0;
  p_.model->train();
  p_.controller->keep_dropped_in_eval();
  // A run resumed within this epoch goes on with the tally its checkpoint saved.
  if (!std::exchange(resumed_mid_epoch_, false)) {
    state_.step_in_epoch = 0;
    state_.tally.reset();
  } else {
    epoch_full_ = false;  // part of it ran in another process
  }
  p_.feed->start(std::move(order), state_.step_in_epoch, steps_, epoch_seed_);
  generation_at_start_ = p_.controller->generation();
  stats_at_start_ = p_.controller->cache() ? p_.controller->cache()->stats() : CacheStats{};
  at::Tensor x, y;
  while (true) {
    faults_.before_step(state_.step, dp_.rank());
    if (checkpoints_ && pending_signal() != 0) {
      // Stop at this step with a checkpoint; the cache stays for the resume.
      p_.feed->stop();
      const std::string where = save_checkpoint(true);
      p_.controller->retain_cache();
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
  const std::size_t cut = p_.controller->cut();
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
  state_.lr_since_point += state_.last_lr;
  const at::Tensor loss_value = loss.detach().to(at::kDouble);
  EpochTally& tally = state_.tally;
  tally.loss_sum += loss_value * static_cast<double>(b);
  tally.correct_sum += logits.argmax(1).eq(y).sum();
  tally.seen += b;
  tally.flops += b * p_.profile.flops_from(p_.controller->cache_cut());
  state_.totals.flops_full += b * p_.profile.flops_from(0);
  state_.loss_since_point += dp_.active() ? loss_value * share : loss_value;
  ++state_.steps_since_point;
  ++state_.step;
  ++s;
  const std::int64_t period = p_.policy->period_steps();
  if (period > 0 ? state_.step % period == 0 : s == steps_) evaluation_point();
  report_.live(epoch, s, steps_, tally, epoch_start);
}

void Trainer::check_finite(double value, const std::string& what) const {
  if (std::isfinite(value)) return;
  const std::string kept = checkpoints_ && state_.epoch >= cfg_.train.checkpoint_every
                               ? "; the checkpoint of the last epoch boundary before it is kept (ldrop run --resume)"
                               : "";
  char numbers[96];
  std::snprintf(numbers, sizeof numbers, " is %s (learning rate %g at this step, train.lr %g: lower it?)",
                std::isnan(value) ? "NaN" : value > 0 ? "inf" : "-inf", state_.last_lr, cfg_.train.lr);
  throw Error("training diverged at epoch " + std::to_string(state_.epoch + 1) + ", step " +
              std::to_string(state_.step) + ": " + what + numbers + kept);
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
    const double seconds = train_seconds - epoch_build_seconds_;
    if (state_.full_epochs++ == 0) {
      state_.first_full_images = static_cast<double>(state_.tally.seen);
      state_.first_full_seconds = seconds;
    } else {
      state_.full_images += static_cast<double>(state_.tally.seen);
      state_.full_seconds += seconds;
    }
  }
  // Cache reads of this epoch (a cache built during the epoch counts from zero).
  const CacheStats read = epoch_reads();
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

Decision Trainer::decide(PolicyInput& in) {
  Decision d;
  // Data-parallel: the policy runs on rank 0 (every rank has the same
  // parameters and statistics) and its cut is broadcast, so all ranks drop
  // at the same step.
  if (dp_.decides()) {
    // The guard (plugin_guard.h) already names the plugin, its library and
    // the call; this only adds where the run was.
    try {
      d = p_.policy->decide(in);
    } catch (const PluginError& e) {
      throw PluginError(std::string(e.what()) + " (evaluation point " + std::to_string(in.eval_point) + ")",
                        e.unexpected());
    }
  }
  return dp_.broadcast(d);
}

void Trainer::evaluation_point() {
  const std::size_t cut = p_.controller->cut();
  PolicyInput in;
  in.eval_point = ++state_.eval_point;
  in.step = state_.step;
  in.epoch = static_cast<double>(state_.epoch) + static_cast<double>(state_.step_in_epoch) / steps_;
  in.cut = cut;
  in.samples = p_.schedule->samples_in(state_.epoch);
  in.arrivals = p_.schedule->stream() ? state_.arrivals : 1;
  in.last_drop_epoch = state_.last_drop_epoch;
  in.held_cut = state_.held_cut;
  in.held_reason = state_.held_reason;
  dp_.reduce_point(state_.loss_since_point);
  in.train_loss = state_.loss_since_point.item<double>() / static_cast<double>(state_.steps_since_point);
  check_finite(in.train_loss, "the mean training loss since the last evaluation point");
  in.lr = state_.last_lr;
  in.lr_sum = state_.lr_since_point;
  in.steps_since_point = state_.steps_since_point;
  in.stages = p_.tracker->measure(cut);
  for (const auto& st : in.stages) {  // a NaN stage would read as "stopped learning" to every criterion
    check_finite(st.relative_change, "the relative change of stage " + st.name + "'s parameters");
    check_finite(st.grad_norm, "the gradient norm of stage " + st.name);
  }
  if (p_.probe) {
    const bool training = p_.model->is_training();
    p_.probe->measure(&in.stages);
    if (training) {
      p_.model->train();
      p_.controller->keep_dropped_in_eval();
    }
  }
  state_.loss_since_point.zero_();
  state_.steps_since_point = 0;
  state_.lr_since_point = 0;
  const std::vector<StageStats> measured = in.stages;
  if (cfg_.policy_shadow) {
    // The policy sees the run as if its drops had happened.
    in.cut = state_.shadow_cut;
    for (std::size_t i = 0; i < state_.shadow_cut; ++i) {
      in.stages[i].dropped = true;
      in.stages[i].relative_change = in.stages[i].grad_norm = in.stages[i].mean_grad_norm = 0;
      // A frozen stage computes what it computed: its representation is unchanged.
      if (in.stages[i].feature_similarity >= 0) in.stages[i].feature_similarity = 1;
    }
  }
  const Decision d = decide(in);
  PointAhead ahead;
  ahead.images_ahead = p_.schedule->images_ahead(state_.epoch, state_.step_in_epoch);
  ahead.cached_samples = p_.controller->samples();
  ahead.arriving = dp_.active() ? 0 : p_.schedule->arrivals_after(state_.epoch);
  if (cfg_.policy_shadow) {
    const std::size_t target = std::min(d.cut, p_.model->num_stages());
    const std::size_t after = std::max(state_.shadow_cut, target);
    report_.evaluation_point(in, measured, d, state_.step, cut, &after, nullptr, ahead);
    if (target > state_.shadow_cut) {
      report_.shadow_drop(in.epoch, state_.step, state_.shadow_cut, target, d.reason);
      state_.shadow_cut = target;
      state_.last_drop_epoch = in.epoch;
    }
    return;
  }
  state_.held_cut = 0;
  state_.held_reason.clear();
  const json plan = drop(d, in.epoch);
  report_.evaluation_point(in, measured, d, state_.step, cut, nullptr, plan.is_null() ? nullptr : &plan, ahead);
}

json Trainer::drop(const Decision& d, double epoch) {
  const std::size_t frozen = p_.controller->cut(), cache_cut = p_.controller->cache_cut();
  const std::size_t target = std::min(d.cut, p_.model->num_stages());
  if (target <= frozen) {
    // Nothing to weigh: DropController::apply explains a cut below the current one.
    if (d.cut < frozen) {
      const DropOutcome outcome = p_.controller->apply(d);
      if (!outcome.note.empty()) spdlog::warn("policy '{}': {}", cfg_.policy.plugin, outcome.note);
    }
    return nullptr;
  }
  // Does it pay, and how: the work it saves over the rest of the schedule
  // against what it costs. The same on every rank (no clock in it).
  const Schedule& schedule = *p_.schedule;
  const std::int64_t ahead = schedule.images_ahead(state_.epoch, state_.step_in_epoch);
  const DropPlan plan = dp_.agree(plan_drop(*p_.cost, effective_drop_mode(cfg_.drop_mode, d.mode), cfg_.cost_guard,
                                            cache_cut, frozen, target, ahead, p_.controller->samples(),
                                            dp_.active() ? 0 : schedule.arrivals_after(state_.epoch)));
  json record = {{"target", target},
                 {"mode", to_string(plan.mode)},
                 {"drop", plan.drop},
                 {"images_ahead", ahead},
                 {"saved_work", plan.chosen.saved},
                 {"cost_work", plan.chosen.cost}};
  for (const auto& o : plan.options) {
    record["options"][to_string(o.mode)] = {{"saved_work", o.saved}, {"cost_work", o.cost}};
  }
  // For people: the net saving as seconds at this epoch's speed so far (in
  // the log and summary, not in stats.jsonl; the decision uses no clock).
  json shown = record;
  const double work_now = p_.cost->step_work(cache_cut, frozen) * static_cast<double>(state_.tally.seen);
  if (work_now > 0) {
    shown["predicted_seconds"] = plan.chosen.net() * (seconds_since(epoch_start_) - epoch_build_seconds_) / work_now;
  }
  if (!plan.drop) {
    record["held"] = plan.held;
    state_.held_cut = target;
    state_.held_reason = plan.held;
    spdlog::debug("{}", plan.held);
    return record;
  }
  if (plan.mode == DropMode::kCache) dp_.shard_before_first_drop(state_.epoch, target);
  // The drop itself is one call: DropController::apply checks the decision,
  // builds the cache (or only freezes), trims the optimizer and returns the
  // source for the rest of the epoch. The feed's producer may be reading the
  // cache the build reads and releases: it is stopped around the call.
  DropOutcome outcome;
  {
    DeferInterrupts defer(checkpoints_);  // the cache is built; the next step checkpoints
    p_.feed->stop();
    outcome = p_.controller->apply(d, p_.optimizer.get(), plan.mode);
    p_.feed->resume(std::move(outcome.source));
  }
  if (!outcome.note.empty()) spdlog::warn("policy '{}': {}", cfg_.policy.plugin, outcome.note);
  if (outcome.drop) {
    state_.tally.flops += outcome.drop->flops;
    state_.totals.cache_seconds += outcome.drop->seconds;
    epoch_build_seconds_ += outcome.drop->seconds;
    epoch_full_ = false;
    state_.last_drop_epoch = epoch;
    report_.drop(*outcome.drop, epoch, state_.step, d.reason, &shown);
  }
  return record;
}

}  // namespace ld::core
