// Test plugin: registers policy `none`, which the built-in none plugin owns.
#include "learndrop/sdk.h"

namespace {
class Never : public ld::DropPolicy {
 public:
  ld::Decision decide(const ld::PolicyInput& in) override { return {in.cut, ""}; }
};
void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "none";
  m.version = "0.0.1";
  m.description = "test policy with a name that is already taken";
  r.add_policy(m, [](const ld::Options&, const ld::PolicyContext&) { return std::make_unique<Never>(); });
}
}  // namespace

LEARNDROP_PLUGIN(register_plugins)
