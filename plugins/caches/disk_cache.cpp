#include "disk_cache.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <deque>
#include <future>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <tbb/parallel_for.h>

#include "learndrop/crc32.h"
#include "learndrop/error.h"
#include "ram_cache.h"

namespace ldcache {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'L', 'D', 'C', 'A', 'C', 'H', 'E', '\0'};
constexpr std::uint32_t kVersion = 1;
constexpr std::int64_t kHeaderBytes = 4096;
constexpr std::size_t kMaxDims = 8;

// The header's fixed fields, little-endian as on every platform we build for.
struct Header {
  char magic[8];
  std::uint32_t version;
  std::uint32_t dtype;  // 0 float32, 1 float16, 2 bfloat16
  std::uint64_t cut;
  std::uint64_t count;
  std::uint32_t ndim;
  std::uint32_t complete;
  std::uint64_t shape[kMaxDims];
  std::uint64_t row_bytes;
  std::uint64_t data_offset;
  std::uint64_t crc_offset;
  char key[64];
  std::uint32_t header_crc;  // CRC-32 of the bytes above
};

std::uint32_t dtype_code(at::ScalarType t) {
  if (t == at::kHalf) return 1;
  if (t == at::kBFloat16) return 2;
  return 0;
}

std::uint32_t crc_of(const void* data, std::size_t n) { return ld::crc32(data, n); }

// pwrite/pread of the whole range, retrying short transfers; errno on failure.
int write_all(int fd, const char* p, std::size_t n, std::int64_t off) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
    off += w;
  }
  return 0;
}

// Bytes read (fewer at end of file), or -errno.
std::int64_t read_all(int fd, char* p, std::size_t n, std::int64_t off) {
  std::int64_t done = 0;
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) break;
    p += r;
    n -= static_cast<std::size_t>(r);
    off += r;
    done += r;
  }
  return done;
}

// Reads `count` rows ahead of the consumer: up to `prefetch` batches are in
// flight at once, each read with TBB-parallel preads.
class DiskReader : public ld::BatchReader {
 public:
  DiskReader(DiskCache& cache, std::vector<std::int64_t> order, std::int64_t batch_size, std::int64_t prefetch)
      : cache_(cache),
        order_(std::move(order)),
        batch_size_(batch_size),
        prefetch_(std::max<std::int64_t>(1, prefetch)) {
    batches_ = (static_cast<std::int64_t>(order_.size()) + batch_size_ - 1) / batch_size_;
    while (launched_ < batches_ && launched_ < prefetch_) launch();
  }
  ~DiskReader() override {
    for (auto& f : pending_) {
      if (f.valid()) f.wait();
    }
    if (batches_ > 0 && next_ >= batches_) cache_.evict();
  }
  at::Tensor next() override {
    if (next_ >= batches_) return {};
    const auto start = std::chrono::steady_clock::now();
    at::Tensor stored = pending_.front().get();  // rethrows a read error
    pending_.pop_front();
    cache_.add_wait(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    ++next_;
    if (launched_ < batches_) launch();
    return stored;
  }

 private:
  void launch() {
    const auto begin = static_cast<std::size_t>(launched_ * batch_size_);
    const std::size_t end = std::min(order_.size(), begin + static_cast<std::size_t>(batch_size_));
    std::vector<std::int64_t> rows(order_.begin() + static_cast<std::ptrdiff_t>(begin),
                                   order_.begin() + static_cast<std::ptrdiff_t>(end));
    pending_.push_back(std::async(std::launch::async, [this, rows = std::move(rows)] { return cache_.read(rows); }));
    ++launched_;
  }

  DiskCache& cache_;
  std::vector<std::int64_t> order_;
  std::int64_t batch_size_, prefetch_, batches_ = 0, launched_ = 0, next_ = 0;
  std::deque<std::future<at::Tensor>> pending_;
};

}  // namespace

DiskCache::DiskCache(DiskOptions options, const ld::CacheContext& ctx) : options_(std::move(options)), ctx_(ctx) {
  // The host creates the cache when the run starts: an unusable cache.dir is
  // reported then, not at the first drop. The default folder, in the run
  // folder, is made with it.
  const fs::path dir = folder();
  if (dir == fs::path(ctx_.run_dir) / "cache") return;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    throw ld::Error("cache disk: cannot create cache.dir " + dir.string() + ": " +
                    (ec ? ec.message() : std::string("not a folder")));
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    throw ld::Error("cache disk: cache.dir " + dir.string() + " is not writable: " + std::strerror(errno));
  }
}

