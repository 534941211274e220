#include "learndrop/core/files.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
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

std::unique_ptr<FileLock> FileLock::try_take(const std::filesystem::path& file, std::string* holder) {
  // Another holder may remove the file between our open and our flock: a
  // lock on a removed file guards nothing, so take it again on the new one.
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw Error("cannot lock " + file.string() + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      char buf[128] = {};
      const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
      ::close(fd);
      if (err != EWOULDBLOCK) throw Error("cannot lock " + file.string() + ": " + std::strerror(err));
      if (holder) {
        std::string h = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
        h = h.substr(0, h.find('\n'));
        *holder = h.empty() ? "?" : h;
      }
      return nullptr;
    }
    struct stat held {}, now {};
    if (::fstat(fd, &held) != 0 || ::stat(file.c_str(), &now) != 0 || held.st_ino != now.st_ino ||
        held.st_dev != now.st_dev) {
      ::close(fd);
      continue;
    }
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    const std::string me = std::to_string(::getpid()) + "@" + host + "\n";
    if (::ftruncate(fd, 0) == 0) {
      [[maybe_unused]] const ssize_t w = ::pwrite(fd, me.data(), me.size(), 0);
    }
    return std::unique_ptr<FileLock>(new FileLock(file, fd));
  }
  throw Error("cannot lock " + file.string() + ": it is removed and created again by other processes");
}

FileLock::~FileLock() {
  std::error_code ec;
  std::filesystem::remove(file_, ec);  // while still held: whoever opens it next gets a new file
  ::close(fd_);
}

}  // namespace ld::core
