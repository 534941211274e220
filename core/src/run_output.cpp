#include "learndrop/core/run_output.h"

#include <cerrno>
#include <cstring>

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
  fs::path path = dir_ / "model.pt";
  atomic_write_with(path, [&](const std::string& tmp) {
    torch::serialize::OutputArchive archive;
    model.save(archive);
    try {
      archive.save_to(tmp);
    } catch (const std::exception& e) {
      throw Error("cannot write " + path.string() + ": " + e.what());
    }
  });
}

}  // namespace ld::core