fs::path DiskCache::folder() const {
  // The host always sets it; a test or tool that does not gets the default.
  return ctx_.dir.empty() ? fs::path(ctx_.run_dir) / "cache" : fs::path(ctx_.dir);
}

DiskCache::~DiskCache() {
  if (fd_ >= 0) ::close(fd_);
  if (!path_.empty()) {
    std::error_code ec;
    fs::remove(path_, ec);
  }
}

std::int64_t DiskCache::offset(std::int64_t row) const { return data_offset_ + row * layout_.row_bytes(); }

void DiskCache::io_error(const std::string& what, int err) const {
  std::string reason = std::strerror(err);
  if (err == ENOSPC) reason = "no space left on the device of " + dir_.string();
  if (err == EFBIG) reason = "file size limit exceeded (ulimit -f)";
  throw StorageError("cache disk: " + what + " " + path_.string() + ": " + reason);
}

namespace {

// This machine's name as a file name part: [A-Za-z0-9-] kept, others '_'.
const std::string& this_host() {
  static const std::string host = [] {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return std::string("unknown");
    std::string h = buf;
    for (char& c : h) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') c = '_';
    }
    return h.empty() ? std::string("unknown") : h;
  }();
  return host;
}

}  // namespace

std::string DiskCache::owner() { return std::to_string(::getpid()) + "@" + this_host(); }

bool DiskCache::owner_is_gone(const std::string& owner) {
  // "PID@HOST", or "PID" in files of earlier versions. A process of another
  // machine sharing cache.dir cannot be judged from here: its file stays.
  const auto at = owner.find('@');
  if (at != std::string::npos && owner.substr(at + 1) != this_host()) return false;
  char* end = nullptr;
  const long pid = std::strtol(owner.c_str(), &end, 10);
  if (end == owner.c_str() || (at != std::string::npos && end != owner.c_str() + at)) return false;
  return pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

void DiskCache::remove_stale_files() const {
  // Files of runs that died without cleaning up (SIGKILL):
  // [.]ldcache-cut<N>-<key>-<PID@HOST>.{bin,tmp}.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    std::string name = e.path().filename().string();
    if (!name.empty() && name[0] == '.') name.erase(0, 1);
    if (name.rfind("ldcache-cut", 0) != 0 || ld::is_kept_cache_file(name)) continue;
    const std::string ext = e.path().extension().string();
    if (ext != ".bin" && ext != ".tmp") continue;
    const auto key_dash = name.find('-', std::string("ldcache-cut").size());  // after the cut
    if (key_dash == std::string::npos || name.size() < key_dash + 1 + 16 + 1 + ext.size()) continue;
    const std::size_t owner_at = key_dash + 1 + 16 + 1;
    const std::string who = name.substr(owner_at, name.size() - owner_at - ext.size());
    if (owner_is_gone(who)) {
      spdlog::warn("cache disk: removing {} left by process {}, which no longer runs", e.path().string(), who);
      fs::remove(e.path(), ec);
    }
  }
}

void DiskCache::set_layout(const ld::CacheLayout& layout) {
  layout_ = layout;
  if (layout.shape.size() > kMaxDims) throw ld::Error("cache disk: rows of more than 8 dimensions");
  dir_ = folder();
  data_offset_ = kHeaderBytes;
  crc_offset_ = data_offset_ + layout.count * layout.row_bytes();
  file_bytes_ = crc_offset_ + layout.count * static_cast<std::int64_t>(sizeof(std::uint32_t));
}

std::string DiskCache::stem(const ld::CacheLayout& layout) {
  return "ldcache-cut" + std::to_string(layout.cut) + "-" + layout.key.substr(0, 16) + "-";
}

void DiskCache::retain() {
  if (!complete_ || path_.empty()) return;
  // Without the pid in its name, no run's clean-up of dead processes' files removes it.
  std::string name = stem(layout_);
  name.pop_back();  // the stem's trailing '-'
  const fs::path kept = dir_ / ld::kept_cache_file(name);
  std::error_code ec;
  fs::rename(path_, kept, ec);
  if (ec) {
    spdlog::warn("cache disk: cannot keep {} for a resumed run ({}); it will be rebuilt", path_.string(), ec.message());
    return;
  }
  spdlog::info("cache disk: kept {} for a resumed run", kept.string());
  path_.clear();  // the destructor leaves it
}

