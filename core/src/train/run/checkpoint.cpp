#include "learndrop/core/checkpoint.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <sstream>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <torch/serialize.h>

#include "learndrop/core/files.h"
#include "learndrop/crc32.h"
#include "learndrop/error.h"

namespace ld::core {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int kFormat = 1;
const char* const kFiles[] = {"state.json", "tensors.pt", "optimizer.pt"};

std::uint32_t crc32_of(const std::string& bytes) { return ld::crc32(bytes.data(), bytes.size()); }

// Writes and fsyncs one file of a checkpoint folder.
void write_synced(const fs::path& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot write " + path.string() + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      throw Error("cannot write " + path.string() + ": " + std::strerror(err));
    }
    done += static_cast<std::size_t>(n);
  }
  // close() runs whatever fsync() answered: a failed fsync leaked the descriptor.
  const int synced = ::fsync(fd) == 0 ? 0 : errno;
  const int closed = ::close(fd) == 0 ? 0 : errno;
  if (synced != 0 || closed != 0) {
    throw Error("cannot write " + path.string() + ": " + std::strerror(synced != 0 ? synced : closed));
  }
}

void sync_folder(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

std::string tensors_bytes(const Checkpoint& c) {
  torch::serialize::OutputArchive archive;
  for (const auto& [name, t] : c.tensors) archive.write(name, t.detach().to(at::kCPU));
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

// Reads one checkpoint folder, checking it against its manifest.
Checkpoint read_folder(const fs::path& dir) {
  const fs::path manifest_path = dir / "MANIFEST.json";
  if (!fs::exists(manifest_path)) {
    throw Error(manifest_path.string() + " is missing: the checkpoint is incomplete (its write did not finish)");
  }
  json manifest;
  try {
    manifest = json::parse(read_file(manifest_path));
  } catch (const json::exception& e) {
    throw Error(manifest_path.string() + " is corrupt: " + e.what());
  }
  if (!manifest.is_object() || manifest.value("format", 0) != kFormat || !manifest["files"].is_object()) {
    throw Error(manifest_path.string() + " is not a LearnDrop checkpoint manifest of format " +
                std::to_string(kFormat));
  }
  std::map<std::string, std::string> bytes;
  for (const char* name : kFiles) {
    const fs::path path = dir / name;
    const json& entry = manifest["files"][name];
    if (!entry.is_object()) throw Error(manifest_path.string() + " does not list " + name);
    if (!fs::exists(path)) throw Error(path.string() + " is missing");
    std::string b = read_file(path);
    const auto expected = entry.value("bytes", std::int64_t{-1});
    if (static_cast<std::int64_t>(b.size()) != expected) {
      throw Error(path.string() + " is truncated or overwritten: " + std::to_string(b.size()) + " bytes, expected " +
                  std::to_string(expected));
    }
    if (crc32_of(b) != entry.value("crc32", std::uint32_t{0})) {
      throw Error(path.string() + " is corrupt: its CRC-32 does not match " + manifest_path.string());
    }
    bytes[name] = std::move(b);
  }
  Checkpoint c;
  c.from = dir;
  try {
    c.meta = json::parse(bytes["state.json"]);
  } catch (const json::exception& e) {
    throw Error((dir / "state.json").string() + " is corrupt: " + e.what());
  }
  try {
    torch::serialize::InputArchive archive;
    std::istringstream in(bytes["tensors.pt"]);
    archive.load_from(in);
    for (const auto& name : c.meta.at("tensors")) {
      at::Tensor t;
      if (!archive.try_read(name.get<std::string>(), t)) {
        throw Error((dir / "tensors.pt").string() + " has no tensor '" + name.get<std::string>() + "'");
      }
      c.tensors[name.get<std::string>()] = t;
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string what = e.what();
    throw Error((dir / "tensors.pt").string() + " cannot be read: " + what.substr(0, what.find('\n')));
  }
  c.optimizer = std::move(bytes["optimizer.pt"]);
  return c;
}

}  // namespace

const at::Tensor& Checkpoint::tensor(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw Error("checkpoint " + from.string() + " has no tensor '" + name + "'");
  return it->second;
}

void write_checkpoint(const fs::path& run_dir, const Checkpoint& ckpt) {
  const fs::path final_dir = run_dir / "checkpoint", prev = run_dir / "checkpoint.prev";
  const fs::path tmp = run_dir / (".checkpoint.tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  try {
    if (!fs::create_directory(tmp, ec) || ec) {
      throw Error("cannot create " + tmp.string() + ": " + (ec ? ec.message() : "it exists"));
    }
    json meta = ckpt.meta;
    meta["format"] = kFormat;
    meta["tensors"] = json::array();
    for (const auto& kv : ckpt.tensors) meta["tensors"].push_back(kv.first);
    std::map<std::string, std::string> files = {
        {"state.json", meta.dump(1) + "\n"}, {"tensors.pt", tensors_bytes(ckpt)}, {"optimizer.pt", ckpt.optimizer}};
    json manifest = {{"format", kFormat}, {"files", json::object()}};
    for (const auto& [name, bytes] : files) {
      write_synced(tmp / name, bytes);
      manifest["files"][name] = {{"bytes", bytes.size()}, {"crc32", crc32_of(bytes)}};
    }
    // The manifest last: a folder without it is incomplete.
    write_synced(tmp / "MANIFEST.json", manifest.dump(1) + "\n");
    sync_folder(tmp);
    // The current checkpoint becomes the older one; the one before goes.
    if (fs::exists(final_dir)) {
      fs::remove_all(prev, ec);
      fs::rename(final_dir, prev, ec);
      if (ec) throw Error("cannot rename " + final_dir.string() + " to " + prev.string() + ": " + ec.message());
    }
    fs::rename(tmp, final_dir, ec);
    if (ec) throw Error("cannot rename " + tmp.string() + " to " + final_dir.string() + ": " + ec.message());
    sync_folder(run_dir);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

bool has_checkpoint(const fs::path& run_dir) {
  return fs::is_directory(run_dir / "checkpoint") || fs::is_directory(run_dir / "checkpoint.prev");
}

Checkpoint read_checkpoint(const fs::path& run_dir) {
  const fs::path latest = run_dir / "checkpoint", prev = run_dir / "checkpoint.prev";
  std::string latest_error;
  if (fs::is_directory(latest)) {
    try {
      return read_folder(latest);
    } catch (const Error& e) {
      latest_error = e.what();
    }
  } else {
    latest_error = latest.string() + " does not exist";
  }
  if (fs::is_directory(prev)) {
    Checkpoint c;
    try {
      c = read_folder(prev);
    } catch (const Error& e) {
      throw Error("no usable checkpoint in " + run_dir.string() + ": " + latest_error +
                  "; and the older one: " + e.what());
    }
    spdlog::warn("{}; resuming from the older complete checkpoint {}", latest_error, prev.string());
    return c;
  }
  throw Error("no usable checkpoint in " + run_dir.string() + ": " + latest_error);
}

void keep_epoch_checkpoint(const fs::path& run_dir, std::int64_t epochs_done) {
  const fs::path from = run_dir / "checkpoint", kept = run_dir / "checkpoints";
  const fs::path to = kept / ("epoch-" + std::to_string(epochs_done));
  const fs::path tmp = kept / (".epoch-" + std::to_string(epochs_done) + ".tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::create_directories(kept, ec);
  fs::remove_all(tmp, ec);
  try {
    if (!fs::create_directory(tmp, ec) || ec) {
      throw Error("cannot create " + tmp.string() + ": " + (ec ? ec.message() : "it exists"));
    }
    // The checkpoint's files are never written again (the next one is a new
    // folder): a hard link shares them at no cost.
    std::vector<std::string> names(std::begin(kFiles), std::end(kFiles));
    names.emplace_back("MANIFEST.json");
    for (const std::string& name : names) {
      fs::create_hard_link(from / name, tmp / name, ec);
      if (ec) {
        ec.clear();
        fs::copy_file(from / name, tmp / name, ec);
        if (ec) throw Error("cannot keep " + (from / name).string() + " in " + tmp.string() + ": " + ec.message());
      }
    }
    sync_folder(tmp);
    fs::remove_all(to, ec);
    fs::rename(tmp, to, ec);
    if (ec) throw Error("cannot rename " + tmp.string() + " to " + to.string() + ": " + ec.message());
    sync_folder(kept);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

std::map<std::int64_t, fs::path> kept_epoch_checkpoints(const fs::path& run_dir) {
  std::map<std::int64_t, fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run_dir / "checkpoints", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("epoch-", 0) != 0 || !e.is_directory()) continue;
    char* end = nullptr;
    const long long n = std::strtoll(name.c_str() + 6, &end, 10);
    if (end != nullptr && *end == '\0' && n > 0) out[n] = e.path();
  }
  return out;
}

Checkpoint read_checkpoint_folder(const fs::path& folder) { return read_folder(folder); }

}  // namespace ld::core
