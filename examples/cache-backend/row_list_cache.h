#pragma once

#include <mutex>
#include <vector>

#include <learndrop/cache.h>
#include <learndrop/row_ledger.h>

namespace example {

/// Cache `row-list`: one tensor per row in RAM (see row_list_cache.cpp).
class RowListCache : public ld::FeatureCache {
 public:
  void begin(const ld::CacheLayout& layout) override;
  void put(const std::vector<std::int64_t>& rows, const at::Tensor& batch) override;
  void finish() override;
  bool grow(std::int64_t count) override;
  at::Tensor get(const std::vector<std::int64_t>& rows) override;
  std::int64_t bytes() const override;
  std::string describe() const override;
  ld::CacheStats stats() const override;

 private:
  ld::CacheLayout layout_;
  std::vector<at::Tensor> rows_;
  ld::RowLedger ledger_{"cache row-list"};
  mutable std::mutex stats_mutex_;
  ld::CacheStats stats_;
};

}  // namespace example
