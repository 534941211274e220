// Test plugin: built for a newer SDK ABI than the host's.
#include "learndrop/sdk.h"

namespace {
void register_plugins(ld::Registrar&) {}
const ld::PluginEntry* entry() {
  static ld::AbiStamp stamp = [] {
    ld::AbiStamp s = ld::current_abi_stamp();
    s.sdk_abi += 1;
    return s;
  }();
  static const ld::PluginEntry e{stamp, &register_plugins};
  return &e;
}
}  // namespace

BOOST_DLL_ALIAS(entry, learndrop_plugin_entry)
