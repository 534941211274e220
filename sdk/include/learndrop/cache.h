#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "learndrop/export.h"

namespace ld {

/// What a cache plugin learns from the host when it is created.
struct CacheContext {
  std::string run_dir;  ///< The run's output folder.
  int threads = 1;      ///< Worker threads the cache may use.
};

/// Yields the cached features of an epoch's order, batch after batch.
class LEARNDROP_VISIBLE BatchReader {
 public:
  virtual ~BatchReader() = default;
  /// The next batch, or an undefined tensor after the last one.
  virtual at::Tensor next() = 0;
};

/// Storage of the feature maps at one cut, for every training sample.
///
/// Life cycle: `begin` once, `put` until every index in [0, count) has been
/// written exactly once (in any order, from one thread), `finish`, then any
/// number of `get` calls and readers. Features are stored per sample as a
/// contiguous row of `shape`; `get` returns them bit-identical for a float32
/// cache.
class LEARNDROP_VISIBLE FeatureCache {
 public:
  virtual ~FeatureCache() = default;

  /// Prepares storage for `count` samples of `shape` (without the batch
  /// dimension), stored as `dtype` (float32, float16 or bfloat16).
  virtual void begin(std::size_t cut, std::int64_t count, const std::vector<std::int64_t>& shape,
                     at::ScalarType dtype) = 0;

  /// Stores `batch` ([B, shape...], float32) as samples `indices`.
  virtual void put(const std::vector<std::int64_t>& indices, const at::Tensor& batch) = 0;

  /// Ends writing; the cache is readable afterwards.
  virtual void finish() = 0;

  /// The samples `indices` as float32 [B, shape...].
  virtual at::Tensor get(const std::vector<std::int64_t>& indices) = 0;

  /// A reader over `order` in batches of `batch_size` (the last may be
  /// smaller). The default reads each batch with `get` when asked.
  virtual std::unique_ptr<BatchReader> reader(std::vector<std::int64_t> order, std::int64_t batch_size);

  /// Bytes the cache holds.
  virtual std::int64_t bytes() const = 0;

  /// One line for logs.
  virtual std::string describe() const { return ""; }
};

namespace detail {
class SequentialReader final : public BatchReader {
 public:
  SequentialReader(FeatureCache& cache, std::vector<std::int64_t> order, std::int64_t batch_size)
      : cache_(cache), order_(std::move(order)), batch_size_(batch_size) {}
  at::Tensor next() override {
    if (pos_ >= order_.size()) return {};
    std::size_t end = std::min(order_.size(), pos_ + static_cast<std::size_t>(batch_size_));
    std::vector<std::int64_t> idx(order_.begin() + pos_, order_.begin() + end);
    pos_ = end;
    return cache_.get(idx);
  }

 private:
  FeatureCache& cache_;
  std::vector<std::int64_t> order_;
  std::int64_t batch_size_;
  std::size_t pos_ = 0;
};
}  // namespace detail

inline std::unique_ptr<BatchReader> FeatureCache::reader(std::vector<std::int64_t> order, std::int64_t batch_size) {
  return std::make_unique<detail::SequentialReader>(*this, std::move(order), batch_size);
}

}  // namespace ld
