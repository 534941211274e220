#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include <tbb/task_arena.h>

#include "learndrop/cache.h"
#include "learndrop/core/feature_shift.h"
#include "learndrop/dataset.h"

namespace ld::core {

/// Which sample each training position is, where its cached views are and
/// which view and feature-space shift an epoch draws for it. A value: the
/// DropController keeps one, and each source it makes takes a copy, so a
/// source reads batches without calling back into the controller.
struct SampleDraw {
  /// Cached views per sample: row p * views + v holds view v of position p.
  std::int64_t views = 1;
  /// Feature-space shifts at the cache's cut (max_shift 0: none).
  FeatureShift shift;
  /// The dataset index of each position: a stream's order or a shard
  /// (empty: position p is sample p).
  std::vector<std::int64_t> samples;

  std::int64_t sample_of(std::int64_t p) const {
    return samples.empty() ? p : samples[static_cast<std::size_t>(p)];
  }
  std::int64_t row(std::int64_t p, std::int64_t v) const { return p * views + v; }
  /// The view of dataset sample `sample` in the epoch of `epoch_seed`:
  /// uniform over [0, views), independent between samples and epochs.
  std::int64_t view_of(std::uint64_t epoch_seed, std::int64_t sample) const;
  /// Its feature-space shift (dy, dx), each uniform in [-max, max] (0, 0
  /// without shifts); independent of view_of.
  std::pair<std::int64_t, std::int64_t> shift_of(std::uint64_t epoch_seed, std::int64_t sample) const;
  /// The cache rows an epoch reads for `positions`.
  std::vector<std::int64_t> rows(const std::vector<std::int64_t>& positions, std::uint64_t epoch_seed) const;
  /// `stored` (the rows of `positions`, storage layout) shifted for the
  /// epoch; `stored` itself without shifts.
  at::Tensor augment(const at::Tensor& stored, const std::vector<std::int64_t>& positions,
                     std::uint64_t epoch_seed) const;
};

/// Where an epoch's training batches come from: the dataset before the first
/// drop, the feature cache after it. BatchFeed reads either without knowing
/// which; DropController::source() makes the one for the current cut, and a
/// drop (DropController::apply) returns the next one, which the trainer
/// hands the feed. A source holds what it reads (the dataset, or the cache
/// with its labels and SampleDraw), never the controller.
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
/// The feed's indices are positions (a stream's or a shard's), mapped to
/// dataset indices by `samples` (empty: the identity).
class DatasetSource final : public BatchSource {
 public:
  DatasetSource(const Dataset& dataset, int loader_threads, std::vector<std::int64_t> samples);
  void begin(const std::vector<std::int64_t>& order, std::int64_t batch_size, std::int64_t first_step,
             std::int64_t steps, std::uint64_t epoch_seed) override;
  Batch batch(std::int64_t step, const std::vector<std::int64_t>& indices) override;
  void end() override {}

 private:
  const Dataset& dataset_;
  std::unique_ptr<tbb::task_arena> arena_;
  std::vector<std::int64_t> samples_;
  std::uint64_t epoch_seed_ = 0;
};

/// What a CacheSource reads: a cache, the labels of its positions, how an
/// epoch draws their rows, and the model-layout shape of a row.
struct CachedFeatures {
  std::shared_ptr<FeatureCache> cache;
  at::Tensor labels;  ///< Per position (int64, CPU).
  SampleDraw draw;
  std::vector<std::int64_t> model_shape;  ///< [C, H, W] of a row (or the shape of a flat one).
};

/// A cache reader that keeps its cache alive: the reader is destroyed first
/// (its destructor may still use the cache, e.g. a disk reader's pending
/// reads), then the cache reference is released.
std::unique_ptr<BatchReader> owning_reader(std::shared_ptr<FeatureCache> cache, std::vector<std::int64_t> rows,
                                           std::int64_t batch_size);

/// Batches from a feature cache: each sample's view drawn for the epoch,
/// shifted in feature space where the cut has shifts, read ahead by the
/// cache's reader. It shares ownership of its cache, so a later drop or
/// arrival may replace the controller's cache while this source still
/// reads the old one.
class CacheSource final : public BatchSource {
 public:
  explicit CacheSource(CachedFeatures features) : features_(std::move(features)) {}
  void begin(const std::vector<std::int64_t>& order, std::int64_t batch_size, std::int64_t first_step,
             std::int64_t steps, std::uint64_t epoch_seed) override;
  Batch batch(std::int64_t step, const std::vector<std::int64_t>& indices) override;
  void end() override { reader_.reset(); }

 private:
  CachedFeatures features_;
  std::unique_ptr<BatchReader> reader_;
  std::uint64_t epoch_seed_ = 0;
};

}  // namespace ld::core
