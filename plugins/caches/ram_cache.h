#pragma once

#include <mutex>
#include <vector>

#include "learndrop/cache.h"
#include "learndrop/format.h"
#include "learndrop/row_ledger.h"

namespace ldcache {

/// Cache `ram`: one contiguous buffer per cut; batches are gathered with
/// TBB-parallel row copies.
class RamCache : public ld::FeatureCache {
 public:
  void begin(const ld::CacheLayout& layout) override;
  void put(const std::vector<std::int64_t>& rows, const at::Tensor& batch) override;
  void finish() override;
  /// In place: the buffer keeps spare capacity (1.5x) so that a stream's
  /// arrivals copy the old rows a few times, not at every arrival.
  bool grow(std::int64_t count) override;
  at::Tensor get(const std::vector<std::int64_t>& rows) override;
  std::int64_t bytes() const override;
  std::string describe() const override;
  ld::CacheStats stats() const override;

 private:
  ld::CacheLayout layout_;
  at::Tensor buffer_;  // capacity_ rows, the first layout_.count in use
  std::int64_t capacity_ = 0;
  std::size_t row_bytes_ = 0;
  ld::RowLedger ledger_{"cache ram"};
  mutable std::mutex stats_mutex_;  // stats() may be called while the feed's producer reads
  ld::CacheStats stats_;
};

/// "[C,H,W] x N" for descriptions.
std::string shape_text(const ld::CacheLayout& layout);

/// Bytes as "1.50 GiB" (ld::format_bytes, as the host writes them).
std::string bytes_text(double bytes);

}  // namespace ldcache
