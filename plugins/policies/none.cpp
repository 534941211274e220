// Policy plugin `none`: never drops a stage; plain full training, the baseline
// every Learn&Drop run is compared with.

#include "learndrop/sdk.h"

namespace {

class NoDropPolicy : public ld::DropPolicy {
 public:
  ld::Decision decide(const ld::PolicyInput& in) override { return {in.cut, "full training"}; }

  // Nothing is remembered between calls: the state is empty.
  bool has_state() const override { return true; }
  ld::PolicyState save_state() const override { return {}; }
  void load_state(const ld::PolicyState&) override {}
};

void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "none";
  m.version = "1.0.0";
  m.description = "never drops: plain full training (the baseline)";
  r.add_policy(m, [](const ld::Options&, const ld::PolicyContext&) { return std::make_unique<NoDropPolicy>(); });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
