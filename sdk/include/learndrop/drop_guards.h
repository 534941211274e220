#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "learndrop/manifest.h"
#include "learndrop/options.h"
#include "learndrop/policy.h"

namespace ld {

/// Position of stage `i` of `n` on the linear freezing schedule that starts at
/// fraction `start` of the training and ends at 1 (FreezeOut's linear
/// schedule): start + (1 - start) i / (n - 1); `start` when n <= 1.
inline double linear_freeze_point(double start, std::size_t i, std::size_t n) {
  if (n <= 1) return start;
  return start + (1.0 - start) * static_cast<double>(i) / static_cast<double>(n - 1);
}

/// Limits put around every drop criterion's answer: no drop before a
/// fraction of the training, the last stages always trained, a pause between
/// successive drops. The host applies them to every policy's answer, after
/// `decide` (issue 30): every policy accepts the five keys of
/// `drop_guard_keys` in its config section, at the neutral defaults of
/// `host_guard_keys` unless its manifest declares a key to give it its own
/// default. A policy needs no code for them; one that wants to name in its
/// reason what held it back may apply the same `clamp` itself, which changes
/// nothing after it (clamp is idempotent). The host tells a policy whose
/// answer a guard held back at the next point (PolicyInput::held_cut,
/// held_reason "held by <guard>").
///
/// `clamp` keeps no state: the pause counts from the last drop the host
/// applied (PolicyInput::last_drop_epoch), not from the last answer, which
/// the host may have held back.
///
/// Example (a policy that names the guard in its reason):
/// ```
/// DropGuards g = DropGuards::from(options, ctx);
/// std::size_t cut = g.clamp(input, my_cut, &reason);
/// ```
class DropGuards {
 public:
  double min_progress = 0;       ///< No drop before this fraction of the training.
  std::int64_t keep_stages = 0;  ///< Never drop the last `keep_stages` stages.
  double max_fraction = 1;       ///< Never drop more than this fraction of the stages.
  double cooldown = 0;           ///< Fraction of the training between two drops.
  /// Deeper stages wait longer: stage i of n may not drop before
  /// min_progress + (1 - min_progress) * i / (n - 1) of the training
  /// (FreezeOut's linear schedule as a lower bound).
  bool stagger = false;

  /// Reads the keys declared by drop_guard_keys; a key `o` lacks keeps its
  /// neutral value (host_guard_keys: it holds nothing back).
  static DropGuards from(const Options& o, const PolicyContext& ctx) {
    DropGuards g;
    if (o.has("min_progress")) g.min_progress = o.get_float("min_progress");
    if (o.has("keep_stages")) g.keep_stages = o.get_int("keep_stages");
    if (o.has("max_fraction")) g.max_fraction = o.get_float("max_fraction");
    if (o.has("cooldown")) g.cooldown = o.get_float("cooldown");
    if (o.has("stagger")) g.stagger = o.get_bool("stagger");
    g.stages_ = ctx.num_stages;
    g.epochs_ = static_cast<double>(std::max<std::int64_t>(1, ctx.epochs));
    return g;
  }

  /// The largest cut the guards allow for this model (at least `current`).
  std::size_t limit(std::size_t current) const {
    const auto by_fraction = static_cast<std::size_t>(std::floor(max_fraction * static_cast<double>(stages_) + 1e-9));
    const std::size_t by_keep =
        stages_ > static_cast<std::size_t>(keep_stages) ? stages_ - static_cast<std::size_t>(keep_stages) : 0;
    return std::max(current, std::min(by_fraction, by_keep));
  }

  /// The fraction of the training before which stage `i` may not drop.
  double earliest(std::size_t i) const {
    return stagger ? linear_freeze_point(min_progress, i, stages_) : min_progress;
  }

  /// `wanted` limited by the guards at this point; `why` (if given) receives
  /// the guard that held the cut back, "" when none did. A pure function of
  /// its arguments.
  std::size_t clamp(const PolicyInput& in, std::size_t wanted, std::string* why = nullptr) const {
    std::string held;
    std::size_t cut = std::min(wanted, limit(in.cut));
    if (cut < wanted) held = "keep_stages/max_fraction";
    const double progress = in.epoch / epochs_;
    while (cut > in.cut && progress + 1e-9 < earliest(cut - 1)) {
      --cut;
      held = stagger ? "min_progress/stagger" : "min_progress";
    }
    if (cut > in.cut && in.last_drop_epoch >= 0 && progress - in.last_drop_epoch / epochs_ + 1e-9 < cooldown) {
      cut = in.cut;
      held = "cooldown";
    }
    if (why != nullptr) *why = cut < wanted ? held : "";
    return std::max(cut, in.cut);
  }


 private:
  std::size_t stages_ = 0;
  double epochs_ = 1;
};

/// The `period` key every built-in policy declares: how often the host asks
/// it (DropPolicy::period_steps), in optimizer steps, 0 = once per epoch.
inline ConfigKey period_key() {
  return ConfigKey("period", ValueType::kInt, "0", "evaluation period in optimizer steps (0 = once per epoch)")
      .range(0, 1e9);
}

/// The keys DropGuards::from reads, with the given defaults (text as in a
/// config file).
inline std::vector<ConfigKey> drop_guard_keys(const std::string& min_progress, const std::string& keep_stages,
                                              const std::string& max_fraction, const std::string& cooldown,
                                              const std::string& stagger = "false") {
  return {
      ConfigKey("min_progress", ValueType::kFloat, min_progress,
                "never drop before this fraction of the training (0.4 = after 40% of the epochs)")
          .range(0, 1),
      ConfigKey("keep_stages", ValueType::kInt, keep_stages, "never drop the last N stages (0 = any stage may drop)")
          .range(0, 1e6),
      ConfigKey("max_fraction", ValueType::kFloat, max_fraction, "never drop more than this fraction of the stages")
          .range(0, 1),
      ConfigKey("cooldown", ValueType::kFloat, cooldown,
                "fraction of the training that must pass between two drops (0 = none)")
          .range(0, 1),
      ConfigKey("stagger", ValueType::kBool, stagger,
                "deeper stages wait longer: stage i of n not before min_progress + (1 - min_progress) i / (n - 1) "
                "of the training"),
  };
}

/// The guard keys at their neutral values, which hold nothing back: what
/// the host adds to the section of a policy whose manifest does not declare
/// them. A manifest that declares one must give it the type it has here
/// (the host refuses the library otherwise).
inline std::vector<ConfigKey> host_guard_keys() { return drop_guard_keys("0", "0", "1", "0", "false"); }

/// The guard keys a policy whose manifest declares `declared` does not
/// declare, at their neutral values: the ones the host adds to its section.
inline std::vector<ConfigKey> undeclared_guard_keys(const std::vector<ConfigKey>& declared) {
  std::vector<ConfigKey> out;
  for (auto& g : host_guard_keys()) {
    bool found = false;
    for (const auto& k : declared) found = found || k.name == g.name;
    if (!found) out.push_back(std::move(g));
  }
  return out;
}

}  // namespace ld
