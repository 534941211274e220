#pragma once

#include <cstdint>
#include <cstddef>
#include <utility>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "learndrop/error.h"
#include "learndrop/export.h"

namespace ld {

/// What a cache plugin learns from the host when it is created.
struct CacheContext {
  std::string run_dir;  ///< The run's output folder.
  int threads = 1;      ///< Worker threads the cache may use.
  /// The device the run trains on: a cache that keeps its rows in device
  /// memory (tier `device`) allocates them there.
  at::Device device = at::Device(at::kCPU);
  /// The folder for cache files (host key `cache.dir`, absolute; by default
  /// `<run folder>/cache`). A cache that stores files puts them here and
  /// nowhere else: the host plans disk space, and removes what `retain`
  /// kept, in this folder (cache interface 2).
  std::string dir;
};

/// What one cache holds, fixed by `begin`.
struct CacheLayout {
  std::size_t cut = 0;                ///< Stages before the cached features.
  std::int64_t count = 0;             ///< Rows (samples x views).
  std::vector<std::int64_t> shape;    ///< One row's shape (storage layout, no batch dimension).
  at::ScalarType dtype = at::kFloat;  ///< Storage type: float32, float16 or bfloat16.
  /// Hex digest of everything that produced the rows (frozen weights, data
  /// config, seed, views, cut): a stored cache with another key is foreign.
  std::string key;

  std::int64_t row_elements() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  std::int64_t row_bytes() const { return row_elements() * static_cast<std::int64_t>(c10::elementSize(dtype)); }
};

/// What a cache has read since it was built (for delivered bandwidth).
struct CacheStats {
  std::int64_t bytes_read = 0;  ///< Stored bytes read by get and readers.
  /// Wall time callers waited for rows in get and BatchReader::next (reads
  /// hidden behind training by a prefetching reader do not count).
  double read_seconds = 0;
};

/// Yields the cached features of an epoch's order, batch after batch.
class LEARNDROP_VISIBLE BatchReader {
 public:
  virtual ~BatchReader() = default;
  /// The next batch, or an undefined tensor after the last one.
  virtual at::Tensor next() = 0;
};

/// Storage of the feature maps at one cut, for every training sample.
///
/// Life cycle: `begin` once, `put` until every row in [0, count) has been
/// written exactly once (in any order, from one thread), `finish`, then any
/// number of `get` calls and readers. Data that arrive later (a stream) add
/// rows: `grow(count)`, `put` of exactly the new rows, `finish` again.
///
/// Threads and lifetimes (what the host guarantees and expects):
/// - `begin`, `put` and `finish` come from one thread, never overlapping any
///   other call.
/// - After `finish`, `get`, `reader` and a reader's `next` come from one
///   thread at a time (the batch pipeline's producer, or the drop that
///   builds the next cut from this one), never both at once: the host stops
///   the producer before a drop reads the cache.
/// - `stats`, `bytes` and `describe` may be called from another thread while
///   `get` or `next` runs: synchronise what they read.
/// - A reader may work in the background between `next` calls, and the host
///   destroys a reader before the cache it came from (it keeps the cache
///   alive while any of its readers exists), so a reader may hold a plain
///   reference to its cache, also in its destructor. Rows are stored as contiguous
/// `shape`; `get` returns them bit-identical in the storage type (the host
/// converts them on the training device). Errors (I/O, corruption) are
/// thrown as ld::Error naming the file.
///
/// Devices: `put` receives and `get` and readers return tensors on
/// `device()` — the CPU for host tiers (`ram`, `disk`), the training device
/// for a device-memory tier. The host moves them to the training device.
class LEARNDROP_VISIBLE FeatureCache {
 public:
  virtual ~FeatureCache() = default;

  /// Prepares storage for `layout.count` rows.
  virtual void begin(const CacheLayout& layout) = 0;

  /// Stores `batch` ([B, shape...] of the storage type, on `device()`) as rows `rows`.
  virtual void put(const std::vector<std::int64_t>& rows, const at::Tensor& batch) = 0;

