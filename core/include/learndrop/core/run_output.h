#pragma once

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace torch::nn {
class Module;
}

namespace ld::core {

/// The files of one run folder: config.yaml (effective config),
/// metrics.jsonl (one line per epoch, flushed as it is written), stats.jsonl
/// (per-stage statistics and the policy's answer at every evaluation point),
/// summary.json and model.pt (both written under a temporary name and renamed).
class RunOutput {
 public:
  /// Creates the folder (and parents). Throws ld::Error naming it.
  explicit RunOutput(std::filesystem::path dir);

  const std::filesystem::path& dir() const { return dir_; }

  void write_config(const std::string& yaml);
  void append_metrics(const nlohmann::json& line);
  void append_stats(const nlohmann::json& line);
  void write_summary(const nlohmann::json& summary);
  void save_model(torch::nn::Module& model);

 private:
  std::filesystem::path dir_;
  std::ofstream metrics_;
  std::ofstream stats_;
};

}  // namespace ld::core
