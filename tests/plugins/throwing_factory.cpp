// Test plugin: policy `throwing` whose factory always throws.
#include "learndrop/sdk.h"

namespace {
void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "throwing";
  m.version = "0.0.1";
  m.description = "test policy whose factory throws";
  r.add_policy(m, [](const ld::Options&, const ld::PolicyContext&) -> std::unique_ptr<ld::DropPolicy> {
    throw ld::Error("cannot create: this test plugin always fails");
  });
}
}  // namespace

LEARNDROP_PLUGIN(register_plugins)
