// Policy plugin `freeze-probe`: for starting from trained weights, drops the
// leading stages whose fine-tuning has not helped, measured directly as the
// loss effect of freezing them (issue 29). At each evaluation point the host
// runs its probe batch through the model with stages 0..k computing what
// they computed at the run's start (their outputs then) and the rest as now
// (StageStats::frozen_probe_loss), against the model as it is
// (PolicyInput::probe_loss): what fixed freezing of that prefix from the
// start would have cost, with the rest trained as it was. When that is at
// most `tolerance` of the probe loss for `patience` points, the prefix drops
// (docs/policies/freeze-probe.md).

#include <algorithm>
#include <cstdio>

#include "learndrop/drop_guards.h"
#include "learndrop/sdk.h"
#include "learndrop/stage_streaks.h"

namespace {

struct FreezeProbeOptions {
  std::int64_t period = 0;
  double tolerance = 0;
  std::int64_t patience = 0;
  std::string prefer;
};

const ld::OptionTable<FreezeProbeOptions>& options_table() {
  static const auto table =
      ld::OptionTable<FreezeProbeOptions>()
          .add(ld::period_key(), &FreezeProbeOptions::period)
          .add(ld::ConfigKey("tolerance", ld::ValueType::kFloat, "0.02",
                             "a prefix may drop when freezing it from the start would have raised the probe batch's "
                             "loss by at most this fraction (0.02 = 2%)")
                   .range(-1, 100),
               &FreezeProbeOptions::tolerance)
          .add(ld::ConfigKey("patience", ld::ValueType::kInt, "1",
                             "consecutive points within the tolerance before a prefix may drop")
                   .range(1, 1000),
               &FreezeProbeOptions::patience)
          .add(ld::drop_mode_prefer_key(), &FreezeProbeOptions::prefer)
          // As cka, for trained weights: a drop may come at the first point,
          // every stage but the last two may go, no stagger.
          .add_unbound(ld::drop_guard_keys("0", "2", "1", "0", "false"));
  return table;
}

class FreezeProbePolicy : public ld::DropPolicy {
 public:
  FreezeProbePolicy(const FreezeProbeOptions& o, ld::DropGuards guards, const ld::PolicyContext& ctx)
      : o_(o), guards_(guards), within_("within_for", ctx.num_stages) {}

  std::int64_t period_steps() const override { return o_.period; }
  bool wants_freeze_probe() const override { return true; }

  ld::Decision decide(const ld::PolicyInput& in) override {
    if (in.probe_loss < 0) throw ld::Error("freeze-probe: the host measured no freeze probe (probe_loss)");
    const std::size_t n = std::min(in.stages.size(), within_.size());
    const double base = std::max(in.probe_loss, 1e-12);
    for (std::size_t i = 0; i < n; ++i) {
      const ld::StageStats& s = in.stages[i];
      if (s.dropped) continue;
      if (s.frozen_probe_loss < 0) throw ld::Error("freeze-probe: the host measured no frozen_probe_loss");
      within_.record(i, (s.frozen_probe_loss - in.probe_loss) / base <= o_.tolerance);
    }
    const std::size_t wanted = std::min(n, within_.leading(in.cut, o_.patience));
    std::string held;
    const std::size_t cut = guards_.clamp(in, wanted, &held);
    ld::Decision d;
    d.cut = cut;
    d.mode = ld::drop_mode_hint(o_.prefer);
    if (cut == in.cut) {
      d.reason = wanted > in.cut ? "freezing up to " + std::to_string(wanted) + " costs nothing; held by " + held : "";
      return d;
    }
    char buf[192];
    std::snprintf(buf, sizeof buf,
                  "freezing stages up to %s from the start would have cost %+.2f%% of the probe loss (%.4f; "
                  "tolerance %.2f%%, %lld points)",
                  in.stages[cut - 1].name.c_str(),
                  100.0 * (in.stages[cut - 1].frozen_probe_loss - in.probe_loss) / base, in.probe_loss,
                  100.0 * o_.tolerance, static_cast<long long>(o_.patience));
    d.reason = buf;
    if (cut < wanted) d.reason += " (" + held + " holds back the rest)";
    return d;
  }

  bool has_state() const override { return true; }
  ld::PolicyState save_state() const override {
    ld::PolicyState s;
    within_.save(s);
    return s;
  }
  void load_state(const ld::PolicyState& state) override { within_.load(state); }

 private:
  FreezeProbeOptions o_;
  ld::DropGuards guards_;
  ld::StageStreaks within_;  // points each stage has been within the tolerance
};

void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "freeze-probe";
  m.version = "1.0.0";
  m.description =
      "drops the leading stages whose freezing from the start would have cost at most a tolerance of "
      "a probe batch's loss (trained weights)";
  m.keys = options_table().keys();
  r.add_policy(m, [](const ld::Options& o, const ld::PolicyContext& ctx) {
    return std::make_unique<FreezeProbePolicy>(options_table().read(o), ld::DropGuards::from(o, ctx), ctx);
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
