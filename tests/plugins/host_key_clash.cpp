// Test plugin: policy `clash` declares a key `shadow`, the name of a host key
// of the policy section (issue 31, defect 9). The host took every value set
// for it and the plugin never saw one; now the library is refused.
#include "learndrop/sdk.h"

namespace {
class Never : public ld::DropPolicy {
 public:
  ld::Decision decide(const ld::PolicyInput& in) override { return {in.cut, ""}; }
};
void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "clash";
  m.version = "0.0.1";
  m.description = "test policy with a key the host owns";
  m.keys = {ld::ConfigKey("shadow", ld::ValueType::kInt, "3", "the plugin's own meaning")};
  r.add_policy(m, [](const ld::Options&, const ld::PolicyContext&) { return std::make_unique<Never>(); });
}
}  // namespace

LEARNDROP_PLUGIN(register_plugins)
