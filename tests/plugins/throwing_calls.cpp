// Test plugin: a dataset, a policy and a cache whose calls throw, to check
// the host's plugin boundary (core/src/host/plugin_guard.h).
#include <stdexcept>

#include "learndrop/sdk.h"

namespace {

class Dataset final : public ld::Dataset {
 public:
  std::int64_t size(ld::Split) const override { return 4; }
  std::int64_t num_classes() const override { return 2; }
  std::vector<std::int64_t> sample_shape() const override { return {1, 2, 2}; }
  ld::Batch get_batch(ld::Split, const std::vector<std::int64_t>&, std::uint64_t) const override {
    throw std::runtime_error("a plain std::runtime_error from get_batch");
  }
};

class Policy final : public ld::DropPolicy {
 public:
  ld::Decision decide(const ld::PolicyInput&) override { throw 42; }  // not even an exception class
};

class Cache final : public ld::FeatureCache {
 public:
  void begin(const ld::CacheLayout&) override {}
  void put(const std::vector<std::int64_t>&, const at::Tensor&) override {}
  void finish() override {}
  at::Tensor get(const std::vector<std::int64_t>&) override { throw ld::Error("row 7 is unreadable"); }
  std::int64_t bytes() const override { return 0; }
};

ld::Manifest manifest(ld::PluginKind kind) {
  ld::Manifest m;
  m.kind = kind;
  m.name = "throwing-calls";
  m.version = "0.0.1";
  m.description = "test plugin whose calls throw";
  return m;
}

void register_plugins(ld::Registrar& r) {
  r.add_dataset(manifest(ld::PluginKind::kDataset),
                [](const ld::Options&, const ld::DatasetContext&) { return std::make_unique<Dataset>(); });
  r.add_policy(manifest(ld::PluginKind::kPolicy),
               [](const ld::Options&, const ld::PolicyContext&) { return std::make_unique<Policy>(); });
  r.add_cache(manifest(ld::PluginKind::kCache),
              [](const ld::Options&, const ld::CacheContext&) { return std::make_unique<Cache>(); });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
