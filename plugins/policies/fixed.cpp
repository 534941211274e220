// Policy plugin `fixed`: drops the first `cut` stages at the first evaluation
// point at or after `epoch` — a fixed schedule, for benchmarks and ablations
// against Learn&Drop's adaptive criterion.

#include <algorithm>
#include <cstdio>

#include "learndrop/sdk.h"

namespace {

class FixedPolicy : public ld::DropPolicy {
 public:
  FixedPolicy(std::size_t cut, double epoch, std::size_t stages) : cut_(std::min(cut, stages)), epoch_(epoch) {}
  ld::Decision decide(const ld::PolicyInput& in) override {
    if (in.epoch + 1e-9 < epoch_) return {in.cut, ""};
    char reason[64];
    std::snprintf(reason, sizeof reason, "fixed schedule: cut %zu from epoch %g", cut_, epoch_);
    return {std::max(in.cut, cut_), reason};
  }

  // Nothing is remembered between calls: the state is empty.
  bool has_state() const override { return true; }
  ld::PolicyState save_state() const override { return {}; }
  void load_state(const ld::PolicyState&) override {}

 private:
  std::size_t cut_;
  double epoch_;
};

void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "fixed";
  m.version = "1.0.0";
  m.description = "drops the first `cut` stages at a fixed epoch (benchmarks, ablations)";
  m.keys = {ld::ConfigKey("cut", ld::ValueType::kInt, "1", "stages to drop (clamped to the model's)").range(1, 1e6),
            ld::ConfigKey("epoch", ld::ValueType::kFloat, "1",
                          "drop at the first evaluation point at or after this "
                          "epoch (evaluation points end each epoch)")
                .range(0, 1e6)};
  r.add_policy(m, [](const ld::Options& o, const ld::PolicyContext& ctx) {
    return std::make_unique<FixedPolicy>(static_cast<std::size_t>(o.get_int("cut")), o.get_float("epoch"),
                                         ctx.num_stages);
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
