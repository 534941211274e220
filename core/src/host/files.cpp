#include "learndrop/core/files.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "learndrop/error.h"

namespace ld::core {

namespace fs = std::filesystem;

namespace {
fs::path temp_name(const fs::path& path) {
  return path.parent_path() / ("." + path.filename().string() + ".tmp" + std::to_string(::getpid()));
}
}  // namespace

void atomic_write_with(const fs::path& path, const std::function<void(const std::string&)>& write) {
  fs::path tmp = temp_name(path);
  try {
    write(tmp.string());
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error("cannot write " + path.string() + ": rename failed: " + ec.message());
  }
}

void atomic_write(const fs::path& path, const std::string& content) {
  atomic_write_with(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("cannot write " + path.string() + ": " + std::strerror(errno));
    errno = 0;
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.flush();
    out.close();
    if (!out) {
      throw Error("cannot write " + path.string() + ": " +
                  (errno == EFBIG ? std::string("file size limit exceeded")
                   : errno        ? std::string(std::strerror(errno))
                                  : std::string("write failed")));
    }
  });
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path.string() + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace ld::core
