#pragma once

#include <filesystem>
#include <functional>
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

}  // namespace ld::core