bool DiskCache::reopen(const ld::CacheLayout& layout) {
  set_layout(layout);
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return false;
  // Candidates: a file kept by retain(), or a complete file of a process
  // that died (SIGKILL, a lost machine) without removing it.
  const std::string prefix = stem(layout);
  std::vector<fs::path> candidates;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0 || e.path().extension() != ".bin") continue;
    if (!ld::is_kept_cache_file(name) && !owner_is_gone(name.substr(prefix.size(), name.size() - prefix.size() - 4))) {
      continue;
    }
    candidates.push_back(e.path());
  }
  std::sort(candidates.begin(), candidates.end());
  for (const auto& candidate : candidates) {
    fd_ = ::open(candidate.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) continue;
    path_ = candidate;
    try {
      verify_file();
      crc_.assign(static_cast<std::size_t>(layout.count), 0);
      const auto crc_bytes = static_cast<std::int64_t>(crc_.size() * sizeof(std::uint32_t));
      const std::int64_t got =
          read_all(fd_, reinterpret_cast<char*>(crc_.data()), static_cast<std::size_t>(crc_bytes), crc_offset_);
      if (got != crc_bytes) io_error("cannot read the checksums of", got < 0 ? static_cast<int>(-got) : EIO);
    } catch (const ld::Error& e) {
      spdlog::warn("cache disk: not reusing {}: {}", candidate.string(), e.what());
      ::close(fd_);
      fd_ = -1;
      path_.clear();
      continue;
    }
    // Owned by this process from now on (removed when the cache is destroyed).
    const fs::path own = dir_ / (prefix + owner() + ".bin");
    fs::rename(candidate, own, ec);
    path_ = ec ? candidate : own;
    complete_ = true;
    ledger_.restore(layout_.count);
    return true;
  }
  return false;
}

void DiskCache::begin(const ld::CacheLayout& layout) {
  set_layout(layout);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec || !fs::is_directory(dir_)) {
    throw ld::Error("cache disk: cannot create cache.dir " + dir_.string() + ": " + ec.message());
  }
  remove_stale_files();
  path_ = dir_ / ("." + stem(layout) + owner() + ".tmp");
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    int err = errno;
    path_.clear();
    throw ld::Error("cache disk: cannot create a file in cache.dir " + dir_.string() + ": " + std::strerror(err));
  }
  // Reserve the whole file now, so that a full disk is found before the build.
  reserve("the cut-" + std::to_string(layout.cut) + " cache");
  write_header(false);
  crc_.assign(static_cast<std::size_t>(layout.count), 0);
  ledger_.begin(layout.count);
  complete_ = false;
}

int DiskCache::allocate() const {
  const int err = ::posix_fallocate(fd_, 0, file_bytes_);
  if (err == EOPNOTSUPP || err == EINVAL) return ::ftruncate(fd_, file_bytes_) == 0 ? 0 : errno;
  return err;
}

void DiskCache::reserve(const std::string& what) {
  if (const int err = allocate(); err != 0) {
    ::close(fd_);
    fd_ = -1;
    std::error_code rm;
    fs::remove(path_, rm);  // nothing half-written stays behind
    io_error("cannot reserve " + bytes_text(static_cast<double>(file_bytes_)) + " for " + what, err);
  }
}

bool DiskCache::grow(std::int64_t count) {
  if (!complete_ || fd_ < 0) throw ld::Error("cache disk: grow before finish");
  const std::int64_t old = layout_.count;
  if (count <= old) {
    throw ld::Error("cache disk: grow to " + std::to_string(count) + " rows, but it holds " + std::to_string(old) +
                    " (a cache does not shrink)");
  }
  // The space first, on the complete file under its own name: when the disk
  // is full the file is cut back and stays as it was (it was deleted).
  const ld::CacheLayout before = layout_;
  const std::int64_t old_bytes = file_bytes_;
  ld::CacheLayout layout = layout_;
  layout.count = count;
  set_layout(layout);
  const std::int64_t more = file_bytes_ - old_bytes;
  if (const int err = allocate(); err != 0) {
    [[maybe_unused]] const int cut = ::ftruncate(fd_, old_bytes);
    set_layout(before);
    io_error("cannot reserve " + bytes_text(static_cast<double>(more)) + " for " + std::to_string(count - old) +
                 " more rows of the cut-" + std::to_string(layout.cut) + " cache (it keeps its " +
                 std::to_string(old) + " rows)",
             err);
  }
  // Incomplete again until finish: the temporary name, and a header that says so.
  const fs::path tmp = dir_ / ("." + stem(layout_) + owner() + ".tmp");
  std::error_code ec;
  fs::rename(path_, tmp, ec);
  if (ec) {
    [[maybe_unused]] const int cut = ::ftruncate(fd_, old_bytes);
    set_layout(before);
    throw StorageError("cache disk: cannot rename " + path_.string() + " to grow it: " + ec.message());
  }
  path_ = tmp;
  complete_ = false;
  write_header(false);
  crc_.resize(static_cast<std::size_t>(count), 0);
  ledger_.grow(count);
  return true;
}

