#include "run/run_output.h"

#include <cerrno>
#include <cstring>
#include <sstream>

#include <spdlog/spdlog.h>
#include <torch/serialize.h>

#include "learndrop/cache.h"
#include "learndrop/core/files.h"
#include "learndrop/error.h"

namespace ld::core {

namespace fs = std::filesystem;

namespace {
// Opens `path` for appending after its first `bytes` bytes (the rest is cut off).
void open_at(std::ofstream& out, const fs::path& path, std::int64_t bytes) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec || static_cast<std::int64_t>(size) < bytes) {
    throw Error("cannot resume: " + path.string() + " has " + (ec ? ec.message() : std::to_string(size) + " bytes") +
                ", the checkpoint saw " + std::to_string(bytes));
  }
  fs::resize_file(path, static_cast<std::uintmax_t>(bytes), ec);
  if (ec) throw Error("cannot resume: cannot cut " + path.string() + " back: " + ec.message());
  out.open(path, std::ios::app);
}
}  // namespace

RunOutput::RunOutput(fs::path dir, const Resume* resume) : dir_(std::move(dir)) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec || !fs::is_directory(dir_)) {
    throw Error("cannot create run folder " + dir_.string() + ": " + (ec ? ec.message() : "not a folder"));
  }
  lock();
  // The folder is this process's now: a checkpoint being written by a run
  // that died (.checkpoint.tmp-PID) is nobody's.
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    if (e.path().filename().string().rfind(".checkpoint.tmp-", 0) == 0) {
      std::error_code rm;
      fs::remove_all(e.path(), rm);
    }
  }
  // Stale files of an earlier run in the same folder would mix with this one.
  for (const char* name : {"summary.json", "model.pt"}) fs::remove(dir_ / name, ec);
  if (resume) {
    written_ = *resume;
    open_at(metrics_, dir_ / "metrics.jsonl", resume->metrics_bytes);
    open_at(stats_, dir_ / "stats.jsonl", resume->stats_bytes);
  } else {
    // A new run in the folder of an old one: its checkpoints are not this run's.
    if (fs::exists(dir_ / "checkpoint") || fs::exists(dir_ / "checkpoint.prev")) {
      spdlog::warn(
          "{} holds the checkpoint of an interrupted run; starting over (ldrop run --resume {} goes on "
          "with it instead)",
          dir_.string(), dir_.string());
    }
    remove_checkpoints();
    fs::remove_all(dir_ / "checkpoints", ec);  // an earlier run's kept epoch checkpoints
    metrics_.open(dir_ / "metrics.jsonl", std::ios::trunc);
    stats_.open(dir_ / "stats.jsonl", std::ios::trunc);
  }
  if (!metrics_) throw Error("cannot write " + (dir_ / "metrics.jsonl").string() + ": " + std::strerror(errno));
  if (!stats_) throw Error("cannot write " + (dir_ / "stats.jsonl").string() + ": " + std::strerror(errno));
}

RunOutput::Resume RunOutput::sizes() const { return written_; }

RunOutput::~RunOutput() = default;  // lock_ releases the folder and removes .lock

void RunOutput::lock() {
  // Two runs writing one folder replaced each other's files in silence: the
  // folder is locked while a run owns it (flock: released when the process
  // ends, however it ends).
  std::string holder;
  lock_ = FileLock::try_take(dir_ / ".lock", &holder);
  if (!lock_) {
    throw Error("run folder " + dir_.string() + " is in use by another run (process " + holder +
                "); wait for it to end, or choose another --out");
  }
}

void RunOutput::note_kept_caches(const std::vector<fs::path>& files) {
  if (files.empty()) return;
  std::string list;
  if (fs::exists(dir_ / "kept-caches")) list = read_file(dir_ / "kept-caches");
  for (const auto& f : files) list += fs::absolute(f).string() + "\n";
  atomic_write(dir_ / "kept-caches", list);
}

void RunOutput::remove_checkpoints() {
  std::error_code ec;
  for (const char* name : {"checkpoint", "checkpoint.prev"}) fs::remove_all(dir_ / name, ec);
  if (fs::exists(dir_ / "kept-caches")) {
    std::istringstream list(read_file(dir_ / "kept-caches"));
    for (std::string line; std::getline(list, line);) {
      // Only what the list names, and only a kept cache file: the list is
      // in the run folder, where anyone may edit it.
      if (!line.empty() && ld::is_kept_cache_file(fs::path(line).filename().string())) {
        std::error_code rm;
        fs::remove(line, rm);
      }
    }
    fs::remove(dir_ / "kept-caches", ec);
  }
  // A cache kept in the run folder's cache/ (the default cache.dir) by a
  // run stopped before kept-caches was written: it belongs to the
  // checkpoint too. The SDK names such files (ld::kept_cache_file).
  for (const auto& e : fs::directory_iterator(dir_ / "cache", ec)) {
    if (ld::is_kept_cache_file(e.path().filename().string())) {
      std::error_code rm;
      fs::remove(e.path(), rm);
    }
  }
}

void RunOutput::write_config(const std::string& yaml) { atomic_write(dir_ / "config.yaml", yaml); }

void RunOutput::append(std::ofstream& out, std::int64_t& written, const char* name, const nlohmann::json& line) {
  const std::string text = line.dump() + "\n";
  out << text;
  out.flush();
  written += static_cast<std::int64_t>(text.size());
  if (!out) throw Error("cannot write " + (dir_ / name).string() + ": " + std::strerror(errno));
}

void RunOutput::append_metrics(const nlohmann::json& line) {
  append(metrics_, written_.metrics_bytes, "metrics.jsonl", line);
}

void RunOutput::append_stats(const nlohmann::json& line) { append(stats_, written_.stats_bytes, "stats.jsonl", line); }

void RunOutput::write_summary(const nlohmann::json& summary) {
  atomic_write(dir_ / "summary.json", summary.dump(2) + "\n");
}

void RunOutput::save_model(torch::nn::Module& model) {
  // Serialised in memory, then written like every other result file: LibTorch's
  // file writer finishes the archive in its destructor, and a full disk there
  // (a throw from a destructor) terminated the process.
  std::ostringstream bytes;
  torch::serialize::OutputArchive archive;
  model.save(archive);
  archive.save_to(bytes);
  atomic_write(dir_ / "model.pt", bytes.str());
}

}  // namespace ld::core
