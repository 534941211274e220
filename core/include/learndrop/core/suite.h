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
  /// Matrix values joined, e.g. "vgg11_bn.learn-drop.1"; in a suite with
  /// stages, after the stage's name ("finetune.vgg11_bn.learn-drop.1").
  std::string label;
  /// Matrix assignments, dotted key -> YAML scalar, in axis order.
  std::vector<std::pair<std::string, std::string>> values;
  RunConfig config;            ///< Base + `set` + values, validated.
  std::string hash;            ///< config.hash()
  bool is_baseline = false;    ///< Its values match `baseline` on every baseline key.
  std::string baseline_hash;   ///< Hash of the same run with the baseline values ("" without baseline).
  std::string effective_yaml;  ///< config.effective_yaml()
  std::size_t stage = 0;       ///< Index into Suite::stages.
  /// Each matrix axis and the label of the value this run takes.
  std::vector<std::pair<std::string, std::string>> axes;
  /// Runs of earlier stages this run's config refers to ("@stage"), by
  /// index into Suite::runs: it starts once they have finished.
  std::vector<std::size_t> needs;
};

/// One stage of a suite (a suite without `stages:` has one, unnamed): its
/// baseline and the baselines it compares with.
struct SuiteStage {
  std::string name;
  std::map<std::string, std::string> baseline;
  std::string budget;  ///< "", "time" or "flops" (see Suite).
  /// Further baselines of every run with a baseline: "freeze" (the first K
  /// stages frozen from the start, K chosen to match the run's time) and
  /// "probe" (every stage frozen: the head alone).
  std::vector<std::string> compare;
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
/// compare: [freeze, probe]        # optional: further baselines (SuiteStage)
/// ```
///
/// Or a sequence of stages, each a suite of the form above (without
/// `output`), whose configs may refer to an earlier stage's run with the
/// value "@<stage name>" (e.g. model.weights: "@pretrain"): the run of that
/// stage whose matrix labels agree on the axes both stages have.
///
/// ```yaml
/// output: ../../runs/transfer
/// stages:
///   - {name: pretrain, base: pretrain.yaml, matrix: {...}}
///   - {name: finetune, base: finetune.yaml, set: {model.weights: "@pretrain"}, matrix: {...}}
/// ```
struct Suite {
  std::string file;
  std::string name;  ///< The file's stem.
  std::filesystem::path output;
  std::vector<SuiteRun> runs;
  std::vector<SuiteStage> stages;  ///< At least one.
  std::size_t excluded = 0;        ///< Matrix points left out by `exclude`.
};

/// The run folder of `run`: <output>/runs/<label>-<first 8 of its hash>.
std::filesystem::path run_folder(const Suite& suite, const SuiteRun& run);

/// The baseline `baseline` with its first `stages` frozen from the start
/// (model.freeze; "all" = a linear probe), labelled "<label>.freeze<K>" or
/// "<label>.probe".
SuiteRun freeze_run(const SuiteRun& baseline, const std::string& stages);

/// The number of leading stages K whose fixed freezing (frozen from the start,
/// running forward only) costs closest to `ratio` of full training per image,
/// with forward FLOPs `stage_flops` and `head_flops` (the cost model of
/// drop_cost.h: 3x the FLOPs of a trained stage, 1x of a frozen one); K < n.
std::size_t freeze_stages_for(double ratio, const std::vector<std::int64_t>& stage_flops, std::int64_t head_flops);

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
