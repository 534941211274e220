#pragma once
// The one boundary around calls into plugins: the host hands out datasets,
// policies and caches (and caches' readers) wrapped in these, and every call
// through them turns whatever the plugin throws into an ld::Error naming the
// plugin, its library, the config section and the call. Interruptions pass
// through unchanged.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "learndrop/cache.h"
#include "learndrop/core/interrupt.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/dataset.h"
#include "learndrop/error.h"
#include "learndrop/policy.h"

namespace ld::core::guard {

/// "cache plugin 'disk' (/path/ldp_caches.so, section cache)".
inline std::string label(const std::string& kind, const std::string& name, const std::string& library) {
  return kind + " plugin '" + name + "' (" + library + ", section " + kind + ")";
}

template <typename F>
decltype(auto) call(const std::string& who, const char* what, F&& f) {
  try {
    return f();
  } catch (const Interrupted&) {
    throw;
  } catch (const PluginError&) {
    throw;  // already names a plugin
  } catch (const Error& e) {
    throw PluginError(who + " failed in " + what + ": " + e.what(), false);
  } catch (const std::exception& e) {
    throw PluginError(who + " failed in " + what + ": " + e.what(), true);
  } catch (...) {
    throw PluginError(who + " failed in " + what + " with an unknown exception", true);
  }
}

class Reader final : public BatchReader {
 public:
  Reader(std::unique_ptr<BatchReader> inner, std::string who) : inner_(std::move(inner)), who_(std::move(who)) {}
  at::Tensor next() override {
    return call(who_, "reader next", [&] { return inner_->next(); });
  }

 private:
  std::unique_ptr<BatchReader> inner_;
  std::string who_;
};

class Cache final : public FeatureCache {
 public:
  Cache(std::shared_ptr<FeatureCache> inner, std::string who) : inner_(std::move(inner)), who_(std::move(who)) {}
  void begin(const CacheLayout& layout) override {
    call(who_, "begin", [&] { inner_->begin(layout); });
  }
  void put(const std::vector<std::int64_t>& rows, const at::Tensor& batch) override {
    call(who_, "put", [&] { inner_->put(rows, batch); });
  }
  bool grow(std::int64_t count) override {
    return call(who_, "grow", [&] { return inner_->grow(count); });
  }
  void finish() override {
    call(who_, "finish", [&] { inner_->finish(); });
  }
  at::Tensor get(const std::vector<std::int64_t>& rows) override {
    return call(who_, "get", [&] { return inner_->get(rows); });
  }
  at::Device device() const override {
    return call(who_, "device", [&] { return inner_->device(); });
  }
  std::unique_ptr<BatchReader> reader(std::vector<std::int64_t> order, std::int64_t batch_size) override {
    auto inner = call(who_, "reader", [&] { return inner_->reader(std::move(order), batch_size); });
    if (!inner) throw Error(who_ + " returned no reader");
    return std::make_unique<Reader>(std::move(inner), who_);
  }
  std::int64_t bytes() const override {
    return call(who_, "bytes", [&] { return inner_->bytes(); });
  }
  std::string describe() const override {
    return call(who_, "describe", [&] { return inner_->describe(); });
  }
  CacheStats stats() const override {
    return call(who_, "stats", [&] { return inner_->stats(); });
  }
  void retain() override {
    call(who_, "retain", [&] { inner_->retain(); });
  }
  bool reopen(const CacheLayout& layout) override {
    return call(who_, "reopen", [&] { return inner_->reopen(layout); });
  }

 private:
  std::shared_ptr<FeatureCache> inner_;
  std::string who_;
};

class DatasetGuard final : public Dataset {
 public:
  DatasetGuard(std::shared_ptr<Dataset> inner, std::string who) : inner_(std::move(inner)), who_(std::move(who)) {}
  std::int64_t size(Split split) const override {
    return call(who_, "size", [&] { return inner_->size(split); });
  }
  std::int64_t num_classes() const override {
    return call(who_, "num_classes", [&] { return inner_->num_classes(); });
  }
  std::vector<std::int64_t> sample_shape() const override {
    return call(who_, "sample_shape", [&] { return inner_->sample_shape(); });
  }
  Batch get_batch(Split split, const std::vector<std::int64_t>& indices, std::uint64_t seed) const override {
    return call(who_, "get_batch", [&] { return inner_->get_batch(split, indices, seed); });
  }
  bool random_train_transform() const override {
    return call(who_, "random_train_transform", [&] { return inner_->random_train_transform(); });
  }
  bool shift_flip(ShiftFlip& transform) const override {
    return call(who_, "shift_flip", [&] { return inner_->shift_flip(transform); });
  }
  Batch get_untransformed(const std::vector<std::int64_t>& indices, bool mirrored) const override {
    return call(who_, "get_untransformed", [&] { return inner_->get_untransformed(indices, mirrored); });
  }
  std::string describe() const override {
    return call(who_, "describe", [&] { return inner_->describe(); });
  }
  std::vector<std::int64_t> labels(Split split) const override {
    return call(who_, "labels", [&] { return inner_->labels(split); });
  }
  std::vector<std::string> class_names() const override {
    return call(who_, "class_names", [&] { return inner_->class_names(); });
  }

 private:
  std::shared_ptr<Dataset> inner_;
  std::string who_;
};

class Policy final : public DropPolicy {
 public:
  Policy(std::shared_ptr<DropPolicy> inner, std::string who) : inner_(std::move(inner)), who_(std::move(who)) {}
  std::int64_t period_steps() const override {
    return call(who_, "period_steps", [&] { return inner_->period_steps(); });
  }
  Decision decide(const PolicyInput& input) override {
    return call(who_, "decide", [&] { return inner_->decide(input); });
  }
  bool wants_feature_similarity() const override {
    return call(who_, "wants_feature_similarity", [&] { return inner_->wants_feature_similarity(); });
  }
  bool wants_freeze_probe() const override {
    return call(who_, "wants_freeze_probe", [&] { return inner_->wants_freeze_probe(); });
  }
  bool has_state() const override {
    return call(who_, "has_state", [&] { return inner_->has_state(); });
  }
  PolicyState save_state() const override {
    return call(who_, "save_state", [&] { return inner_->save_state(); });
  }
  void load_state(const PolicyState& state) override {
    call(who_, "load_state", [&] { inner_->load_state(state); });
  }

 private:
  std::shared_ptr<DropPolicy> inner_;
  std::string who_;
};

}  // namespace ld::core::guard
