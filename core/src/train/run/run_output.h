#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>
#include <fstream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "learndrop/core/files.h"

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
  /// Where a resumed run goes on: the sizes its checkpoint recorded.
  struct Resume {
    std::int64_t metrics_bytes = 0, stats_bytes = 0;
  };

  /// Creates the folder (and parents). Throws ld::Error naming it. With
  /// `resume`, metrics.jsonl and stats.jsonl are cut back to the lines the
  /// checkpoint had seen (lines of the interrupted part are written again,
  /// never twice); a file shorter than that is an error naming it.
  /// The folder is locked while this object lives: a second run in it (in
  /// this or another process) is refused with the holder's process id.
  explicit RunOutput(std::filesystem::path dir, const Resume* resume = nullptr);
  ~RunOutput();
  RunOutput(const RunOutput&) = delete;
  RunOutput& operator=(const RunOutput&) = delete;

  /// Bytes written so far to metrics.jsonl and stats.jsonl (a checkpoint records them).
  Resume sizes() const;

  /// Removes checkpoint/ and checkpoint.prev/ (a finished run, or a new run
  /// in the folder), and the cache files kept for them: those noted by
  /// note_kept_caches (wherever cache.dir put them) and kept files in cache/.
  /// The kept epoch checkpoints (checkpoints/, train.checkpoint_keep: all)
  /// stay: other runs branch from them. A new run in the folder removes them.
  void remove_checkpoints();

  /// Notes cache files kept for a resume (FeatureCache::retain) in the
  /// folder's `kept-caches` list, so that remove_checkpoints removes them
  /// too: outside the run folder, or of a checkpoint a resume passed over
  /// for checkpoint.prev, nothing else would.
  void note_kept_caches(const std::vector<std::filesystem::path>& files);

  const std::filesystem::path& dir() const { return dir_; }

  void write_config(const std::string& yaml);
  void append_metrics(const nlohmann::json& line);
  void append_stats(const nlohmann::json& line);
  void write_summary(const nlohmann::json& summary);
  void save_model(torch::nn::Module& model);

 private:
  /// Appends `line` to `out` (the folder's file `name`), flushed; counts its bytes in `written`.
  void append(std::ofstream& out, std::int64_t& written, const char* name, const nlohmann::json& line);

  void lock();

  std::filesystem::path dir_;
  std::unique_ptr<FileLock> lock_;
  std::ofstream metrics_;
  std::ofstream stats_;
  Resume written_;
};

}  // namespace ld::core
