#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "learndrop/cache.h"
#include "learndrop/dataset.h"

namespace ld::core {

class DropController;

/// Mixes two 64-bit values into a well-spread seed.
std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b);

/// The epoch's sample order: a Fisher-Yates shuffle seeded from the run
/// seed and the epoch (identical on every run with the same seed).
std::vector<std::int64_t> epoch_order(std::int64_t n, std::uint64_t seed, std::int64_t epoch);

/// Feeds the training batches of one epoch in model layout: from the dataset
/// at cut 0 (the next batch is prepared in the background while the current
/// one trains), from the feature cache's reader after a drop.
class BatchFeed {
 public:
  BatchFeed(const DropController& controller, const Dataset& dataset, std::int64_t batch_size);
  ~BatchFeed();
  BatchFeed(const BatchFeed&) = delete;
  BatchFeed& operator=(const BatchFeed&) = delete;

  /// (Re)starts at batch `first_step` of `order`; batch s covers
  /// order[s*B, (s+1)*B) and feeding stops before batch `steps`. Call again
  /// after a drop so the rest of the epoch comes from the new cache.
  void start(const std::vector<std::int64_t>& order, std::int64_t first_step, std::int64_t steps,
             std::uint64_t epoch_seed);

  /// The next batch; false after the last one.
  bool next(at::Tensor& images, at::Tensor& labels);

 private:
  std::vector<std::int64_t> indices(std::int64_t step) const;
  void prefetch(std::int64_t step);

  const DropController& controller_;
  const Dataset& dataset_;
  std::int64_t batch_size_;
  const std::vector<std::int64_t>* order_ = nullptr;
  std::int64_t step_ = 0;
  std::int64_t steps_ = 0;
  std::uint64_t epoch_seed_ = 0;
  std::unique_ptr<BatchReader> reader_;
  std::future<Batch> pending_;
};

}  // namespace ld::core
