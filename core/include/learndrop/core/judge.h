#pragma once
// One evaluation point judged: what the host makes of a policy's answer
// before anything is dropped. First the drop guards, which the host applies
// to every policy (ld::DropGuards), then, out of shadow mode, the cost
// guard's plan (plan_drop). A live run (DropSequence::at_point), `ldrop
// policy replay` and a branched run's scan of its reference's points all
// judge a point with judge_point, so the three cannot drift apart.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "learndrop/core/drop_cost.h"
#include "learndrop/drop_guards.h"
#include "learndrop/policy.h"

namespace ld::core {

/// What lies ahead of an evaluation point for the cost guard (plan_drop).
struct PointAhead {
  std::int64_t images_ahead = 0;    ///< Training images still to come.
  std::int64_t cached_samples = 0;  ///< Samples a cache built now would hold.
  std::int64_t arriving = 0;        ///< Samples of a stream still to arrive.
};

/// The host's rules for one run's policy.
struct JudgeRules {
  DropGuards guards;  ///< From the policy section (DropGuards::from).
  const DropCost* cost = nullptr;
  std::string drop_mode = "auto";  ///< policy.drop_mode
  bool cost_guard = true;          ///< policy.cost_guard
  bool shadow = false;             ///< policy.shadow: a drop is only recorded, never weighed.
  std::size_t stages = 0;          ///< The model's stage count.
};

/// How the host takes one answer of a policy.
struct Judgment {
  std::size_t wanted = 0;  ///< The policy's cut, at most the model's stages.
  /// After the drop guards, at least the policy's current cut: where a drop
  /// (or in shadow mode the recorded drop) goes.
  std::size_t target = 0;
  std::string guard;  ///< The guard that held `wanted` back to `target` ("" when none did).
  /// The cost guard's plan, when `target` is above the frozen cut out of shadow mode.
  std::optional<DropPlan> plan;
  /// The point drops: the plan drops, or in shadow mode `target` is above the policy's cut.
  bool drops = false;
  /// What the policy is told at its next point (PolicyInput::held_cut and
  /// held_reason): the cut the cost guard or a drop guard held back and why.
  std::size_t held_cut = 0;
  std::string held_reason;
};

/// Judges the answer `d` of a policy that saw `in` (in shadow mode its own
/// cut, not the run's). `frozen` and `cache_cut` are the run's cuts.
/// `agree` makes the ranks of a data-parallel run agree on the plan.
Judgment judge_point(const JudgeRules& rules, const PolicyInput& in, const Decision& d, std::size_t frozen,
                     std::size_t cache_cut, const PointAhead& ahead,
                     const std::function<DropPlan(DropPlan)>& agree = nullptr);

/// What stats.jsonl records of a drop guard holding an answer back
/// (`guarded`: the cut it let through and the guard), null when none did.
nlohmann::json guard_record(const Judgment& j);

}  // namespace ld::core
