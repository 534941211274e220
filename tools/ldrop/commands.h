#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace ld {
class StagedModel;
}

namespace ld::core {
class PluginHost;
struct RunConfig;
struct RunRecord;
}  // namespace ld::core

namespace ld::cli {

/// Exit codes: 0 success, 1 a failure while running, 2 bad input (usage,
/// config, plugins), 128 + signal when interrupted.
constexpr int kFailed = 1;
constexpr int kBadInput = 2;
/// What an input phase returns when the run phase should follow.
constexpr int kContinue = -1;

/// One ldrop command: its subcommand and two phases. `input` loads plugins
/// and checks the input; what it throws exits 2, and it returns an exit code
/// or kContinue. `run` (may be empty) does the work; what it throws exits 1.
struct Command {
  CLI::App* sub = nullptr;
  std::function<int(core::PluginHost&)> input;
  std::function<int(core::PluginHost&)> run;
};

/// Adds every subcommand with its options to `app` (registry.cpp).
std::vector<Command> register_commands(CLI::App& app);

/// Names an unknown command word with the closest one (exit 2), instead of
/// CLI11's "A subcommand is required"; 0 when every word is known.
int refuse_unknown_command(CLI::App& app, int argc, char** argv);

/// Runs the parsed command's phases with their exit codes.
int run_command(const std::vector<Command>& commands);

/// Arguments of `ldrop model summary`.
struct ModelSummaryArgs {
  std::string variant;
  std::string stem = "imagenet";
  std::int64_t input_size = 224;
  std::int64_t in_channels = 3;
  std::int64_t num_classes = 1000;
  std::string width = "1.0";
  std::vector<std::string> options;  ///< Further model keys as KEY=VALUE (e.g. classifier=compact).
  bool json = false;
};

/// `ldrop model summary`: one row per stage with output shape, parameters,
/// forward FLOPs and share, plus totals.
int model_summary(const core::PluginHost& host, const ModelSummaryArgs& args);

/// The model `args` describes (a model plugin whose `variant` key accepts it,
/// other keys at their defaults).
std::shared_ptr<StagedModel> create_summary_model(const core::PluginHost& host, const ModelSummaryArgs& args);

/// What `ldrop model bench` times.
struct ModelBenchSettings {
  std::int64_t batch = 128;
  std::int64_t steps = 20;
  int threads = 2;
  std::string device = "cpu";      ///< A runtime.device setting.
  std::string precision = "fp32";  ///< fp32 | bf16 | fp16
  std::string tier = "device";     ///< Where the cached batch lives at a cut: device | host (pinned staging).
  bool all_cuts = false;           ///< Every cut 1..stages-1.
  std::vector<std::size_t> cuts;   ///< These cuts.
  /// Samples per forward pass of a cut's build (0: as a run builds,
  /// DropSettings::build_batch_for(batch)).
  std::int64_t build_batch = 0;
};

/// `ldrop model bench`: training images/s of the model on random data; at
/// each requested cut, the step time when stages [0, cut) are dropped and
/// training starts from the cut's feature map (a cache row), against cut 0.
int model_bench(const core::PluginHost& host, const ModelSummaryArgs& args, const ModelBenchSettings& settings);

/// `ldrop data bench`: training samples/s of the config's dataset (decode,
/// transform, batch) with `threads` TBB and intra-op threads, over `samples`
/// samples (0 = one epoch).
int data_bench(const core::PluginHost& host, const core::RunConfig& cfg, int threads, std::int64_t samples);

/// `ldrop cache plan`: per possible cut, the bytes per sample, the cache
/// size for the training set and the forward FLOPs each epoch would save.
int cache_plan(const core::PluginHost& host, const core::RunConfig& cfg, const std::string& run_dir, bool json);

/// `ldrop check`: prints the effective config and its hash, then opens the
/// dataset and creates the model and the policy as a run would (a policy
/// file is read and its class built). Throws what a run would throw.
int check_config(const core::PluginHost& host, const core::RunConfig& cfg);

/// Arguments of `ldrop cache bench`.
struct CacheBenchArgs {
  std::string plugin = "disk";
  std::string dir;
  std::int64_t rows = 4096;
  std::int64_t row_bytes = 256 * 1024;
  std::int64_t batch = 128;
  std::int64_t prefetch = 4;
  int threads = 2;
  int epochs = 3;
};

/// `ldrop cache bench`: write and shuffled-read bandwidth of a cache plugin
/// with the page cache dropped (the reader alone, no training).
int cache_bench(const core::PluginHost& host, const CacheBenchArgs& args);

/// Arguments of `ldrop suite run`.
struct SuiteRunArgs {
  std::string file;
  int jobs = 1;
  bool dry_run = false;
  bool stop_on_failure = false;
  /// Train every run from its start, also those that could branch from their
  /// baseline's kept checkpoints (docs/suites.md, "Shared prefixes").
  bool no_share = false;
};

/// `ldrop suite run`: expands the suite, skips runs finished with this code
/// version, runs the rest as `ldrop run` children and records them in
/// <output>/results.db. Exit 0, 1 when a run failed, 128+signal when interrupted.
int suite_run(const core::PluginHost& host, const SuiteRunArgs& args);

/// The code version recorded with suite runs (git revision at build time).
const char* code_version();

/// One row of the suite report: a model, data set and policy against its baseline.
struct ReportRow {
  std::string model, dataset, setting, policy;
  std::size_t seeds = 0;
  double acc_full = 0, acc_full_std = 0, acc = 0, acc_std = 0, time_full = 0, time = 0, speedup = 0,
         flops_reduction = 0, dropped = 0;
  /// Budget-matched baselines (seeds with one; 0 when the suite has none).
  std::size_t budget_seeds = 0;
  double acc_budget = 0, acc_budget_std = 0, budget_epochs = 0;
  std::int64_t stages = 0;
  /// The drop runs timed against their own full-training epochs (seeds with a value).
  std::size_t self_seeds = 0;
  double self_speedup = 0, self_speedup_std = 0;
  /// Fixed partial freezing matched to the run's time, and a linear probe (seeds with one).
  std::size_t freeze_seeds = 0, probe_seeds = 0;
  double acc_freeze = 0, acc_freeze_std = 0, freeze_stages = 0, acc_probe = 0, acc_probe_std = 0;
  std::vector<std::string> text;  ///< The Markdown cells.
  /// Config hashes of the row's runs: full trainings, drop runs, budget-matched baselines, fixed freezing.
  std::vector<std::string> full_runs, drop_runs, budget_runs, freeze_runs;
};
struct ReportTable {
  std::vector<ReportRow> rows;
  std::vector<std::string> failed;
  bool has_budget = false;  ///< Whether any row has budget-matched baselines (adds two columns).
  bool has_freeze = false, has_probe = false;  ///< Whether any row has those baselines (a column each).
};

/// The report table of a database's runs (finished runs paired with their baselines).
ReportTable build_report(const std::vector<core::RunRecord>& records);

/// `ldrop suite report SUITE|DB [--out DIR]`: report.md, runs.csv and plots.
int suite_report(const core::PluginHost& host, const std::string& input, const std::string& out);

/// `ldrop plugins list [--json]`.
int plugins_list(const core::PluginHost& host, bool json);

/// `ldrop plugins describe NAME [--json]`.
int plugins_describe(const core::PluginHost& host, const std::string& name, bool json);

/// Arguments of `ldrop export`.
struct ExportArgs {
  std::string run_dir;
  std::string format = "torchvision";
  std::string out;         ///< default RUN_DIR/model.torchvision.pt
  std::int64_t probe = 0;  ///< inputs to write with LearnDrop's logits (OUT.probe.pt)
};

/// `ldrop export RUN_DIR --format torchvision`: model.pt with torchvision's
/// names, as a state dict `torch.load` reads (export_cmd.cpp).
int export_run(core::PluginHost& host, const core::RunConfig& cfg, const ExportArgs& args);

/// `ldrop compare BASELINE RUN...`: a table of runs against a baseline run.
int compare_runs(const std::string& baseline, const std::vector<std::string>& runs);

/// ldrop policy replay RUN_DIR... (policy_cmd.cpp).
struct ReplayArgs {
  std::vector<std::string> runs;
  std::string policy;              ///< "" = each run's own policy, with its options.
  std::vector<std::string> sets;   ///< policy.KEY=VALUE for every setting.
  std::vector<std::string> grid;   ///< policy.KEY=V1,V2,...: one setting per combination.
  bool json = false;
};
int policy_replay(const core::PluginHost& host, const ReplayArgs& args);

}  // namespace ld::cli
