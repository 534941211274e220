// Test plugin: built against the oldest SDK ABI the host still loads (11,
// before ValueType::kPath), with a policy that must stay usable.
#include "learndrop/sdk.h"

namespace {
class Stay : public ld::DropPolicy {
 public:
  ld::Decision decide(const ld::PolicyInput&) override { return {}; }
};

void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "older-abi";
  m.version = "1";
  m.description = "never drops";
  r.add_policy(m, [](const ld::Options&, const ld::PolicyContext&) { return std::make_unique<Stay>(); });
}

const ld::PluginEntry* entry() {
  static ld::AbiStamp stamp = [] {
    ld::AbiStamp s = ld::current_abi_stamp();
    s.sdk_abi = ld::kOldestSdkAbiVersion;
    return s;
  }();
  static const ld::PluginEntry e{stamp, &register_plugins};
  return &e;
}
}  // namespace

BOOST_DLL_ALIAS(entry, learndrop_plugin_entry)
