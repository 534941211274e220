#pragma once
// What most drop criteria keep between evaluation points: for each stage, for
// how many consecutive points its condition has held (its change stopped
// falling, its representation settled, freezing it cost nothing), and the
// leading run of stages whose count reached the policy's patience. Saved and
// loaded as one list of the policy's state, so a resumed run goes on
// counting where it stopped. Beside it, the `prefer` option with which a
// policy asks the host for a drop mode (drop_mode_prefer_key, drop_mode_hint).
//
//   ld::StageStreaks settled_{"settled_for", ctx.num_stages};
//   ...
//   for (std::size_t i = 0; i < n; ++i) if (!in.stages[i].dropped) settled_.record(i, similar(i));
//   const std::size_t wanted = settled_.leading(in.cut, o_.patience);

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "learndrop/manifest.h"  // ConfigKey
#include "learndrop/error.h"
#include "learndrop/policy.h"

namespace ld {

class StageStreaks {
 public:
  /// `state_key`: the name of its list in the policy's state (PolicyState).
  StageStreaks(std::string state_key, std::size_t stages) : key_(std::move(state_key)), count_(stages, 0) {}

  /// Stage i's condition held at this point (its count grows) or did not
  /// (it starts again from 0). A stage past the model's is ignored.
  void record(std::size_t i, bool held) {
    if (i < count_.size()) count_[i] = held ? count_[i] + 1 : 0;
  }

  /// Consecutive points at which stage i's condition held.
  std::int64_t operator[](std::size_t i) const { return count_.at(i); }
  std::size_t size() const { return count_.size(); }

  /// The cut past every stage from `cut` on whose count has reached
  /// `patience`, up to the first that has not: the prefix the policy wants
  /// dropped (`cut` when none).
  std::size_t leading(std::size_t cut, std::int64_t patience) const {
    while (cut < count_.size() && count_[cut] >= patience) ++cut;
    return cut;
  }

  /// Adds its list to a policy's saved state.
  void save(PolicyState& state) const { state.values[key_].assign(count_.begin(), count_.end()); }
  /// Restores its list (an ld::Error naming it when absent or of another length).
  void load(const PolicyState& state) {
    const auto& v = state.at(key_, static_cast<std::int64_t>(count_.size()));
    for (std::size_t i = 0; i < v.size(); ++i) count_[i] = static_cast<std::int64_t>(v[i]);
  }

 private:
  std::string key_;
  std::vector<std::int64_t> count_;
};

/// A policy's `prefer` key, read with drop_mode_hint: the drop mode it asks
/// of the host when policy.drop_mode is auto (default cache).
inline ConfigKey drop_mode_prefer_key() {
  return ConfigKey("prefer", ValueType::kString, "cache",
                   "the drop mode asked of the host when policy.drop_mode is auto: cache (the prefix's output "
                   "computed once; the host's cost guard still weighs it) | freeze | auto (the host's cost model "
                   "picks)")
      .one_of({"cache", "freeze", "auto"});
}

/// A policy's `prefer` option as the drop mode it asks of the host when
/// policy.drop_mode is auto: "cache", "freeze", or "auto" (the host's cost
/// model picks). Anything else is an ld::Error naming it.
inline DropModeHint drop_mode_hint(const std::string& prefer) {
  if (prefer == "cache") return DropModeHint::kCache;
  if (prefer == "freeze") return DropModeHint::kFreeze;
  if (prefer == "auto") return DropModeHint::kAny;
  throw Error("policy.prefer: expected cache, freeze or auto, got '" + prefer + "'");
}

}  // namespace ld
