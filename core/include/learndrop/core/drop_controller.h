#pragma once

#include <algorithm>
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

class StagedOptimizer;

/// Converts a model-layout batch (NCHW, channels-last strides) to the cache's
/// per-sample storage layout (NHWC, contiguous) and back, without changing a
/// single value. Tensors that are not 4-D are stored as they are.
at::Tensor to_storage_layout(const at::Tensor& batch);
at::Tensor from_storage_layout(const at::Tensor& stored, const std::vector<std::int64_t>& model_shape);

/// How a DropController builds its caches.
struct DropSettings {
  at::ScalarType dtype = at::kFloat;  ///< Storage type of cached features.
  /// Samples per forward pass while building (a run: build_batch_for).
  /// Rows do not depend on it.
  std::int64_t build_batch = 256;
  /// The build batch of a run training with batches of `training_batch`.
  /// On a CPU, 128: a smaller batch keeps the prefix's activations in the
  /// processor's caches, and the cut-3 build of ResNet-18 (width 0.25, CIFAR)
  /// ran its forward pass in 1.7 s at 128 and 64 against 2.0-2.7 s at 256;
  /// loading a batch costs 2 % of a build, so the number of batches does
  /// not matter (docs/results.md#builds-at-training-speed). On a GPU, the
  /// training batch but at least 256.
  static std::int64_t build_batch_for(std::int64_t training_batch, bool cuda) {
    return cuda ? std::max<std::int64_t>(training_batch, 256) : 128;
  }
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
  /// Threads decoding the dataset's batches of a DatasetSource (source()).
  int loader_threads = 1;
};

/// What a drop does with the stages it freezes.
enum class DropMode {
  /// Their output is computed once into a feature cache, and training reads
  /// the cache: every later step skips their forward and backward work.
  kCache,
  /// They stay in the forward pass, on the real (augmented) inputs, but
  /// without gradients or optimizer: every later step skips their backward
  /// work, and nothing is built.
  kFreeze,
};

/// "cache" or "freeze".
const char* to_string(DropMode mode);

/// What one drop did.
struct DropReport {
  std::size_t from_cut = 0;
  std::size_t to_cut = 0;
  DropMode mode = DropMode::kCache;
  std::int64_t flops = 0;  ///< Forward FLOPs spent building the cache.
  double seconds = 0;
  /// Of `seconds`, the new cache's FeatureCache::begin: its memory made
  /// ready (the ram cache faults its pages in; docs/results.md#builds-at-training-speed).
  double allocate_seconds = 0;
  std::int64_t cache_bytes = 0;
  std::string cache_description;
  FeatureShift shift;  ///< Feature-space shifts at the new cut (feature augmentation).
};

/// What adding the rows of newly arrived samples to the cache did.
struct ArrivalReport {
  std::int64_t samples = 0;  ///< Samples added.
  std::int64_t rows = 0;     ///< Cache rows computed (samples x views; 0 without a cache).
  std::int64_t flops = 0;    ///< Forward FLOPs spent computing them.
  double seconds = 0;
  bool copied = false;  ///< The cache could not grow in place: its rows were copied into a larger one.
  /// What training reads from now on, the arrived samples included (the
  /// feed's next source; DropController::source()).
  std::unique_ptr<BatchSource> source;
};

/// One event of a controller's history, which a checkpoint stores and a
/// resumed run replays: a drop to `cut` in `mode`, or an arrival that made
/// `samples` samples visible.
struct DropEvent {
  enum class Kind { kDrop, kArrival } kind = Kind::kDrop;
  std::size_t cut = 0;
  DropMode mode = DropMode::kCache;
  std::int64_t samples = 0;
};

/// What DropController::apply did with a decision.
struct DropOutcome {
  std::size_t cut = 0;    ///< The cut afterwards.
  /// Why the decision was not taken as asked (a cut past the last stage is
  /// clamped; a cut below the current one is kept, drops are monotone);
  /// empty when it was.
  std::string note;
  std::optional<DropReport> drop;  ///< What the drop did, when stages were dropped.
  /// What training reads from now on, when stages were dropped (the feed's
  /// next source: the new cache, or for DropMode::kFreeze the same data as
  /// before); null when nothing changed.
  std::unique_ptr<BatchSource> source;
};

