#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <ATen/core/Tensor.h>

#include <tbb/task_arena.h>

#include "learndrop/cache.h"
#include "learndrop/core/device.h"
#include "learndrop/core/seeds.h"
#include "learndrop/dataset.h"

namespace ld::core {

class DropController;

/// How batches are prepared.
struct FeedSettings {
  std::int64_t batch_size = 128;
  /// Batches prepared ahead of training by a background thread (0 = each
  /// batch is prepared in the training thread when asked for).
  std::int64_t prefetch = 2;
  /// TBB threads the dataset may use for one batch (its decode and
  /// transform run in a task arena of this size).
  int loader_threads = 1;
  /// The training device: batches are handed out there, float32. On CUDA
  /// the producer copies them through pinned staging buffers on a side
  /// stream (DeviceStager), overlapping the copy with training.
  at::Device device = at::Device(at::kCPU);
};

/// Feeds the training batches of one epoch in model layout, float32, on the
/// training device: from the dataset at cut 0, from the feature cache's
/// reader after a drop.
///
/// A producer thread prepares batches in step order into a queue of at most
/// `prefetch` batches while the model trains on the current one. A batch
/// depends only on its indices and seeds, never on thread timing, so the
/// batches are the same for any prefetch depth and thread count.
class BatchFeed {
 public:
  BatchFeed(const DropController& controller, const Dataset& dataset, const FeedSettings& settings);
  ~BatchFeed();
  BatchFeed(const BatchFeed&) = delete;
  BatchFeed& operator=(const BatchFeed&) = delete;

  /// (Re)starts at batch `first_step` of `order`; batch s covers
  /// order[s*B, (s+1)*B) and feeding stops before batch `steps`. Call again
  /// after a drop so the rest of the epoch comes from the new cache.
  void start(const std::vector<std::int64_t>& order, std::int64_t first_step, std::int64_t steps,
             std::uint64_t epoch_seed);

  /// The next batch; false after the last one. Rethrows what preparing it
  /// threw (e.g. a corrupt file).
  bool next(at::Tensor& images, at::Tensor& labels);

  /// Stops the producer thread and releases the cache reader; `next`
  /// returns false until the next `start`. Call before a drop replaces the
  /// cache the reader reads.
  void stop();

 private:
  struct Item {
    DeviceStager::Staged staged;  ///< images, labels
    std::exception_ptr error;
  };
  std::vector<std::int64_t> indices(std::int64_t step) const;
  Item make(std::int64_t step);
  void produce();

  const DropController& controller_;
  const Dataset& dataset_;
  FeedSettings settings_;
  std::unique_ptr<tbb::task_arena> arena_;
  std::unique_ptr<DeviceStager> stager_;
  const std::vector<std::int64_t>* order_ = nullptr;
  std::int64_t step_ = 0;      // next batch handed out
  std::int64_t produced_ = 0;  // next batch the producer prepares
  std::int64_t steps_ = 0;
  std::uint64_t epoch_seed_ = 0;
  std::unique_ptr<BatchReader> reader_;

  std::thread producer_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Item> queue_;
  bool stopping_ = false;
};

}  // namespace ld::core
