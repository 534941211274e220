#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "learndrop/cache.h"
#include "learndrop/core/batch_source.h"
#include "learndrop/core/device.h"
#include "learndrop/core/feature_shift.h"
#include "learndrop/dataset.h"
#include "learndrop/model.h"
#include "learndrop/policy.h"

namespace ld::core {

class BatchFeed;
class StagedOptimizer;

/// Converts a model-layout batch (NCHW, channels-last strides) to the cache's
/// per-sample storage layout (NHWC, contiguous) and back, without changing a
/// single value. Tensors that are not 4-D are stored as they are.
at::Tensor to_storage_layout(const at::Tensor& batch);
at::Tensor from_storage_layout(const at::Tensor& stored, const std::vector<std::int64_t>& model_shape);

/// How a DropController builds its caches.
struct DropSettings {
  at::ScalarType dtype = at::kFloat;  ///< Storage type of cached features.
  std::int64_t build_batch = 256;     ///< Samples per forward pass while building.
  std::uint64_t seed = 0;             ///< The run seed (augmented views draw from it).
  /// Augmented views per training sample. View v of sample i is the training
  /// transform drawn with view_seed(v); the cache holds row v * N + i.
  std::int64_t views = 1;
  /// What, besides the frozen weights, determines the cached rows (the
  /// dataset section and seed): part of every cache's key.
  std::string data_key;
  /// Feature-space augmentation (cache.augment: feature) of a dataset whose
  /// training transform is `shift_flip`: view 0 is the untransformed sample,
  /// view 1 (with flip; `views` must then be 2) its mirror, and each epoch
  /// shifts every sample's cached map by a random multiple of the stride.
  bool feature_augment = false;
  ShiftFlip shift_flip;
  /// Where the model is: caches are built there (the frozen stages run on
  /// it, under autocast in `precision`).
  at::Device device = at::Device(at::kCPU);
  Precision precision = Precision::kFp32;
};

/// What one drop did.
struct DropReport {
  std::size_t from_cut = 0;
  std::size_t to_cut = 0;
  std::int64_t flops = 0;  ///< Forward FLOPs spent building the cache.
  double seconds = 0;
  std::int64_t cache_bytes = 0;
  std::string cache_description;
  FeatureShift shift;  ///< Feature-space shifts at the new cut (feature augmentation).
};

/// What DropController::apply did with a decision.
struct DropOutcome {
  std::size_t asked = 0;  ///< The cut the decision asked for.
  std::size_t cut = 0;    ///< The cut afterwards.
  /// Why the decision was not taken as asked (a cut past the last stage is
  /// clamped; a cut below the current one is kept, drops are monotone);
  /// empty when it was.
  std::string note;
  std::optional<DropReport> drop;  ///< What the drop did, when stages were dropped.
};

/// Owns the current cut and its feature cache, and holds the drop invariants:
/// only a prefix is dropped, a drop is monotone, dropped stages are frozen
/// (eval mode, no gradients), and a new cut is built from the previous cache
/// through the newly dropped stages only.
class DropController {
 public:
  using CacheMaker = std::function<std::shared_ptr<FeatureCache>()>;

  /// `stage_flops` and `stage_shapes` come from profile_model.
  DropController(StagedModel& model, const Dataset& dataset, CacheMaker make_cache,
                 std::vector<std::int64_t> stage_flops, std::vector<std::vector<std::int64_t>> stage_shapes,
                 const DropSettings& settings);

  std::size_t cut() const { return cut_; }

  /// Applies a drop policy's decision, as one transaction (the trainer and
  /// the tests call this one method). The cut asked for is clamped to the
  /// number of stages, and a cut below the current one is kept. A larger cut:
  ///  1. stops `feed`, whose producer may be reading the current cache;
  ///  2. freezes stages [cut, new cut) (eval mode, no gradients);
  ///  3. builds the cache at the new cut from the current one (or from the
  ///     dataset at cut 0), on the model's device and in its precision;
  ///  4. removes the frozen parameters and their state from `optimizer`;
  ///  5. hands `feed` the cache source, which goes on with the rest of the
  ///     epoch from the new cache.
  /// The model keeps its training mode (frozen stages stay in eval mode).
  /// `optimizer` and `feed` may be null (a controller outside a training).
  DropOutcome apply(const Decision& decision, StagedOptimizer* optimizer = nullptr, BatchFeed* feed = nullptr);

  /// The batch source for the current cut: the dataset's training transform
  /// (decoded by `loader_threads` TBB threads) at cut 0, the cache after.
  std::unique_ptr<BatchSource> source(int loader_threads = 1) const;

  /// Puts dropped stages back in eval mode (call after `model.train()`).
  void keep_dropped_in_eval();

  /// A reader over the cached views of `order` drawn for the epoch of
  /// `epoch_seed`, in storage layout; cut must be > 0. The reader shares
  /// ownership of its cache: a later drop may replace the controller's cache
  /// while the reader still exists, and the old cache lives until the reader
  /// is destroyed.
  std::unique_ptr<BatchReader> reader(const std::vector<std::int64_t>& order, std::int64_t batch_size,
                                      std::uint64_t epoch_seed) const;

