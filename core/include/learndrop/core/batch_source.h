#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <tbb/task_arena.h>

#include "learndrop/cache.h"
#include "learndrop/dataset.h"

namespace ld::core {

class DropController;

/// Where an epoch's training batches come from: the dataset before the first
/// drop, the feature cache after it. BatchFeed reads either without knowing
/// which; DropController::source() makes the one for the current cut, and a
/// drop (DropController::apply) hands the feed the next one.
class BatchSource {
 public:
  virtual ~BatchSource() = default;

  /// Begins an epoch: the feed then asks for batches [first_step, steps) of
  /// `order` (batch s covers order[s*B, (s+1)*B)), each once, in step order.
  virtual void begin(const std::vector<std::int64_t>& order, std::int64_t batch_size, std::int64_t first_step,
                     std::int64_t steps, std::uint64_t epoch_seed) = 0;

  /// Batch `step`, the samples `indices`: images in model layout (float32,
  /// or the cache's storage type; on the CPU or, for a device cache, on the
  /// GPU) and their labels. A batch depends only on its indices and seeds.
  virtual Batch batch(std::int64_t step, const std::vector<std::int64_t>& indices) = 0;

  /// Releases what `begin` acquired (a cache reader); `begin` may follow.
  virtual void end() = 0;
};

/// Batches from the dataset: its training transform, drawn per batch from
/// the epoch seed and the step, decoded in a TBB arena of `loader_threads`.
/// The feed's indices are the controller's sample positions (a stream's or
/// a shard's), mapped to dataset indices by `controller`.
class DatasetSource final : public BatchSource {
 public:
  DatasetSource(const Dataset& dataset, int loader_threads, const DropController& controller);
  void begin(const std::vector<std::int64_t>& order, std::int64_t batch_size, std::int64_t first_step,
             std::int64_t steps, std::uint64_t epoch_seed) override;
  Batch batch(std::int64_t step, const std::vector<std::int64_t>& indices) override;
  void end() override {}

 private:
  const Dataset& dataset_;
  std::unique_ptr<tbb::task_arena> arena_;
  const DropController& controller_;
  std::uint64_t epoch_seed_ = 0;
};

/// Batches from the controller's cache at its current cut: each sample's
/// view drawn for the epoch, shifted in feature space where the cut has
/// shifts, read ahead by the cache's reader. Valid until the next drop, which
/// hands the feed a new source; the reader shares ownership of its cache, so
/// the drop may release the cache while this source still holds a reader.
class CacheSource final : public BatchSource {
 public:
  explicit CacheSource(const DropController& controller) : controller_(controller) {}
  void begin(const std::vector<std::int64_t>& order, std::int64_t batch_size, std::int64_t first_step,
             std::int64_t steps, std::uint64_t epoch_seed) override;
  Batch batch(std::int64_t step, const std::vector<std::int64_t>& indices) override;
  void end() override { reader_.reset(); }

 private:
  const DropController& controller_;
  std::unique_ptr<BatchReader> reader_;
  std::uint64_t epoch_seed_ = 0;
};

}  // namespace ld::core
