#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "learndrop/core/config.h"

namespace ld::core {

class PluginHost;

/// One run of a suite: the matrix values it takes and its validated config.
struct SuiteRun {
  std::string label;  ///< Matrix values joined, e.g. "vgg11_bn.learn-drop.1".
  /// Matrix assignments, dotted key -> YAML scalar, in axis order.
  std::vector<std::pair<std::string, std::string>> values;
  RunConfig config;            ///< Base + `set` + values, validated.
  std::string hash;            ///< config.hash()
  bool is_baseline = false;    ///< Its values match `baseline` on every baseline key.
  std::string baseline_hash;   ///< Hash of the same run with the baseline values ("" without baseline).
  std::string effective_yaml;  ///< config.effective_yaml()
};

/// A suite file: a base config, a matrix of values, excludes and a baseline.
///
/// ```yaml
/// base: ../quickstart.yaml        # path (relative to this file) or an inline mapping
/// output: ../../runs/my-suite     # relative to this file
/// set: {train.epochs: 3}          # optional: fixed overrides of every run
/// matrix:                         # cartesian product, in this order
///   model.variant: [vgg11_bn, vgg16_bn]
///   data:                         # a named axis: each value sets several keys
///     - {label: mnist, dataset.plugin: mnist, dataset.train_limit: 4000}
///   policy.plugin: [none, learn-drop]
///   experiment.seed: [1, 2]
/// exclude:                        # optional: runs matching every listed key
///   - {model.variant: vgg16_bn, experiment.seed: 2}
/// baseline: {policy.plugin: none} # the values that mean full training
/// budget: time                    # optional: also train each baseline cut to
///                                 # each paired run's training time (or flops)
/// ```
struct Suite {
  std::string file;
  std::string name;  ///< The file's stem.
  std::filesystem::path output;
  std::vector<SuiteRun> runs;
  std::map<std::string, std::string> baseline;
  std::size_t excluded = 0;  ///< Matrix points left out by `exclude`.
  /// Budget-matched baselines: "" (none), "time" (training seconds) or
  /// "flops" (forward FLOPs). For every run with a baseline, a full training
  /// whose train.epochs is the baseline's scaled by run / baseline.
  std::string budget;
};

/// The epochs of a budget-matched baseline: `epochs` x `run` / `full`
/// (training seconds or forward FLOPs of the paired run and of its
/// baseline), rounded to the nearest epoch, within [1, epochs].
std::int64_t budget_epochs(std::int64_t epochs, double run, double full);

/// The budget-matched baseline of `baseline` (a run of `suite`) cut to
/// `epochs`: its config with train.epochs replaced (the learning-rate
/// schedule follows the new length), labelled "<baseline label>.budget<E>".
/// For a stream, `epochs` are the epochs after each arrival (stream.epochs).
SuiteRun budget_run(const SuiteRun& baseline, std::int64_t epochs);

/// Loads, expands and validates a suite (every run's config is resolved, so a
/// bad value stops the suite before anything runs). Throws ld::Error naming
/// the file and key.
Suite load_suite(const std::string& file, const PluginHost& host);

/// The plugin paths of a suite's base config (to load before load_suite).
std::vector<std::string> suite_plugin_paths(const std::string& file);

}  // namespace ld::core
