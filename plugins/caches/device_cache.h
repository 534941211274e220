#pragma once

#include <mutex>
#include <vector>

#include "learndrop/cache.h"
#include "learndrop/row_ledger.h"

namespace ldcache {

/// Cache `device`: the rows in one tensor in the training device's memory
/// (GPU memory on a CUDA run, RAM on a CPU run); `get` gathers with
/// index_select on the device, so nothing crosses the PCIe bus per batch.
class DeviceCache : public ld::FeatureCache {
 public:
  explicit DeviceCache(at::Device device) : device_(device) {}
  void begin(const ld::CacheLayout& layout) override;
  void put(const std::vector<std::int64_t>& rows, const at::Tensor& batch) override;
  void finish() override;
  /// In place, with spare capacity (1.5x) like the ram cache.
  bool grow(std::int64_t count) override;
  at::Tensor get(const std::vector<std::int64_t>& rows) override;
  at::Device device() const override { return device_; }
  std::int64_t bytes() const override;
  std::string describe() const override;
  ld::CacheStats stats() const override;

 private:
  at::Tensor allocate(std::int64_t rows) const;
  at::Tensor index(const std::vector<std::int64_t>& rows) const;

  at::Device device_;
  ld::CacheLayout layout_;
  at::Tensor buffer_;  // capacity_ rows, the first layout_.count in use
  std::int64_t capacity_ = 0;
  ld::RowLedger ledger_{"cache device"};
  mutable std::mutex stats_mutex_;  // stats() may be called while the feed's producer reads
  ld::CacheStats stats_;
};

}  // namespace ldcache
