#pragma once
// How a run caches its feature maps, decided in one place: the views per
// sample, feature-space augmentation, the storage type and the folder of the
// disk tier. `set_up_run` builds its drop controller from it and
// `ldrop cache plan` sizes every cut with it, so the plan is what a run
// caches (issue 22: the plan counted 1 view where a crop+flip CIFAR run
// cached 2). The tier of `cache.plugin: auto` for a size is ld::auto_tier
// (sdk cache.h), shared with the auto plugin.

#include <cstdint>
#include <filesystem>
#include <string>

#include <c10/core/ScalarType.h>

#include "learndrop/core/config.h"
#include "learndrop/dataset.h"

namespace ld::core {

struct CachePlan {
  /// Rows cached per training sample: cache.views with augment: views, 2
  /// (the sample and its mirror) or 1 with feature augmentation, 1 when the
  /// dataset does not augment.
  std::int64_t views = 1;
  /// The untransformed sample is cached and its maps shifted (and mirrored) each epoch.
  bool feature_augment = false;
  ShiftFlip shift_flip;  ///< The dataset's transform, when it has one.
  at::ScalarType dtype = at::kFloat;
  /// Folder of the disk tier: cache.dir, or <run folder>/cache.
  std::filesystem::path dir;
  /// The dataset augments, but one draw per sample is cached: every epoch
  /// after a drop sees the same draw (warned about at the first cached drop).
  bool augmentation_frozen = false;
  /// How training is augmented after a drop, in words (the summary's augmentation_after_drop).
  std::string augmentation_after_drop;
  /// Said once, when the config asks for something the dataset makes moot.
  std::string warning;
  /// A stream's cached rows after each part has arrived (samples x views),
  /// the first part first; empty without a stream.
  std::vector<std::int64_t> rows_after_part;

  /// Bytes of one cached row of a stage output of `shape` (C, H, W).
  std::int64_t row_bytes(const std::vector<std::int64_t>& shape) const;
};

/// How a stream's cache grows in RAM when a drop comes in its first part
/// (the most growth): each arrival adds its rows, and a RAM cache that runs
/// out of room allocates ld::grown_capacity rows and copies the old ones.
struct StreamGrowth {
  std::int64_t final_rows = 0;  ///< Rows once every part has arrived.
  std::int64_t capacity = 0;    ///< Rows the RAM cache has allocated at the end (spare room included).
  std::int64_t peak = 0;        ///< Rows allocated at once, the old and the new buffer during a copy.
};
StreamGrowth stream_growth(const std::vector<std::int64_t>& rows_after_part);

/// The folder for cache files of a run of `cfg` in `run_dir`: cache.dir, or
/// `<run_dir>/cache`. The plan, the cache plugin (CacheContext::dir) and the
/// clean-up of kept files all read it here.
std::filesystem::path cache_folder(const RunConfig& cfg, const std::filesystem::path& run_dir);

/// The plan of `cfg` with its dataset. Throws ld::Error when cache.augment:
/// feature meets a dataset whose transform is not a shift or flip.
CachePlan plan_cache(const RunConfig& cfg, const Dataset& dataset, const std::filesystem::path& run_dir);

}  // namespace ld::core
