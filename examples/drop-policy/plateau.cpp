// An example drop policy written against the LearnDrop SDK alone, built the
// way docs/plugins.md recommends:
//
// - its keys are declared once, in an ld::OptionTable, with the member of
//   its options struct each one sets (the manifest and the factory both use
//   the table);
// - it declares the drop guards (min_progress, keep_stages, max_fraction,
//   cooldown, stagger) only to give them its own defaults: the host applies
//   them to its answer, as to every policy's, and tells it at the next point
//   when they held it back (PolicyInput::held_cut, held_reason);
// - it counts each stage's points in a row with an ld::StageStreaks, which
//   also saves and restores that count, so a run with it can be resumed
//   from a checkpoint bit-identically.
//
// `plateau`: a stage may drop once its parameter change per unit of learning
// rate (relative_change / lr_sum, so that a decaying schedule alone does not
// look like convergence) has stayed below `threshold` for `patience`
// evaluation points in a row. The leading run of such stages drops.

#include <learndrop/drop_guards.h>  // drop_guard_keys
#include <learndrop/sdk.h>
#include <learndrop/stage_streaks.h>  // StageStreaks

namespace {

struct PlateauOptions {
  double threshold = 0;
  std::int64_t patience = 0;
};

const ld::OptionTable<PlateauOptions>& table() {
  static const auto t =
      ld::OptionTable<PlateauOptions>()
          .add(ld::ConfigKey("threshold", ld::ValueType::kFloat, "0.05",
                             "a stage is still if its relative change per unit of learning rate stays below this")
                   .range(0, 1e9),
               &PlateauOptions::threshold)
          .add(ld::ConfigKey("patience", ld::ValueType::kInt, "2", "evaluation points a stage must stay still")
                   .range(1, 1000),
               &PlateauOptions::patience)
          .add_unbound(ld::drop_guard_keys("0.3", "1", "1", "0"));
  return t;
}

class Plateau : public ld::DropPolicy {
 public:
  Plateau(PlateauOptions o, std::size_t stages) : o_(o), still_("still_for", stages) {}

  ld::Decision decide(const ld::PolicyInput& in) override {
    for (std::size_t i = 0; i < in.stages.size(); ++i) {
      const auto& s = in.stages[i];
      if (s.dropped) continue;
      const double change = in.lr_sum > 0 ? s.relative_change / in.lr_sum : s.relative_change;
      still_.record(i, change < o_.threshold);
    }
    const std::size_t wanted = still_.leading(in.cut, o_.patience);  // the leading run of still stages
    if (wanted <= in.cut) return {in.cut, ""};
    // The host's guards may let fewer stages go (and say so in stats.jsonl).
    return {wanted, "stages 1-" + std::to_string(wanted) + " still for " + std::to_string(o_.patience) + " points"};
  }

  // What decide() remembers: how long each stage has been still.
  bool has_state() const override { return true; }
  ld::PolicyState save_state() const override {
    ld::PolicyState state;
    still_.save(state);
    return state;
  }
  void load_state(const ld::PolicyState& state) override { still_.load(state); }

 private:
  PlateauOptions o_;
  ld::StageStreaks still_;
};

void register_plugins(ld::Registrar& registrar) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "plateau";
  m.version = "1.0.0";
  m.description = "example: drops the leading stages whose change per unit of learning rate stays below a threshold";
  m.keys = table().keys();
  registrar.add_policy(m, [](const ld::Options& o, const ld::PolicyContext& ctx) {
    return std::make_unique<Plateau>(table().read(o), ctx.num_stages);
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
