#include "learndrop/core/cache_plan.h"

#include <algorithm>

#include "learndrop/error.h"
#include "learndrop/memory.h"
#include "loop/schedule.h"

namespace ld::core {

namespace {

at::ScalarType storage_type(const std::string& name) {
  if (name == "float16") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  return at::kFloat;
}

}  // namespace

StreamGrowth stream_growth(const std::vector<std::int64_t>& rows_after_part) {
  StreamGrowth g;
  for (const std::int64_t rows : rows_after_part) {
    const std::int64_t capacity = g.capacity == 0 ? rows : ld::grown_capacity(g.capacity, rows);
    g.peak = std::max(g.peak, capacity == g.capacity ? capacity : g.capacity + capacity);
    g.capacity = capacity;
    g.final_rows = rows;
  }
  return g;
}

std::filesystem::path cache_folder(const RunConfig& cfg, const std::filesystem::path& run_dir) {
  return cfg.cache_dir.empty() ? run_dir / "cache" : std::filesystem::path(cfg.cache_dir);
}

std::int64_t CachePlan::row_bytes(const std::vector<std::int64_t>& shape) const {
  std::int64_t bytes = static_cast<std::int64_t>(c10::elementSize(dtype));
  for (auto d : shape) bytes *= d;
  return bytes;
}

CachePlan plan_cache(const RunConfig& cfg, const Dataset& dataset, const std::filesystem::path& run_dir) {
  CachePlan p;
  p.dtype = storage_type(cfg.cache_dtype);
  p.dir = cache_folder(cfg, run_dir);
  p.views = cfg.cache_views;
  const bool transforms = dataset.random_train_transform();
  const bool can_shift = transforms && dataset.shift_flip(p.shift_flip);
  if (cfg.cache_augment == "feature" && !can_shift) {
    throw Error("cache.augment: feature needs a dataset whose random training transform is a shift and/or flip; "
                "dataset '" + cfg.dataset.plugin + "' (" + dataset.describe() +
                ") declares none: use cache.augment: views (or auto)");
  }
  p.feature_augment = can_shift && (cfg.cache_augment == "feature" || (cfg.cache_augment == "auto" && p.views == 1));
  if (p.feature_augment) {
    p.views = p.shift_flip.flip ? 2 : 1;
    p.augmentation_after_drop =
        "feature: the untransformed sample" + std::string(p.shift_flip.flip ? " and its mirror cached" : " cached") +
        (p.shift_flip.max_shift > 0 ? ", maps shifted by up to " + std::to_string(p.shift_flip.max_shift) +
                                          " input pixels / the cut's stride each epoch"
                                    : "");
  } else if (!transforms) {
    if (p.views > 1) {
      p.warning = "cache.views is " + std::to_string(p.views) + " but dataset '" + cfg.dataset.plugin +
                  "' has no random training transform: the views would be identical, caching 1";
    }
    p.views = 1;
    p.augmentation_after_drop = "none: the dataset does not augment";
  } else if (p.views == 1) {
    // Warned about at the first drop (RunReporter::drop), when it matters.
    p.augmentation_frozen = true;
    p.augmentation_after_drop = "frozen: 1 cached view per sample, every epoch after a drop sees the same draw";
  } else {
    p.augmentation_after_drop = std::to_string(p.views) + " cached views per sample, one drawn per epoch";
  }
  if (cfg.stream.enabled()) {
    const Schedule schedule(cfg, dataset.size(Split::kTrain), cfg.train.batch_size);
    for (std::int64_t part = 0; part < schedule.parts(); ++part) {
      p.rows_after_part.push_back(schedule.samples_after(part) * p.views);
    }
  }
  return p;
}

}  // namespace ld::core
