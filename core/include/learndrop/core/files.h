#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace ld::core {

/// Writes `content` to `path` atomically: to a temporary name in the same
/// folder, flushed, then renamed over `path`. Throws ld::Error naming the file.
void atomic_write(const std::filesystem::path& path, const std::string& content);

/// Calls `write(tmp_path)` to produce the file under a temporary name, then
/// renames it to `path`; the temporary file is removed if `write` throws.
void atomic_write_with(const std::filesystem::path& path,
                       const std::function<void(const std::string& tmp_path)>& write);

/// Reads a whole file; throws ld::Error naming it.
std::string read_file(const std::filesystem::path& path);

/// An exclusive lock on a file (flock), held while the object lives, that
/// names its holder: the file holds "PID@HOST". Released and the file removed
/// when the object goes (a crashed holder's lock is released by the kernel;
/// its file stays and is taken over).
class FileLock {
 public:
  /// Takes the lock on `file` (created if missing). Returns null when another
  /// process (or another FileLock in this one) holds it, with `holder` set to
  /// what the holder wrote ("PID@HOST", or "?"). Throws ld::Error naming the
  /// file when it cannot be opened.
  static std::unique_ptr<FileLock> try_take(const std::filesystem::path& file, std::string* holder = nullptr);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  FileLock(std::filesystem::path file, int fd) : file_(std::move(file)), fd_(fd) {}
  std::filesystem::path file_;
  int fd_ = -1;
};

}  // namespace ld::core
