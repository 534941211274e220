// Test plugin: policy `scripted` answers the cuts listed in its `cuts` key,
// one per evaluation point (the last repeats), to test the host's invariants.
#include <sstream>

#include "learndrop/sdk.h"

namespace {

class ScriptedPolicy : public ld::DropPolicy {
 public:
  ScriptedPolicy(const std::string& cuts, std::int64_t period, bool state) : period_(period), state_(state) {
    std::stringstream ss(cuts);
    std::string item;
    while (std::getline(ss, item, ',')) cuts_.push_back(std::stoul(item));
    if (cuts_.empty()) throw ld::Error("policy.cuts: expected a comma-separated list of cuts");
  }
  std::int64_t period_steps() const override { return period_; }
  ld::Decision decide(const ld::PolicyInput& in) override {
    std::size_t i = std::min<std::size_t>(static_cast<std::size_t>(in.eval_point - 1), cuts_.size() - 1);
    return {cuts_[i], "scripted"};
  }
  // Its answers depend on the evaluation point alone; with `state: false` it
  // says it has no state, as a third-party policy written before ABI 6 does.
  bool has_state() const override { return state_; }
  ld::PolicyState save_state() const override { return {}; }
  void load_state(const ld::PolicyState&) override {}

 private:
  std::vector<std::size_t> cuts_;
  std::int64_t period_;
  bool state_;
};

void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "scripted";
  m.version = "0.0.1";
  m.description = "test policy: answers a fixed list of cuts";
  m.keys = {ld::ConfigKey("cuts", ld::ValueType::kString, "0", "comma-separated cut per evaluation point"),
            ld::ConfigKey("period", ld::ValueType::kInt, "0", "evaluation period in steps").range(0, 1e9),
            ld::ConfigKey("state", ld::ValueType::kBool, "false", "declare its (empty) state, so that it can resume")};
  r.add_policy(m, [](const ld::Options& o, const ld::PolicyContext&) {
    return std::make_unique<ScriptedPolicy>(o.get_string("cuts"), o.get_int("period"), o.get_bool("state"));
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
