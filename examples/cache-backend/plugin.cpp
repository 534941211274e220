// Registers the example cache `row-list` (row_list_cache.cpp).
#include <learndrop/sdk.h>

#include "row_list_cache.h"

namespace {

void register_plugins(ld::Registrar& registrar) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kCache;
  m.name = "row-list";
  m.version = "1.0.0";
  m.description = "example: every cached row as its own tensor in RAM";
  registrar.add_cache(m, [](const ld::Options&, const ld::CacheContext&) {
    return std::make_unique<example::RowListCache>();
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
