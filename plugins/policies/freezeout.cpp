// Policy plugin `freezeout`: FreezeOut's layer-wise freezing schedule (Brock
// et al. 2017, "FreezeOut: Accelerate Training by Progressively Freezing
// Layers"). See docs/policies/freezeout.md for the reading implemented here.

#include <cmath>
#include <cstdio>

#include "learndrop/drop_guards.h"
#include "learndrop/sdk.h"

namespace {

/// Stage i of n freezes at fraction t_i of the training: t_0 for the first,
/// 1 for the last, linear (t_i = t0 + (1 - t0) i / (n - 1)) or cubic
/// (t_i = (t0^(1/3) + (1 - t0^(1/3)) i / (n - 1))^3) in between.
class FreezeOutPolicy : public ld::DropPolicy {
 public:
  FreezeOutPolicy(double t0, bool cubic, std::int64_t period, ld::DropGuards guards, const ld::PolicyContext& ctx)
      : t0_(t0),
        cubic_(cubic),
        period_(period),
        guards_(guards),
        stages_(ctx.num_stages),
        epochs_(static_cast<double>(std::max<std::int64_t>(1, ctx.epochs))) {}

  std::int64_t period_steps() const override { return period_; }

  /// The fraction of the training at which stage `i` freezes.
  double freeze_at(std::size_t i) const {
    if (!cubic_) return ld::linear_freeze_point(t0_, i, stages_);
    // Cubic: the linear schedule from t0^(1/3), cubed.
    return std::pow(ld::linear_freeze_point(std::cbrt(t0_), i, stages_), 3.0);
  }

  ld::Decision decide(const ld::PolicyInput& in) override {
    const double progress = in.epoch / epochs_;
    std::size_t wanted = in.cut;
    while (wanted < stages_ && progress + 1e-9 >= freeze_at(wanted) && freeze_at(wanted) < 1.0 - 1e-12) ++wanted;
    std::string held;
    const std::size_t cut = guards_.clamp(in, wanted, &held);
    if (cut == in.cut) return {in.cut, ""};
    char reason[160];
    std::snprintf(reason, sizeof reason,
                  "FreezeOut schedule (%s, t0 %.3f): stages up to %zu freeze by %.1f%% of training",
                  cubic_ ? "cubic" : "linear", t0_, cut, 100.0 * freeze_at(cut - 1));
    return {cut, reason};
  }

  // Nothing to remember: the schedule is a function of the point, and the
  // guards read the last drop from the input. A resume needs no state.
  bool has_state() const override { return true; }
  ld::PolicyState save_state() const override { return {}; }
  void load_state(const ld::PolicyState& /*state*/) override {}

 private:
  double t0_;
  bool cubic_;
  std::int64_t period_;
  ld::DropGuards guards_;
  std::size_t stages_;
  double epochs_;
};

void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "freezeout";
  m.version = "1.0.0";
  m.description =
      "FreezeOut (Brock et al. 2017): stage i freezes at a fixed fraction of training, earlier stages first";
  m.keys = {
      ld::ConfigKey("t0", ld::ValueType::kFloat, "0.5", "fraction of the training at which the first stage freezes")
          .range(0, 1),
      ld::ConfigKey("scaling", ld::ValueType::kString, "linear",
                    "how the freeze points of later stages spread from t0 to 1: linear or cubic")
          .one_of({"linear", "cubic"}),
      ld::period_key(),
  };
  auto guards = ld::drop_guard_keys("0", "1", "1", "0");
  m.keys.insert(m.keys.end(), guards.begin(), guards.end());
  r.add_policy(m, [](const ld::Options& o, const ld::PolicyContext& ctx) {
    return std::make_unique<FreezeOutPolicy>(o.get_float("t0"), o.get_string("scaling") == "cubic", o.get_int("period"),
                                             ld::DropGuards::from(o, ctx), ctx);
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