void DiskCache::write_header(bool complete) {
  std::vector<char> block(kHeaderBytes, 0);
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = kVersion;
  h.dtype = dtype_code(layout_.dtype);
  h.cut = layout_.cut;
  h.count = static_cast<std::uint64_t>(layout_.count);
  h.ndim = static_cast<std::uint32_t>(layout_.shape.size());
  h.complete = complete ? 1 : 0;
  for (std::size_t i = 0; i < layout_.shape.size(); ++i) h.shape[i] = static_cast<std::uint64_t>(layout_.shape[i]);
  h.row_bytes = static_cast<std::uint64_t>(layout_.row_bytes());
  h.data_offset = static_cast<std::uint64_t>(data_offset_);
  h.crc_offset = static_cast<std::uint64_t>(crc_offset_);
  std::strncpy(h.key, layout_.key.c_str(), sizeof h.key - 1);
  h.header_crc = crc_of(&h, offsetof(Header, header_crc));
  std::memcpy(block.data(), &h, sizeof h);
  if (int err = write_all(fd_, block.data(), block.size(), 0)) io_error("cannot write the header of", err);
}

void DiskCache::put(const std::vector<std::int64_t>& rows, const at::Tensor& batch) {
  if (batch.size(0) != static_cast<std::int64_t>(rows.size())) {
    throw ld::Error("cache disk: put of " + std::to_string(rows.size()) + " rows with a batch of " +
                    std::to_string(batch.size(0)));
  }
  at::Tensor data = batch.to(at::kCPU).to(layout_.dtype).contiguous();
  const auto row_bytes = static_cast<std::size_t>(layout_.row_bytes());
  if (static_cast<std::size_t>(data.numel() / std::max<std::int64_t>(data.size(0), 1)) * data.element_size() !=
      row_bytes) {
    throw ld::Error("cache disk: put of a batch whose rows do not match the cache shape");
  }
  ledger_.claim(rows);  // in range, each once, between begin (or grow) and finish
  const char* src = static_cast<const char*>(data.data_ptr());
  std::atomic<int> failure{0};
  tbb::parallel_for(std::size_t{0}, rows.size(), [&](std::size_t k) {
    const char* p = src + k * row_bytes;
    crc_[static_cast<std::size_t>(rows[k])] = crc_of(p, row_bytes);
    if (int err = write_all(fd_, p, row_bytes, offset(rows[k]))) failure = err;
  });
  if (failure != 0) io_error("cannot write rows to", failure);
}

void DiskCache::finish() {
  ledger_.finish();
  if (int err = write_all(fd_, reinterpret_cast<const char*>(crc_.data()), crc_.size() * sizeof(std::uint32_t),
                          crc_offset_)) {
    io_error("cannot write the checksums of", err);
  }
  write_header(true);
  fs::path final_path = path_.parent_path() / path_.filename().string().substr(1);
  final_path.replace_extension(".bin");
  std::error_code ec;
  fs::rename(path_, final_path, ec);
  if (ec)
    throw ld::Error("cache disk: cannot rename " + path_.string() + " to " + final_path.string() + ": " + ec.message());
  path_ = final_path;
  complete_ = true;
  if (options_.drop_page_cache) {
    ::fdatasync(fd_);  // dirty pages cannot be evicted
    evict();
  }
  verify_file();
}

void DiskCache::evict() {
  if (options_.drop_page_cache && fd_ >= 0) ::posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED);
}

