// The drop sequence: policy → shadow → cost plan → data-parallel agreement →
// feed stopped, drop applied, feed resumed → report (drop_sequence.h).
#include "drop/drop_sequence.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "parallel/data_parallel.h"
#include "learndrop/core/batch_feed.h"
#include "learndrop/core/drop_controller.h"
#include "learndrop/core/drop_cost.h"
#include "learndrop/core/interrupt.h"
#include "loop/optimizer.h"
#include "learndrop/core/plugin_host.h"
#include "run/run_report.h"
#include "loop/schedule.h"

namespace ld::core {

using json = nlohmann::json;

json plan_record(const DropPlan& plan, std::size_t target, std::int64_t images_ahead) {
  json record = {{"target", target},
                 {"mode", to_string(plan.mode)},
                 {"drop", plan.drop},
                 {"images_ahead", images_ahead},
                 {"saved_work", plan.chosen.saved},
                 {"cost_work", plan.chosen.cost}};
  for (const auto& o : plan.options) {
    record["options"][to_string(o.mode)] = {{"saved_work", o.saved}, {"cost_work", o.cost}};
  }
  if (!plan.drop) record["held"] = plan.held;
  return record;
}

DropSequence::DropSequence(const RunConfig& cfg, DropParts parts, RunState& state, DataParallel& dp,
                           RunReporter& report, bool defer_interrupts)
    : cfg_(cfg), p_(parts), state_(state), dp_(dp), report_(report), defer_interrupts_(defer_interrupts) {}

void DropSequence::freeze_from_start(std::size_t stages, const std::string& reason) {
  if (stages == 0) return;
  const Decision d{stages, reason};
  // Before the first epoch: the feed has not started, and reads the same
  // data after a freeze-only drop.
  const DropOutcome outcome = p_.controller.apply(d, &p_.optimizer, DropMode::kFreeze);
  if (outcome.drop) report_.drop(*outcome.drop, 0, 0, d.reason, nullptr);
}

void DropSequence::arrive(std::int64_t part, const EvalResult* first_look) {
  const std::int64_t before = p_.schedule.samples_after(part - 1), after = p_.schedule.samples_after(part);
  ArrivalReport added;
  {
    DeferInterrupts defer(defer_interrupts_);  // the rows are added; the next step checkpoints
    p_.feed.stop();  // the cache may grow in place: nothing reads it meanwhile
    added = p_.controller.arrive(after);
    p_.feed.resume(std::move(added.source));
  }
  state_.arrivals = part + 1;
  // Rows added to the cache are training work, like a cache build.
  state_.totals.train_seconds += added.seconds;
  state_.totals.cache_seconds += added.seconds;
  state_.totals.flops += added.flops;
  report_.arrival(part, p_.schedule.parts(), before, after, added, first_look, state_.epoch);
}

Decision DropSequence::decide(PolicyInput& in) {
  Decision d;
  // Data-parallel: the policy runs on rank 0 (every rank has the same
  // parameters and statistics) and its cut is broadcast, so all ranks drop
  // at the same step.
  if (dp_.decides()) {
    // The guard (plugin_guard.h) already names the plugin, its library and
    // the call; this only adds where the run was.
    try {
      d = p_.policy.decide(in);
    } catch (const PluginError& e) {
      throw PluginError(std::string(e.what()) + " (evaluation point " + std::to_string(in.eval_point) + ")",
                        e.unexpected());
    }
  }
  return dp_.broadcast(d);
}

DropEffect DropSequence::at_point(PolicyInput in, const EpochSoFar& so_far) {
  const std::size_t cut = p_.controller.frozen_cut();
  const std::vector<StageStats> measured = in.stages;
  if (cfg_.policy_shadow) {
    // The policy sees the run as if its drops had happened.
    in.cut = state_.shadow_cut;
    for (std::size_t i = 0; i < state_.shadow_cut; ++i) {
      in.stages[i].dropped = true;
      in.stages[i].relative_change = in.stages[i].grad_norm = in.stages[i].mean_grad_norm = 0;
      // A frozen stage computes what it computed: its representation is unchanged.
      if (in.stages[i].feature_similarity >= 0) in.stages[i].feature_similarity = 1;
      // Frozen then, it computes now what it computed then: no loss from freezing it.
      if (in.stages[i].frozen_probe_loss >= 0) in.stages[i].frozen_probe_loss = in.probe_loss;
    }
  }
  const Decision d = decide(in);
  PointAhead ahead;
  ahead.images_ahead = p_.schedule.images_ahead(state_.epoch, state_.step_in_epoch);
  ahead.cached_samples = p_.controller.samples();
  ahead.arriving = dp_.active() ? 0 : p_.schedule.samples_arriving_after(state_.epoch);
  // Guards and cost plan as replay and a branch judge them; the plan is rank 0's.
  const Judgment j = judge_point(p_.judge, in, d, cut, p_.controller.cache_cut(), ahead,
                                 [this](DropPlan plan) { return dp_.agree(std::move(plan)); });
  state_.held_cut = j.held_cut;
  state_.held_reason = j.held_reason;
  if (!j.held_reason.empty()) spdlog::debug("{}", j.held_reason);
  DropEffect effect;
  if (cfg_.policy_shadow) {
    const std::size_t after = std::max(state_.shadow_cut, j.target);
    report_.evaluation_point(in, measured, d, state_.step, cut, &after, nullptr, ahead, guard_record(j));
    if (j.drops) {
      report_.shadow_drop(in.epoch, state_.step, state_.shadow_cut, j.target, d.reason);
      state_.shadow_cut = j.target;
      state_.last_drop_epoch = in.epoch;
    }
    return effect;
  }
  const json plan = drop(d, j, in.epoch, ahead, so_far, effect);
  report_.evaluation_point(in, measured, d, state_.step, cut, nullptr, plan.is_null() ? nullptr : &plan, ahead,
                           guard_record(j));
  return effect;
}

json DropSequence::drop(const Decision& d, const Judgment& j, double epoch, const PointAhead& ahead,
                        const EpochSoFar& so_far, DropEffect& effect) {
  const std::size_t frozen = p_.controller.frozen_cut(), cache_cut = p_.controller.cache_cut();
  if (!j.plan) {
    // Nothing to weigh: DropController::apply explains a cut below the current one.
    if (d.cut < frozen) {
      const DropOutcome outcome = p_.controller.apply(d);
      if (!outcome.note.empty()) spdlog::warn("policy '{}': {}", cfg_.policy.plugin, outcome.note);
    }
    return nullptr;
  }
  // Does it pay, and how: the work it saves over the rest of the schedule
  // against what it costs (judge_point). The same on every rank (no clock in it).
  const DropPlan& plan = *j.plan;
  json record = plan_record(plan, j.target, ahead.images_ahead);
  // For people: the net saving as seconds at this epoch's speed so far (in
  // the log and summary, not in stats.jsonl; the decision uses no clock).
  json shown = record;
  const double work_now = p_.judge.cost->step_work(cache_cut, frozen) * static_cast<double>(so_far.images);
  if (work_now > 0) shown["predicted_seconds"] = plan.chosen.net() * so_far.seconds / work_now;
  if (!plan.drop) return record;
  if (plan.mode == DropMode::kCache) dp_.shard_before_first_drop(state_.epoch, j.target);
  // The drop itself is one call: DropController::apply checks the decision,
  // builds the cache (or only freezes), trims the optimizer and returns the
  // source for the rest of the epoch. The feed's producer may be reading the
  // cache the build reads and releases: it is stopped around the call.
  // (The policy's own cut when no guard held it back: apply names a cut past the last stage.)
  const Decision applied{j.target < j.wanted ? j.target : d.cut, d.reason, d.mode};
  DropOutcome outcome;
  {
    DeferInterrupts defer(defer_interrupts_);  // the cache is built; the next step checkpoints
    p_.feed.stop();
    outcome = p_.controller.apply(applied, &p_.optimizer, plan.mode);
    p_.feed.resume(std::move(outcome.source));
  }
  if (!outcome.note.empty()) spdlog::warn("policy '{}': {}", cfg_.policy.plugin, outcome.note);
  if (outcome.drop) {
    effect = {true, outcome.drop->seconds, outcome.drop->flops};
    state_.last_drop_epoch = epoch;
    report_.drop(*outcome.drop, epoch, state_.step, d.reason, &shown);
  }
  return record;
}

}  // namespace ld::core
