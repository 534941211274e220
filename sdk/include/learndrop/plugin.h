#pragma once

/// The one header a plugin library includes.

#include <boost/dll/alias.hpp>

#include "learndrop/abi.h"
#include "learndrop/registrar.h"

namespace ld {

/// What a plugin library's entry returns: the ABI stamp (read first, plain
/// integers) and the function that registers its plugins.
struct PluginEntry {
  AbiStamp stamp;
  void (*register_plugins)(Registrar& registrar);
};

}  // namespace ld

/// Name of the symbol every plugin library exports.
#define LEARNDROP_ENTRY_SYMBOL "learndrop_plugin_entry"

/// Declares the library's entry. `register_fn` is `void(ld::Registrar&)`.
///
/// Example:
/// ```
/// void register_plugins(ld::Registrar& r) { r.add_policy(manifest(), factory); }
/// LEARNDROP_PLUGIN(register_plugins)
/// ```
#define LEARNDROP_PLUGIN(register_fn)                                              \
  namespace learndrop_entry_detail {                                               \
  const ::ld::PluginEntry* learndrop_entry() {                                     \
    static const ::ld::PluginEntry entry{::ld::current_abi_stamp(), &register_fn}; \
    return &entry;                                                                 \
  }                                                                                \
  }                                                                                \
  BOOST_DLL_ALIAS(learndrop_entry_detail::learndrop_entry, learndrop_plugin_entry)