  /// A data-parallel rank caches only its shard: the training samples
  /// `samples` (distinct ids), at positions 0..m-1. From then on the
  /// controller's "samples" (reader, augment, train_labels, cached rows
  /// v * m + p) are positions in the shard, not dataset indices; views and
  /// shifts are still drawn per dataset index, as without a shard. Only
  /// before the first drop.
  void set_shard(std::vector<std::int64_t> samples);
  /// Samples this controller caches: the shard's, or the training set's.
  std::int64_t cached_samples() const;

  /// Number of cached views per sample.
  std::int64_t views() const { return settings_.views; }

  /// The augmentation seed of view `v` (also the seed of the single view).
  std::uint64_t view_seed(std::int64_t v) const;

  /// The view of `sample` that training reads in the epoch of `epoch_seed`:
  /// uniform over [0, views), independent between samples and epochs.
  std::int64_t view_of(std::uint64_t epoch_seed, std::int64_t sample) const;

  /// The feature-space shift (dy, dx) of `sample` in the epoch of
  /// `epoch_seed`, each uniform in [-max, max] for the current cut's
  /// FeatureShift (0, 0 without one); independent of view_of.
  std::pair<std::int64_t, std::int64_t> shift_of(std::uint64_t epoch_seed, std::int64_t sample) const;

  /// The current cut's feature-space shifts (max_shift 0: none).
  const FeatureShift& feature_shift() const { return shift_; }

  /// Applies the epoch's feature-space shifts of `samples` to their cached
  /// rows `stored` (storage layout); returns `stored` itself when there are none.
  at::Tensor augment(const at::Tensor& stored, const std::vector<std::int64_t>& samples,
                     std::uint64_t epoch_seed) const;

  /// The key of a cache at `cut` built from the current weights of stages
  /// [0, cut): a digest of those weights, the data key, the views and dtype.
  std::string cache_key(std::size_t cut) const;

  /// Cached features (model layout, float32, on the CPU) of rows v * N + i
  /// (N = cached_samples()); for inspection.
  at::Tensor cached_rows(const std::vector<std::int64_t>& rows) const;

  /// Converts a batch from the cache reader into model layout (type and device unchanged).
  at::Tensor to_model_layout(const at::Tensor& stored) const;

  /// Training labels, gathered during the first cache build (undefined before).
  const at::Tensor& train_labels() const { return labels_; }

  /// The current cache (null at cut 0).
  const FeatureCache* cache() const { return cache_.get(); }

  /// How many caches this controller has built: identifies the current
  /// cache (an address can be reused by the next one).
  std::uint64_t generation() const { return generation_; }

  /// The key of the current cache (cache_key at the cut, taken when the
  /// cache was built or reopened; the frozen weights do not change after);
  /// empty at cut 0.
  const std::string& current_cache_key() const { return cache_key_; }

  /// The cut after each drop so far, in order.
  const std::vector<std::size_t>& drops() const { return drops_; }

  /// Asks the current cache to keep its rows for a resumed run
  /// (FeatureCache::retain); nothing at cut 0.
  void retain_cache();

  /// Resumes at the cuts of `drops` (a checkpoint's), with the model holding
  /// the checkpoint's weights: freezes stages [0, last cut), then reopens the
  /// last cut's cache when the cache plugin kept it intact
  /// (FeatureCache::reopen), or else rebuilds the cache of each cut in turn,
  /// as the drops built them; the frozen weights have not changed since, so
  /// the rows are the same. `labels` are the training labels; `optimizer`
  /// (may be null) loses the frozen stages. Returns what it did, for the log.
  std::string restore(const std::vector<std::size_t>& drops, const at::Tensor& labels, StagedOptimizer* optimizer);

 private:
  DropReport advance(std::size_t new_cut);
  /// Stages [from, to) in eval mode, without gradients.
  void freeze(std::size_t from, std::size_t to);
  /// What the cache at `cut` holds, with its key.
  CacheLayout layout_at(std::size_t cut) const;
  std::vector<std::int64_t> rows(const std::vector<std::int64_t>& samples, std::uint64_t epoch_seed) const;
  FeatureShift shift_at(std::size_t cut) const;
  /// The dataset index of cached position `p`.
  std::int64_t sample_of(std::int64_t p) const { return shard_.empty() ? p : shard_[static_cast<std::size_t>(p)]; }

  StagedModel& model_;
  const Dataset& dataset_;
  CacheMaker make_cache_;
  std::vector<std::int64_t> stage_flops_;
  std::vector<std::vector<std::int64_t>> stage_shapes_;
  DropSettings settings_;
  std::size_t cut_ = 0;
  std::shared_ptr<FeatureCache> cache_;
  std::uint64_t generation_ = 0;
  at::Tensor labels_;
  FeatureShift shift_;
  std::vector<std::size_t> drops_;
  std::string cache_key_;
  std::vector<std::int64_t> shard_;
};

}  // namespace ld::core
