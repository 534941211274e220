// Cache plugins `device`, `ram`, `disk` and `auto` (device memory while the
// cut fits a budget, then ram, then disk), in one library so that `auto` can
// use all three.

#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "device_cache.h"
#include "disk_cache.h"
#include "learndrop/memory.h"
#include "learndrop/sdk.h"
#include "ram_cache.h"

namespace ldcache {

namespace {

// The disk cache's keys, each with the DiskOptions member it sets (the
// manifests of disk and auto and their factories all use it).
const ld::OptionTable<DiskOptions>& disk_table() {
  static const auto table =
      ld::OptionTable<DiskOptions>()
          .add(ld::ConfigKey("prefetch", ld::ValueType::kInt, "4", "batches each epoch's reader reads ahead")
                   .range(1, 256),
               &DiskOptions::prefetch)
          .add(ld::ConfigKey("drop_page_cache", ld::ValueType::kBool, "false",
                             "evict the cache file from the OS page cache after writing it and after each epoch, so "
                             "reads come from the device (benchmarks)"),
               &DiskOptions::drop_page_cache);
  return table;
}

// `auto`: a RamCache while the cut fits ram_budget, a DiskCache otherwise;
// when the disk cache cannot be created (full disk, unwritable folder) and the
// cut fits in available memory, a RamCache with a warning.
class AutoCache : public ld::FeatureCache {
 public:
  AutoCache(std::string budget, std::string device_budget_text, DiskOptions disk, ld::CacheContext ctx)
      : budget_text_(std::move(budget)),
        budget_(ld::ram_budget(budget_text_)),
        device_budget_text_(std::move(device_budget_text)),
        disk_(std::move(disk)),
        ctx_(std::move(ctx)) {
    ld::device_budget(device_budget_text_, at::Device(ctx_.device));  // validates the option at creation
  }

  void begin(const ld::CacheLayout& layout) override {
    row_bytes_ = layout.row_bytes();
    const std::int64_t need = layout.count * layout.row_bytes();
    const at::Device device(ctx_.device);
    const std::int64_t on_device = ld::device_budget(device_budget_text_, device);
    const std::string tier = ld::auto_tier(need, device, on_device, budget_);
    if (tier == "device") {
      try {
        auto cache = std::make_unique<DeviceCache>(device);
        cache->begin(layout);
        impl_ = std::move(cache);
        reason_ =
            bytes_text(static_cast<double>(need)) + " <= device_budget " + bytes_text(static_cast<double>(on_device));
        return;
      } catch (const ld::Error& e) {
        spdlog::warn("cache auto: {}; trying RAM", e.what());
      }
    }
    if (device.is_cuda()) {
      reason_ = bytes_text(static_cast<double>(need)) + " > device_budget " +
                bytes_text(static_cast<double>(on_device)) + ", ";
    }
    if (need <= budget_) {  // ld::auto_tier's rule below the device tier (also when the device failed)
      impl_ = std::make_unique<RamCache>();
      reason_ += bytes_text(static_cast<double>(need)) + " <= ram_budget " + bytes_text(static_cast<double>(budget_));
      impl_->begin(layout);
      return;
    }
    reason_ += bytes_text(static_cast<double>(need)) + " > ram_budget " + bytes_text(static_cast<double>(budget_));
    try {
      auto disk = std::make_unique<DiskCache>(disk_, ctx_);
      disk->begin(layout);
      impl_ = std::move(disk);
    } catch (const ld::Error& e) {
      const std::int64_t available = ld::available_memory();
      if (!ld::ram_fallback_fits(need, available)) {
        throw ld::Error(std::string(e.what()) + "; and the cut (" + bytes_text(static_cast<double>(need)) +
                        ") does not fit in available memory (" + bytes_text(static_cast<double>(available)) + ")");
      }
      spdlog::warn("cache auto: {}; keeping the cut-{} cache in RAM instead ({} of {} available)", e.what(), layout.cut,
                   bytes_text(static_cast<double>(need)), bytes_text(static_cast<double>(available)));
      reason_ += ", disk failed";
      impl_ = std::make_unique<RamCache>();
      impl_->begin(layout);
    }
  }
  void put(const std::vector<std::int64_t>& rows, const at::Tensor& batch) override { impl_->put(rows, batch); }
  void finish() override { impl_->finish(); }
  // In place while the grown cut still fits the tier it is in; otherwise
  // the host copies it into a new cache, which begin() puts in the tier
  // that fits (a stream outgrowing RAM moves to disk).
  bool grow(std::int64_t count) override {
    if (!impl_) throw ld::Error("cache auto: grow before begin");
    const std::int64_t need = count * row_bytes_;
    const at::Device device(ctx_.device);
    if (impl_->device().is_cuda()) {
      if (need > ld::device_budget(device_budget_text_, device)) return false;
    } else if (dynamic_cast<RamCache*>(impl_.get()) != nullptr && need > budget_) {
      return false;
    }
    if (dynamic_cast<DiskCache*>(impl_.get()) != nullptr) {
      // A full disk: the host copies the rows into a new cache, which begin()
      // keeps in RAM when they fit, as when the disk fails at the start.
      try {
        return impl_->grow(count);
      } catch (const StorageError& e) {
        spdlog::warn("cache auto: {}; moving the cache to a new one", e.what());
        return false;
      }
    }
    return impl_->grow(count);
  }
  at::Tensor get(const std::vector<std::int64_t>& rows) override { return impl_->get(rows); }
  at::Device device() const override { return impl_ ? impl_->device() : at::Device(at::kCPU); }
  std::unique_ptr<ld::BatchReader> reader(std::vector<std::int64_t> order, std::int64_t batch_size) override {
    return impl_->reader(std::move(order), batch_size);
  }
  std::int64_t bytes() const override { return impl_ ? impl_->bytes() : 0; }
  std::string describe() const override { return "auto (" + reason_ + "): " + (impl_ ? impl_->describe() : ""); }
  ld::CacheStats stats() const override { return impl_ ? impl_->stats() : ld::CacheStats{}; }
  void retain() override {
    if (impl_) impl_->retain();
  }
  // Only a cut that begin() would put on disk can have been kept there.
  bool reopen(const ld::CacheLayout& layout) override {
    const std::int64_t need = layout.count * layout.row_bytes();
    const at::Device device(ctx_.device);
    if (ld::auto_tier(need, device, ld::device_budget(device_budget_text_, device), budget_) != "disk") return false;
    auto disk = std::make_unique<DiskCache>(disk_, ctx_);
    if (!disk->reopen(layout)) return false;
    row_bytes_ = layout.row_bytes();
    reason_ = bytes_text(static_cast<double>(need)) + " > ram_budget " + bytes_text(static_cast<double>(budget_)) +
              ", reopened";
    impl_ = std::move(disk);
    return true;
  }