/// Owns the current cut and its feature cache, and holds the drop invariants:
/// only a prefix is dropped, a drop is monotone, dropped stages are frozen
/// (eval mode, no gradients), and a new cut is built from the previous cache
/// through the newly dropped stages only.
///
/// Two cuts: `frozen_cut()` stages are frozen (dropped from training), and the
/// first `cache_cut()` of them are cached (the feed reads their output).
/// A "drop" removes stages from training (backward pass and optimizer);
/// only a cached one (DropMode::kCache) also removes them from the forward
/// pass. A freeze-only one removes nothing from the forward pass, and the
/// log says "freeze at epoch", not "drop at epoch".
/// Stages [cache_cut, cut) were dropped in DropMode::kFreeze and still run
/// forward, without gradients.
///
/// Samples are positions 0..samples()-1: the training set's indices, a
/// data-parallel rank's shard (set_shard) or the samples of a stream that
/// have arrived (set_stream, arrive). Cache row p * views + v holds view v
/// of position p, so that rows of samples that arrive later go at the end.
class DropController {
 public:
  using CacheMaker = std::function<std::shared_ptr<FeatureCache>()>;

  /// `stage_flops` and `stage_shapes` come from profile_model.
  DropController(StagedModel& model, const Dataset& dataset, CacheMaker make_cache,
                 std::vector<std::int64_t> stage_flops, std::vector<std::vector<std::int64_t>> stage_shapes,
                 const DropSettings& settings);

  /// Stages frozen: dropped from training, cached or not.
  std::size_t frozen_cut() const { return frozen_; }
  /// Stages whose output the cache holds (the feed's batches are their output); 0 = raw data.
  std::size_t cache_cut() const { return cache_cut_; }

  /// Applies a drop policy's decision, as one transaction (the trainer and
  /// the tests call this one method). The cut asked for is clamped to the
  /// number of stages, and a cut below the current one is kept. A larger cut:
  ///  1. (kCache) builds the cache at the new cut from the current one (or
  ///     from the dataset at cut 0), on the model's device and in its
  ///     precision, with the new stages in eval mode; only when it is
  ///     complete are they frozen and the old cache released, so a failed
  ///     build leaves the run as it was;
  ///  2. freezes stages [cut, new cut) (eval mode, no gradients);
  ///  3. removes the frozen parameters and their state from `optimizer`;
  ///  4. returns the batch source for the rest of the epoch (outcome.source).
  /// The model keeps its training mode (frozen stages stay in eval mode).
  /// `optimizer` may be null (a controller outside a training).
  ///
  /// The build reads the current cache and then releases it: nothing may
  /// read the cache meanwhile, so the trainer stops its feed (BatchFeed::stop)
  /// before and resumes it with outcome.source after (BatchFeed::resume).
  DropOutcome apply(const Decision& decision, StagedOptimizer* optimizer = nullptr,
                    DropMode mode = DropMode::kCache);

  /// A training step's forward pass of a batch from the feed: the frozen,
  /// uncached stages without gradients, then the trained stages and the head.
  at::Tensor forward(const at::Tensor& batch);

  /// A stream's samples, in the order they arrive (dataset indices, distinct);
  /// none has arrived yet. Only before the first drop.
  void set_stream(std::vector<std::int64_t> order);
  /// Makes the first `samples` of the stream visible (more than now). With a
  /// cache, the new samples pass through the cached stages once and their
  /// rows are added to it (FeatureCache::grow, or a copy into a larger
  /// cache); rows already cached are never recomputed. The cache may grow in
  /// place: stop the feed first, as for apply, and resume it with the
  /// report's source.
  ArrivalReport arrive(std::int64_t samples);

  /// The controller's history (drops and arrivals), for a checkpoint.
  const std::vector<DropEvent>& history() const { return history_; }

  /// The batch source for the current cut: the dataset's training transform
  /// (decoded by settings' loader_threads TBB threads) before the first
  /// cached drop, the cache after. It holds copies of what it reads (the
  /// cache shares ownership), not the controller.
  std::unique_ptr<BatchSource> source() const;

  /// Puts dropped stages back in eval mode (call after `model.train()`).
  void keep_dropped_in_eval();

  /// A data-parallel rank caches only its shard: the training samples
  /// `samples` (distinct ids), at positions 0..m-1. From then on the
  /// controller's "samples" (reader, augment, train_labels, cached rows
  /// p * views + v) are positions in the shard, not dataset indices; views and
  /// shifts are still drawn per dataset index, as without a shard. Only
  /// before the first cached drop.
  void set_shard(std::vector<std::int64_t> samples);
  /// Training samples: the arrived part of a stream, a shard, or the training set.
  std::int64_t samples() const;
  /// The dataset index of position `p`.
  std::int64_t sample_of(std::int64_t p) const { return draw_.sample_of(p); }
  /// The cache row of view `v` of position `p`.
  std::int64_t row(std::int64_t p, std::int64_t v) const { return draw_.row(p, v); }

