#include "learndrop/core/run_output.h"

#include <cerrno>
#include <cstring>
#include <sstream>

#include <torch/serialize.h>

#include "learndrop/core/files.h"
#include "learndrop/error.h"

namespace ld::core {

namespace fs = std::filesystem;

RunOutput::RunOutput(fs::path dir) : dir_(std::move(dir)) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec || !fs::is_directory(dir_)) {
    throw Error("cannot create run folder " + dir_.string() + ": " + (ec ? ec.message() : "not a folder"));
  }
  // Stale files of an earlier run in the same folder would mix with this one.
  for (const char* name : {"summary.json", "model.pt"}) fs::remove(dir_ / name, ec);
  metrics_.open(dir_ / "metrics.jsonl", std::ios::trunc);
  if (!metrics_) throw Error("cannot write " + (dir_ / "metrics.jsonl").string() + ": " + std::strerror(errno));
  stats_.open(dir_ / "stats.jsonl", std::ios::trunc);
  if (!stats_) throw Error("cannot write " + (dir_ / "stats.jsonl").string() + ": " + std::strerror(errno));
}

void RunOutput::write_config(const std::string& yaml) { atomic_write(dir_ / "config.yaml", yaml); }

void RunOutput::append_metrics(const nlohmann::json& line) {
  metrics_ << line.dump() << '\n';
  metrics_.flush();
  if (!metrics_) throw Error("cannot write " + (dir_ / "metrics.jsonl").string() + ": " + std::strerror(errno));
}

void RunOutput::append_stats(const nlohmann::json& line) {
  stats_ << line.dump() << '\n';
  stats_.flush();
  if (!stats_) throw Error("cannot write " + (dir_ / "stats.jsonl").string() + ": " + std::strerror(errno));
}

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
