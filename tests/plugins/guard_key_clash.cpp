// Test plugin: policy `guard-clash` declares `cooldown`, a drop guard the host
// applies to every policy (a float, a fraction of the training), as an int
// of its own meaning. A guard key may be declared only to give its default,
// with the host's type; this library is refused.
#include "learndrop/sdk.h"

namespace {
class Never : public ld::DropPolicy {
 public:
  ld::Decision decide(const ld::PolicyInput& in) override { return {in.cut, ""}; }
};
void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "guard-clash";
  m.version = "0.0.1";
  m.description = "test policy declaring a drop guard with another type";
  m.keys = {ld::ConfigKey("cooldown", ld::ValueType::kInt, "3", "evaluation points between drops")};
  r.add_policy(m, [](const ld::Options&, const ld::PolicyContext&) { return std::make_unique<Never>(); });
}
}  // namespace

LEARNDROP_PLUGIN(register_plugins)
