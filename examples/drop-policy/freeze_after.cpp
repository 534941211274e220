// An example drop policy written against the LearnDrop SDK alone:
// `freeze-after` drops a fixed number of leading stages once training has
// run for a given number of epochs. A real criterion would look at
// `in.stages[i].relative_change` and friends.

#include <learndrop/sdk.h>

namespace {

class FreezeAfter : public ld::DropPolicy {
 public:
  FreezeAfter(double epoch, std::size_t stages) : epoch_(epoch), stages_(stages) {}

  ld::Decision decide(const ld::PolicyInput& in) override {
    if (in.epoch + 1e-9 < epoch_) return {in.cut, ""};
    return {std::max(in.cut, stages_), "epoch " + std::to_string(in.epoch) + " reached"};
  }

 private:
  double epoch_;
  std::size_t stages_;
};

void register_plugins(ld::Registrar& registrar) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "freeze-after";
  m.version = "1.0.0";
  m.description = "example: drops the first `stages` stages once `epoch` epochs have run";
  m.keys = {
      ld::ConfigKey("epoch", ld::ValueType::kFloat, "1", "epochs to train before dropping").range(0, 1e6),
      ld::ConfigKey("stages", ld::ValueType::kInt, "2", "number of leading stages to drop").range(0, 10000),
  };
  registrar.add_policy(m, [](const ld::Options& o, const ld::PolicyContext& ctx) {
    if (static_cast<std::size_t>(o.get_int("stages")) > ctx.num_stages) {
      throw ld::Error("policy.stages: " + std::to_string(o.get_int("stages")) + " is more than the model's " +
                      std::to_string(ctx.num_stages) + " stages");
    }
    return std::make_unique<FreezeAfter>(o.get_float("epoch"), static_cast<std::size_t>(o.get_int("stages")));
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
