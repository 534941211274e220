#pragma once
/// Helpers for tests of cache backends (no GoogleTest, no test cases: safe
/// to include in any number of test files, unlike conformance.h).

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include <ATen/ATen.h>

#include "learndrop/cache.h"

namespace ld::testing {

/// Writes `source` ([N, ...]) into `cache` as a cut-1 cache of `dtype` with
/// key 00000000000000aa: begin, puts in shuffled batches of 7 (converted to
/// the storage type and the cache's device, as the host does), finish.
inline void fill_cache(FeatureCache& cache, const at::Tensor& source, at::ScalarType dtype) {
  std::vector<std::int64_t> shape(source.sizes().begin() + 1, source.sizes().end());
  cache.begin(CacheLayout{1, source.size(0), shape, dtype, "00000000000000aa"});
  std::vector<std::int64_t> rows(static_cast<std::size_t>(source.size(0)));
  std::iota(rows.begin(), rows.end(), 0);
  std::shuffle(rows.begin(), rows.end(), std::mt19937(3));
  for (std::size_t b = 0; b < rows.size(); b += 7) {
    std::vector<std::int64_t> part(rows.begin() + static_cast<std::ptrdiff_t>(b),
                                   rows.begin() + static_cast<std::ptrdiff_t>(std::min(rows.size(), b + 7)));
    cache.put(part, source.index_select(0, at::tensor(part, at::kLong)).to(dtype).to(cache.device()));
  }
  cache.finish();
}

}  // namespace ld::testing
