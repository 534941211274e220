#pragma once

#include <atomic>
#include <filesystem>
#include <mutex>
#include <vector>

#include "learndrop/cache.h"
#include "learndrop/row_ledger.h"

namespace ldcache {

struct DiskOptions {
  std::int64_t prefetch = 4;     ///< Batches a reader reads ahead.
  bool drop_page_cache = false;  ///< Evict the file from the page cache after writing and after each epoch.
};

/// Cache `disk`: one record file per cut (see docs/caches.md for the format):
/// a 4 KiB header, fixed-size rows, a CRC-32 per row. Rows are written and
/// read with pwrite/pread in parallel (TBB); readers read `prefetch` batches
/// ahead. The file is written under a temporary name, renamed when complete,
/// and removed when the cache is destroyed.
/// An I/O failure of the disk cache (a full disk, a file size limit), as
/// against a broken contract: cache auto moves the rows to another tier on it.
struct StorageError : ld::Error {
  using ld::Error::Error;
};

class DiskCache : public ld::FeatureCache {
 public:
  DiskCache(DiskOptions options, const ld::CacheContext& ctx);
  ~DiskCache() override;
  /// Where the files go: CacheContext::dir.
  std::filesystem::path folder() const;

  void begin(const ld::CacheLayout& layout) override;
  void put(const std::vector<std::int64_t>& rows, const at::Tensor& batch) override;
  void finish() override;
  /// Extends the file: the new rows go where the checksums were, and finish
  /// writes the checksums after them; until then the file has its temporary
  /// name and an incomplete header again.
  bool grow(std::int64_t count) override;
  at::Tensor get(const std::vector<std::int64_t>& rows) override;
  std::unique_ptr<ld::BatchReader> reader(std::vector<std::int64_t> order, std::int64_t batch_size) override;
  std::int64_t bytes() const override;
  std::string describe() const override;
  ld::CacheStats stats() const override;
  /// Renames the file to ldcache-cut<C>-<key>-kept.bin and leaves it.
  void retain() override;
  /// Adopts a kept file, or the complete file of a dead process, with the
  /// layout's key whose header and size check out.
  bool reopen(const ld::CacheLayout& layout) override;

  /// Reads `rows` in storage dtype, checking the file and every row's CRC
  /// (thread-safe).
  at::Tensor read(const std::vector<std::int64_t>& rows);
  /// Adds time a caller waited for rows.
  void add_wait(double seconds);
  /// Evicts the file's pages from the page cache (drop_page_cache).
  void evict();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::int64_t offset(std::int64_t row) const;
  void set_layout(const ld::CacheLayout& layout);
  static std::string stem(const ld::CacheLayout& layout);
  /// This process as a file's owner: "PID@HOST".
  static std::string owner();
  /// Whether the process named by `owner` ("PID@HOST", or "PID" in files of
  /// earlier versions) is gone: only a process of this machine can be judged.
  static bool owner_is_gone(const std::string& owner);
  void write_header(bool complete);
  /// Reserves file_bytes_ for the file (a full disk is found before the rows are computed).
  /// Extends the file to file_bytes_ (posix_fallocate, or ftruncate where the
  /// file system has no fallocate); the errno of a failure, else 0.
  int allocate() const;
  void reserve(const std::string& what);
  void verify_file();
  void remove_stale_files() const;
  [[noreturn]] void io_error(const std::string& what, int err) const;

  DiskOptions options_;
  ld::CacheContext ctx_;
  ld::CacheLayout layout_;
  std::filesystem::path dir_, path_;
  int fd_ = -1;
  bool complete_ = false;
  std::int64_t data_offset_ = 0, crc_offset_ = 0, file_bytes_ = 0;
  std::vector<std::uint32_t> crc_;
  ld::RowLedger ledger_{"cache disk"};
  std::atomic<std::int64_t> bytes_read_{0};
  mutable std::mutex stats_mutex_;
  double wait_seconds_ = 0;
};

}  // namespace ldcache
