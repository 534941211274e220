// One evaluation point judged: drop guards, then the cost guard (judge.h).
#include "learndrop/core/judge.h"

#include <algorithm>
#include <utility>

namespace ld::core {

Judgment judge_point(const JudgeRules& rules, const PolicyInput& in, const Decision& d, std::size_t frozen,
                     std::size_t cache_cut, const PointAhead& ahead, const std::function<DropPlan(DropPlan)>& agree) {
  Judgment j;
  j.wanted = std::min(d.cut, rules.stages);
  // The guards a policy may already have applied itself: clamp is
  // idempotent, so such a policy's answer passes unchanged.
  j.target = rules.guards.clamp(in, j.wanted, &j.guard);
  if (j.target < j.wanted) {
    j.held_cut = j.wanted;
    j.held_reason = "held by " + j.guard;
  }
  if (rules.shadow) {
    j.drops = j.target > in.cut;
    return j;
  }
  if (j.target <= frozen) return j;
  DropPlan plan = plan_drop(*rules.cost, effective_drop_mode(rules.drop_mode, d.mode), rules.cost_guard, cache_cut,
                            frozen, j.target, ahead.images_ahead, ahead.cached_samples, ahead.arriving);
  if (agree) plan = agree(std::move(plan));
  j.drops = plan.drop;
  if (!plan.drop) {
    j.held_cut = j.target;
    j.held_reason = plan.held;
  }
  j.plan = std::move(plan);
  return j;
}

nlohmann::json guard_record(const Judgment& j) {
  if (j.target >= j.wanted) return nullptr;
  return {{"cut", j.target}, {"by", j.guard}};
}

}  // namespace ld::core
