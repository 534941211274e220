// Test plugin: a library built against an SDK whose interface of one
// extension point (OLDER_KIND: 0 = cache, 1 = policy) was one version older
// than the host's, every other interface unchanged. It registers a policy
// `older-sdk` and a cache `older-sdk`: the plugin of the changed interface is
// refused, the other one loads and works.
#include "learndrop/sdk.h"

namespace {

class ConstantPolicy : public ld::DropPolicy {
 public:
  ld::Decision decide(const ld::PolicyInput& in) override { return {in.cut + 1, "older-sdk: one more stage"}; }
};

void register_plugins(ld::Registrar& r) {
  ld::Manifest policy;
  policy.kind = ld::PluginKind::kPolicy;
  policy.name = "older-sdk";
  policy.version = "0.0.1";
  policy.description = "test policy of a library built against an older SDK";
  r.add_policy(policy, [](const ld::Options&, const ld::PolicyContext&) { return std::make_unique<ConstantPolicy>(); });
  ld::Manifest cache = policy;
  cache.kind = ld::PluginKind::kCache;
  cache.description = "test cache of a library built against an older SDK (never created)";
  r.add_cache(cache, [](const ld::Options&, const ld::CacheContext&) -> std::unique_ptr<ld::FeatureCache> {
    throw ld::Error("older-sdk cache: never created");
  });
}

const ld::PluginEntry* entry() {
  static const ld::AbiStamp stamp = [] {
    ld::AbiStamp s = ld::current_abi_stamp();
#if OLDER_KIND == 0
    s.cache_interface -= 1;
#else
    s.policy_interface -= 1;
#endif
    return s;
  }();
  static const ld::PluginEntry e{stamp, &register_plugins};
  return &e;
}

}  // namespace

BOOST_DLL_ALIAS(entry, learndrop_plugin_entry)
