// Policy plugin `autofreeze`: AutoFreeze's gradient-norm criterion (Liu,
// Agarwal and Venkataraman 2021, "AutoFreeze: Automatically Freezing Model
// Blocks to Accelerate Fine-tuning"). See docs/policies/autofreeze.md.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "learndrop/drop_guards.h"
#include "learndrop/sdk.h"

namespace {

/// At every point: the gradient norm of each trained stage, averaged over
/// the period's steps; its relative change since the previous point; the
/// leading stages whose change is below the `percentile` of the changes of
/// all trained stages are frozen.
class AutoFreezePolicy : public ld::DropPolicy {
 public:
  AutoFreezePolicy(double percentile, std::int64_t period, ld::DropGuards guards, const ld::PolicyContext& ctx)
      : percentile_(percentile), period_(period), guards_(guards), previous_(ctx.num_stages, 0.0) {}

  std::int64_t period_steps() const override { return period_; }

  ld::Decision decide(const ld::PolicyInput& in) override {
    const std::size_t n = in.stages.size();
    std::vector<double> rate(n, -1.0);  // -1: no rate yet (first point of the stage)
    std::vector<double> rates;
    for (std::size_t i = 0; i < n; ++i) {
      const ld::StageStats& s = in.stages[i];
      if (s.dropped) continue;
      if (previous_[i] > 0) {
        rate[i] = std::abs(s.mean_grad_norm - previous_[i]) / previous_[i];
        rates.push_back(rate[i]);
      }
      previous_[i] = s.mean_grad_norm;
    }
    if (rates.size() < 2) return {in.cut, ""};
    const double threshold = percentile_of(rates, percentile_);
    std::size_t wanted = in.cut;
    while (wanted < n && rate[wanted] >= 0 && rate[wanted] < threshold) ++wanted;
    std::string held;
    const std::size_t cut = guards_.clamp(in, wanted, &held);
    if (cut == in.cut) return {in.cut, ""};
    char reason[160];
    std::snprintf(reason, sizeof reason,
                  "gradient-norm changes of stages %zu..%zu below the %.0fth percentile %.4f of the trained stages",
                  in.cut, cut - 1, percentile_, threshold);
    return {cut, reason};
  }

  bool has_state() const override { return true; }
  ld::PolicyState save_state() const override {
    ld::PolicyState state;
    state.values["previous"] = previous_;
    return state;
  }
  void load_state(const ld::PolicyState& state) override {
    previous_ = state.at("previous", static_cast<std::int64_t>(previous_.size()));
  }

 private:
  // Linear interpolation between order statistics (numpy's default).
  static double percentile_of(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    const double pos = p / 100.0 * static_cast<double>(v.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(pos));
    const std::size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
  }

  double percentile_;
  std::int64_t period_;
  ld::DropGuards guards_;
  std::vector<double> previous_;
};

void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "autofreeze";
  m.version = "1.0.0";
  m.description =
      "AutoFreeze (Liu et al. 2021): freezes leading stages whose gradient-norm change falls below a percentile";
  m.keys = {
      ld::ConfigKey("percentile", ld::ValueType::kFloat, "50",
                    "a stage may freeze when its gradient-norm change is below this percentile of the trained "
                    "stages' changes")
          .range(0, 100),
      ld::period_key(),
  };
  auto guards = ld::drop_guard_keys("0", "1", "1", "0");
  m.keys.insert(m.keys.end(), guards.begin(), guards.end());
  r.add_policy(m, [](const ld::Options& o, const ld::PolicyContext& ctx) {
    return std::make_unique<AutoFreezePolicy>(o.get_float("percentile"), o.get_int("period"),
                                              ld::DropGuards::from(o, ctx), ctx);
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