  /// Number of cached views per sample.
  std::int64_t views() const { return settings_.views; }

  /// The augmentation seed of view `v` (also the seed of the single view).
  std::uint64_t view_seed(std::int64_t v) const;

  /// The view of `sample` that training reads in the epoch of `epoch_seed`
  /// (SampleDraw::view_of).
  std::int64_t view_of(std::uint64_t epoch_seed, std::int64_t sample) const {
    return draw_.view_of(epoch_seed, sample);
  }

  /// The feature-space shift (dy, dx) of `sample` in the epoch of
  /// `epoch_seed` at the current cut (SampleDraw::shift_of).
  std::pair<std::int64_t, std::int64_t> shift_of(std::uint64_t epoch_seed, std::int64_t sample) const {
    return draw_.shift_of(epoch_seed, sample);
  }

  /// The current cut's feature-space shifts (max_shift 0: none).
  const FeatureShift& feature_shift() const { return draw_.shift; }

  /// The key of a cache at `cut` built from the current weights of stages
  /// [0, cut): a digest of those weights, the data key, the views and dtype.
  std::string cache_key(std::size_t cut) const;

  /// Cached features (model layout, float32, on the CPU) of `rows`
  /// (row(p, v)); for inspection.
  at::Tensor cached_rows(const std::vector<std::int64_t>& rows) const;

  /// Labels of the cached positions, gathered during the first cache build
  /// and arrivals after it (undefined without a cache).
  const at::Tensor& train_labels() const { return labels_; }

  /// The current cache (null without one).
  const FeatureCache* cache() const { return cache_.get(); }

  /// How many caches this controller has built: identifies the current
  /// cache (an address can be reused by the next one).
  std::uint64_t generation() const { return generation_; }

  /// The key of the current cache (cache_key at the cut, taken when the
  /// cache was built or reopened; the frozen weights do not change after);
  /// empty without a cache.
  const std::string& current_cache_key() const { return cache_key_; }

  /// The cut after each drop so far, in order.
  std::vector<std::size_t> drops() const;

  /// Asks the current cache to keep its rows for a resumed run
  /// (FeatureCache::retain); nothing without a cache.
  void retain_cache();

  /// Resumes at the end of `history` (a checkpoint's), with the model
  /// holding the checkpoint's weights: reopens the last cache when the cache
  /// plugin kept it intact (FeatureCache::reopen), or else replays the
  /// history, building each cache and adding each arrival's rows as they
  /// were, in the same batches, so the rows are bit-identical. `labels` are
  /// the cached samples' labels (undefined without a cache); `optimizer`
  /// (may be null) loses the frozen stages. A stream's order must be set
  /// first (set_stream). Returns what it did, for the log.
  std::string resume_drops(const std::vector<DropEvent>& history, const at::Tensor& labels, StagedOptimizer* optimizer);

 private:
  DropReport advance(std::size_t new_cut);
  DropReport freeze_only(std::size_t new_cut);
  ArrivalReport add_rows(std::int64_t from, std::int64_t to);
  /// Computes the rows of positions [from, to) at the cache cut (all views),
  /// into `cache`, from the dataset through stages [0, cut), in batches of
  /// build_batch that never span two views. Returns their labels (view 0).
  at::Tensor compute_rows(FeatureCache& cache, std::size_t cut, std::int64_t from, std::int64_t to,
                          std::int64_t& flops) const;
  /// Stages [from, to) in eval mode, without gradients.
  void freeze(std::size_t from, std::size_t to);
  /// What the cache at `cut` holds, with its key.
  CacheLayout layout_at(std::size_t cut) const;
  FeatureShift shift_at(std::size_t cut) const;
  /// A batch read from the current cache in model layout (type and device unchanged).
  at::Tensor to_model_layout(const at::Tensor& stored) const;

  StagedModel& model_;
  const Dataset& dataset_;
  CacheMaker make_cache_;
  std::vector<std::int64_t> stage_flops_;
  std::vector<std::vector<std::int64_t>> stage_shapes_;
  DropSettings settings_;
  std::size_t cache_cut_ = 0, frozen_ = 0;
  std::shared_ptr<FeatureCache> cache_;
  std::uint64_t generation_ = 0;
  at::Tensor labels_;
  SampleDraw draw_;  // positions, views and the current cut's shifts (a source takes a copy)
  std::vector<DropEvent> history_;
  std::string cache_key_;
  std::int64_t visible_ = -1;  // positions visible (a stream's arrived samples); -1: all of draw_.samples
  bool stream_ = false;
};

}  // namespace ld::core