  /// Ends writing; the cache is readable afterwards.
  virtual void finish() = 0;

  /// Adds rows to a finished cache, for samples that arrived after it was
  /// built: the layout's count becomes `count` (larger than it is), the host
  /// then `put`s exactly the new rows [old count, count), each once, and
  /// calls `finish`, after which every row is readable. Rows stored before
  /// stay as they are, bit for bit, and are never written again. No reader
  /// or `get` overlaps the growth (the host stops its readers first).
  /// Returns false when this cache cannot grow in place (the default); the
  /// host then copies the rows into a new cache of the larger layout.
  virtual bool grow(std::int64_t count) {
    (void)count;
    return false;
  }

  /// Rows `rows` as [B, shape...] of the storage type, on `device()`.
  virtual at::Tensor get(const std::vector<std::int64_t>& rows) = 0;

  /// Where the rows of `put`, `get` and readers live (valid after `begin`).
  virtual at::Device device() const { return at::Device(at::kCPU); }

  /// A reader over `order` in batches of `batch_size` (the last may be
  /// smaller). The default reads each batch with `get` when asked.
  virtual std::unique_ptr<BatchReader> reader(std::vector<std::int64_t> order, std::int64_t batch_size);

  /// Bytes the cache holds (in memory or on disk).
  virtual std::int64_t bytes() const = 0;

  /// One line for logs.
  virtual std::string describe() const { return ""; }

  /// Reads so far.
  virtual CacheStats stats() const { return {}; }

  /// Keeps the stored rows after this object is destroyed, for `reopen` by a
  /// resumed run. The host calls it, after `finish`, when a run stops with a
  /// checkpoint (SIGINT/SIGTERM). Default: nothing is kept (the resumed run
  /// rebuilds the cache). A kept file goes in CacheContext::dir, named with
  /// kept_cache_file (below): the host notes which kept files appeared there
  /// and removes them with the checkpoint they belong to (a new run in the
  /// folder, a finished run), since nothing else would reopen them.
  virtual void retain() {}

  /// Instead of begin/put/finish: adopts stored rows of `layout` (the same
  /// key, cut, count, shape and dtype) kept by `retain` or left by a process
  /// that died, if they are intact. True when adopted: the cache is then
  /// readable as after `finish`. False when there are none (the host then
  /// builds the cache); throws only on errors other than "not there".
  virtual bool reopen(const CacheLayout& layout) {
    (void)layout;
    return false;
  }
};

namespace detail {
class SequentialReader final : public BatchReader {
 public:
  SequentialReader(FeatureCache& cache, std::vector<std::int64_t> order, std::int64_t batch_size)
      : cache_(cache), order_(std::move(order)), batch_size_(batch_size) {}
  at::Tensor next() override {
    if (pos_ >= order_.size()) return {};
    std::size_t end = std::min(order_.size(), pos_ + static_cast<std::size_t>(batch_size_));
    std::vector<std::int64_t> idx(order_.begin() + pos_, order_.begin() + end);
    pos_ = end;
    return cache_.get(idx);
  }

 private:
  FeatureCache& cache_;
  std::vector<std::int64_t> order_;
  std::int64_t batch_size_;
  std::size_t pos_ = 0;
};
}  // namespace detail

inline std::unique_ptr<BatchReader> FeatureCache::reader(std::vector<std::int64_t> order, std::int64_t batch_size) {
  return std::make_unique<detail::SequentialReader>(*this, std::move(order), batch_size);
}

/// The name of a file a cache keeps for a resumed run (FeatureCache::retain)
/// in the run folder's `cache/`: `<stem>-kept.bin`. The host removes such
/// files (is_kept_cache_file) when a new run starts in the folder.
inline std::string kept_cache_file(const std::string& stem) { return stem + "-kept.bin"; }
inline bool is_kept_cache_file(const std::string& name) {
  const std::string suffix = kept_cache_file("");
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace ld
