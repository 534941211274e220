#pragma once
// What the dataset fuzz targets do with a data set that opened: read every
// sample of both splits (a few batches), with and without augmentation, and
// check what came back.

#include <numeric>
#include <vector>

#include <ATen/ATen.h>

#include "fuzz_support.h"
#include "learndrop/dataset.h"

namespace ld::fuzz {

inline void read_everything(Dataset& ds) {
  const std::int64_t classes = ds.num_classes();
  check(classes > 0, "a data set with no classes opened");
  for (Split split : {Split::kTrain, Split::kTest}) {
    const std::int64_t n = ds.size(split);
    for (std::int64_t begin = 0; begin < n; begin += 16) {
      std::vector<std::int64_t> idx(static_cast<std::size_t>(std::min<std::int64_t>(16, n - begin)));
      std::iota(idx.begin(), idx.end(), begin);
      Batch b = ds.get_batch(split, idx, 7);
      check(b.images.size(0) == static_cast<std::int64_t>(idx.size()), "a batch with another number of images");
      check(b.labels.size(0) == static_cast<std::int64_t>(idx.size()), "a batch with another number of labels");
      if (b.labels.numel() > 0) {
        check(b.labels.min().item<std::int64_t>() >= 0 && b.labels.max().item<std::int64_t>() < classes,
              "a label outside [0, num_classes)");
      }
      check(at::isfinite(b.images).all().item<bool>(), "a non-finite pixel");
    }
  }
}

}  // namespace ld::fuzz
