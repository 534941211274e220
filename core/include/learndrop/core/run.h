#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "learndrop/core/config.h"

namespace ld::core {

class PluginHost;
class ProcessGroup;

/// How `ldrop run` presents a run.
struct RunOptions {
  std::string out_dir;   ///< Run folder; created if missing.
  bool progress = true;  ///< Print per-epoch progress lines (and a live line on a terminal).
  /// Go on with the run in `out_dir` from its checkpoint (ldrop run
  /// --resume): the config must hash as the run's did.
  bool resume = false;
  /// Start from a kept epoch checkpoint of this run folder (ldrop run
  /// --branch-from; docs/suites.md): a run whose config differs from it only
  /// in the policy section trains exactly as it did up to its own first drop.
  std::string branch_from;
  /// The epoch to branch at (-1: the latest the policy's replay allows).
  std::int64_t branch_epoch = -1;
  /// When the run cannot branch (no checkpoint before its first drop, no
  /// feature probe in the reference, ...): train from the start, saying why,
  /// instead of stopping with the error (suites).
  bool branch_or_start = false;
  /// A data-parallel run's group (run_training connects it from RANK,
  /// WORLD_SIZE, MASTER_ADDR, MASTER_PORT; docs/distributed.md); null alone.
  ProcessGroup* group = nullptr;
};

/// Why a run of `config` cannot branch from a run whose effective config is
/// `reference_yaml` (its config.yaml): the first key, outside the policy
/// section, experiment.name and the keys outside the config hash, whose
/// values differ, as "KEY (A there, B here)"; "" when none does.
std::string difference_outside_policy(const std::string& reference_yaml, const RunConfig& config);

/// Trains the model of `config` with its policy, writing config.yaml,
/// metrics.jsonl, summary.json and model.pt to `options.out_dir`. Returns the
/// summary. Throws ld::Error on bad input or a failing plugin, and
/// Interrupted on SIGINT/SIGTERM (naming the checkpoint it wrote, if any).
///
/// With WORLD_SIZE > 1 in the environment (ldrop run --nproc N, torchrun) it
/// is one rank of a data-parallel run: rank 0 writes `out_dir`, rank r > 0
/// writes only `out_dir`/ranks/r/.
nlohmann::json run_training(const RunConfig& config, const PluginHost& host, const RunOptions& options);

}  // namespace ld::core
