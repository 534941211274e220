#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "learndrop/core/config.h"

namespace ld::core {

class PluginHost;

/// How `ldrop run` presents a run.
struct RunOptions {
  std::string out_dir;   ///< Run folder; created if missing.
  bool progress = true;  ///< Print per-epoch progress lines (and a live line on a terminal).
  /// Go on with the run in `out_dir` from its checkpoint (ldrop run
  /// --resume): the config must hash as the run's did.
  bool resume = false;
};

/// Trains the model of `config` with its policy, writing config.yaml,
/// metrics.jsonl, summary.json and model.pt to `options.out_dir`. Returns the
/// summary. Throws ld::Error on bad input or a failing plugin, and
/// Interrupted on SIGINT/SIGTERM (naming the checkpoint it wrote, if any).
nlohmann::json run_training(const RunConfig& config, const PluginHost& host, const RunOptions& options);

}  // namespace ld::core
