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

#include "learndrop/core/batch_source.h"
#include "learndrop/core/device.h"

namespace ld::core {

/// How batches are prepared.
struct FeedSettings {
  std::int64_t batch_size = 128;
  /// Batches prepared ahead of training by a background thread (0 = each
  /// batch is prepared in the training thread when asked for).
  std::int64_t prefetch = 2;
  /// The training device: batches are handed out there, float32. On CUDA
  /// the producer copies them through pinned staging buffers on a side
  /// stream (DeviceStager), overlapping the copy with training.
  at::Device device = at::Device(at::kCPU);
};

/// Feeds the training batches of one epoch in model layout, float32, on the
/// training device, from a BatchSource: the dataset before the first drop,
/// the feature cache after it (DropController::source and apply). The feed
/// does not know which. It keeps the epoch's order itself.
///
/// A producer thread prepares batches in step order into a queue of at most
/// `prefetch` batches while the model trains on the current one. A batch
/// depends only on its indices and seeds, never on thread timing, so the
/// batches are the same for any prefetch depth and thread count.
class BatchFeed {
 public:
  BatchFeed(std::unique_ptr<BatchSource> source, const FeedSettings& settings);
  ~BatchFeed();
  BatchFeed(const BatchFeed&) = delete;
  BatchFeed& operator=(const BatchFeed&) = delete;

  /// (Re)starts at batch `first_step` of `order` (positions); batch s covers
  /// order[s*B, (s+1)*B) and feeding stops before batch `steps`.
  void start(std::vector<std::int64_t> order, std::int64_t first_step, std::int64_t steps, std::uint64_t epoch_seed);

  /// The next batch; false after the last one. Rethrows what preparing it
  /// threw (e.g. a corrupt file).
  bool next(at::Tensor& images, at::Tensor& labels);

  /// Stops the producer thread and ends the source's epoch (a cache source
  /// releases its reader); `next` returns false until `start` or `resume`.
  /// Nothing of the feed reads its source after this returns.
  void stop();

  /// Stops (if not stopped yet) and goes on with the first batch not yet
  /// returned by `next`, from `source` when given (a drop or an arrival in
  /// the middle of an epoch: DropController::apply's outcome), else from
  /// the current one.
  void resume(std::unique_ptr<BatchSource> source = nullptr);

  /// Replaces the epoch's order by `order` (as long; stopped only): a
  /// data-parallel rank's positions in its cache shard, read from `resume` on.
  void reorder(std::vector<std::int64_t> order);

 private:
  struct Item {
    DeviceStager::Staged staged;  ///< images, labels
    std::exception_ptr error;
  };
  std::vector<std::int64_t> indices(std::int64_t step) const;
  Item make(std::int64_t step);
  void produce();

  std::unique_ptr<BatchSource> source_;
  FeedSettings settings_;
  std::unique_ptr<DeviceStager> stager_;
  std::vector<std::int64_t> order_;
  bool has_epoch_ = false;  // start was called: resume goes on with order_
  std::int64_t step_ = 0;         // next batch handed out (steps_ once stopped)
  std::int64_t resume_step_ = 0;  // next batch handed out, kept across stop
  std::int64_t produced_ = 0;  // next batch the producer prepares
  std::int64_t steps_ = 0;
  std::uint64_t epoch_seed_ = 0;
  bool started_ = false;  // the source is between begin and end

  std::thread producer_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Item> queue_;
  bool stopping_ = false;
};

}  // namespace ld::core