void DiskCache::verify_file() {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) io_error("cannot stat", errno);
  if (st.st_size != file_bytes_) {
    throw ld::Error("cache disk: " + path_.string() + " is truncated or overwritten: " + std::to_string(st.st_size) +
                    " bytes, expected " + std::to_string(file_bytes_));
  }
  Header h{};
  std::int64_t got = read_all(fd_, reinterpret_cast<char*>(&h), sizeof h, 0);
  if (got != static_cast<std::int64_t>(sizeof h))
    io_error("cannot read the header of", got < 0 ? static_cast<int>(-got) : EIO);
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0) {
    throw ld::Error("cache disk: " + path_.string() + " is not a LearnDrop cache file (bad magic)");
  }
  if (h.version != kVersion) {
    throw ld::Error("cache disk: " + path_.string() + " has format version " + std::to_string(h.version) +
                    ", this build reads version " + std::to_string(kVersion));
  }
  if (h.header_crc != crc_of(&h, offsetof(Header, header_crc))) {
    throw ld::Error("cache disk: " + path_.string() + ": header checksum mismatch (corrupted header)");
  }
  const std::string key(h.key, strnlen(h.key, sizeof h.key));
  if (key != layout_.key || h.count != static_cast<std::uint64_t>(layout_.count) ||
      h.row_bytes != static_cast<std::uint64_t>(layout_.row_bytes()) || h.dtype != dtype_code(layout_.dtype) ||
      h.cut != layout_.cut) {
    throw ld::Error("cache disk: " + path_.string() + " is a foreign cache (key " + key + ", cut " +
                    std::to_string(h.cut) + ", " + std::to_string(h.count) + " rows), expected key " + layout_.key +
                    ", cut " + std::to_string(layout_.cut) + ", " + std::to_string(layout_.count) + " rows");
  }
  if (h.complete != 1) throw ld::Error("cache disk: " + path_.string() + " is incomplete (its build did not finish)");
}

at::Tensor DiskCache::read(const std::vector<std::int64_t>& rows) {
  if (!complete_) throw ld::Error("cache disk: read before finish");
  verify_file();
  std::vector<std::int64_t> sizes = {static_cast<std::int64_t>(rows.size())};
  sizes.insert(sizes.end(), layout_.shape.begin(), layout_.shape.end());
  at::Tensor out = at::empty(sizes, at::TensorOptions().dtype(layout_.dtype));
  const auto row_bytes = static_cast<std::size_t>(layout_.row_bytes());
  for (auto r : rows) ledger_.check(r);
  char* dst = static_cast<char*>(out.data_ptr());
  tbb::parallel_for(std::size_t{0}, rows.size(), [&](std::size_t k) {
    char* p = dst + k * row_bytes;
    const std::int64_t got = read_all(fd_, p, row_bytes, offset(rows[k]));
    if (got < 0) io_error("cannot read", static_cast<int>(-got));
    if (got != static_cast<std::int64_t>(row_bytes)) {
      throw ld::Error("cache disk: " + path_.string() + " is truncated at row " + std::to_string(rows[k]));
    }
    const std::uint32_t crc = crc_of(p, row_bytes);
    if (crc != crc_[static_cast<std::size_t>(rows[k])]) {
      throw ld::Error("cache disk: " + path_.string() + ": checksum mismatch in row " + std::to_string(rows[k]) +
                      " (byte offset " + std::to_string(offset(rows[k])) + "): the file is corrupted");
    }
  });
  bytes_read_ += static_cast<std::int64_t>(rows.size() * row_bytes);
  return out;
}

at::Tensor DiskCache::get(const std::vector<std::int64_t>& rows) {
  const auto start = std::chrono::steady_clock::now();
  at::Tensor stored = read(rows);
  add_wait(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return stored;
}

std::unique_ptr<ld::BatchReader> DiskCache::reader(std::vector<std::int64_t> order, std::int64_t batch_size) {
  if (!complete_) throw ld::Error("cache disk: reader before finish");
  return std::make_unique<DiskReader>(*this, std::move(order), batch_size, options_.prefetch);
}

void DiskCache::add_wait(double seconds) {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  wait_seconds_ += seconds;
}

std::int64_t DiskCache::bytes() const { return file_bytes_; }

std::string DiskCache::describe() const {
  return "disk " + path_.string() + ", cut " + std::to_string(layout_.cut) + ", " +
         std::string(c10::toString(layout_.dtype)) + " " + shape_text(layout_);
}

ld::CacheStats DiskCache::stats() const {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  return {bytes_read_.load(), wait_seconds_};
}

}  // namespace ldcache
