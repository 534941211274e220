// Test plugins: a policy declaring a key that is the host's. Built twice
// (tests/CMakeLists.txt):
// - host_key_clash (CLASH_GUARD=0): policy `clash` declares `shadow`, the
//   name of a host key of the policy section (issue 31, defect 9). The host
//   took every value set for it and the plugin never saw one; now the
//   library is refused.
// - guard_key_clash (CLASH_GUARD=1): policy `guard-clash` declares
//   `cooldown`, a drop guard the host applies to every policy (a float, a
//   fraction of the training), as an int of its own meaning. A guard key may
//   be declared only to give its default, with the host's type; this library
//   is refused.
#include "learndrop/sdk.h"

namespace {
class Never : public ld::DropPolicy {
 public:
  ld::Decision decide(const ld::PolicyInput& in) override { return {in.cut, ""}; }
};
void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.version = "0.0.1";
#if CLASH_GUARD
  m.name = "guard-clash";
  m.description = "test policy declaring a drop guard with another type";
  m.keys = {ld::ConfigKey("cooldown", ld::ValueType::kInt, "3", "evaluation points between drops")};
#else
  m.name = "clash";
  m.description = "test policy with a key the host owns";
  m.keys = {ld::ConfigKey("shadow", ld::ValueType::kInt, "3", "the plugin's own meaning")};
#endif
  r.add_policy(m, [](const ld::Options&, const ld::PolicyContext&) { return std::make_unique<Never>(); });
}
}  // namespace

LEARNDROP_PLUGIN(register_plugins)