 private:
  std::string budget_text_;
  std::int64_t budget_;
  std::string device_budget_text_;
  DiskOptions disk_;
  ld::CacheContext ctx_;
  std::unique_ptr<ld::FeatureCache> impl_;
  std::string reason_;
  std::int64_t row_bytes_ = 0;
};

void register_plugins(ld::Registrar& r) {
  ld::Manifest device;
  device.kind = ld::PluginKind::kCache;
  device.name = "device";
  device.version = "1.0.0";
  device.description = "feature maps in the training device's memory (the GPU on a CUDA run), gathered there";
  r.add_cache(device, [](const ld::Options&, const ld::CacheContext& ctx) {
    return std::make_unique<DeviceCache>(at::Device(ctx.device));
  });

  ld::Manifest ram;
  ram.kind = ld::PluginKind::kCache;
  ram.name = "ram";
  ram.version = "1.1.0";
  ram.description = "feature maps in one contiguous RAM buffer per cut, TBB-parallel gather";
  r.add_cache(ram, [](const ld::Options&, const ld::CacheContext&) { return std::make_unique<RamCache>(); });

  ld::Manifest disk;
  disk.kind = ld::PluginKind::kCache;
  disk.name = "disk";
  disk.version = "1.0.0";
  disk.description = "a checksummed record file per cut, parallel pread with batches read ahead";
  disk.keys = disk_table().keys();
  r.add_cache(disk, [](const ld::Options& o, const ld::CacheContext& ctx) {
    return std::make_unique<DiskCache>(disk_table().read(o), ctx);
  });

  ld::Manifest autom;
  autom.kind = ld::PluginKind::kCache;
  autom.name = "auto";
  autom.version = "1.0.0";
  autom.description =
      "device memory while a cut fits device_budget (CUDA runs), then ram while it fits ram_budget, then disk "
      "(ram if the disk fails and memory allows)";
  autom.keys = disk_table().keys();
  autom.keys.insert(
      autom.keys.begin(),
      ld::ConfigKey("ram_budget", ld::ValueType::kString, "auto",
                    "largest cut kept in RAM: auto (half of the available memory) or a size such as 8GiB"));
  autom.keys.insert(autom.keys.begin(),
                    ld::ConfigKey("device_budget", ld::ValueType::kString, "auto",
                                  "largest cut kept in GPU memory on a CUDA run: auto (half of the GPU memory free "
                                  "at the drop), 0 (never) or a size such as 20GiB; unused on CPU runs"));
  r.add_cache(autom, [](const ld::Options& o, const ld::CacheContext& ctx) {
    return std::make_unique<AutoCache>(o.get_string("ram_budget"), o.get_string("device_budget"), disk_table().read(o),
                                       ctx);
  });
}

}  // namespace

}  // namespace ldcache

LEARNDROP_PLUGIN(ldcache::register_plugins)
