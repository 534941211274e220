// ldrop: the LearnDrop command line.

#include <cstdio>
#include <filesystem>
#include <iostream>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "commands.h"
#include "learndrop/core/config.h"
#include "learndrop/core/interrupt.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/text.h"
#include "learndrop/core/suite.h"
#include "learndrop/core/trainer.h"
#include "learndrop/error.h"

namespace {

namespace fs = std::filesystem;

// Exit codes: 0 success, 1 a failure while running, 2 bad input (usage, config).
constexpr int kFailed = 1;
constexpr int kBadInput = 2;

// Loads plugins (built-in, LEARNDROP_PLUGIN_PATH, then the config's
// plugins.paths) and validates the config against their manifests.
ld::core::RunConfig prepare(ld::core::PluginHost& host, const std::string& file, const std::vector<std::string>& sets) {
  ld::core::ConfigTree tree = ld::core::load_config(file);
  for (const auto& s : sets) ld::core::apply_override(tree, s);
  host.load_standard_paths();
  for (const auto& p : ld::core::plugin_paths(tree)) {
    try {
      host.load_path(p);
    } catch (const ld::Error& e) {
      throw ld::Error(file + ": plugins.paths: " + e.what());
    }
  }
  ld::core::RunConfig cfg = ld::core::resolve_config(tree, host);
  for (const auto& w : cfg.warnings) spdlog::warn("{}", w);
  return cfg;
}

// The first line of an exception message (LibTorch appends a backtrace).
std::string first_line(const char* what) {
  std::string s(what);
  return s.substr(0, s.find('\n'));
}

std::string default_out_dir(const ld::core::RunConfig& cfg) {
  return (fs::path("runs") / (cfg.name + "-" + cfg.hash().substr(0, 8))).string();
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  CLI::App app{"LearnDrop: faster CNN training by dropping layers that stopped learning"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "ldrop 0.1.0");

  std::string config_file, out_dir, plugin_name;
  std::vector<std::string> sets;
  bool quiet = false, json = false;

  auto* run = app.add_subcommand("run", "train a model as the config says");
  run->add_option("config", config_file, "YAML config file")->required();
  run->add_option("--set", sets, "override a config key, e.g. --set train.epochs=3 (repeatable)");
  run->add_option("--out", out_dir, "run folder (default runs/<experiment.name>-<config hash>)");
  run->add_flag("--quiet", quiet, "no per-epoch progress lines");

  auto* check = app.add_subcommand("check", "validate a config and print the effective config");
  check->add_option("config", config_file, "YAML config file")->required();
  check->add_option("--set", sets, "override a config key (repeatable)");

  std::string baseline;
  std::vector<std::string> compared;
  auto* compare = app.add_subcommand("compare", "compare finished runs with a baseline run (time, FLOPs, accuracy)");
  compare->add_option("baseline", baseline, "run folder of the baseline (e.g. policy none)")->required();
  compare->add_option("runs", compared, "run folders to compare with it")->required();

  ld::cli::ModelSummaryArgs summary_args;
  auto* model = app.add_subcommand("model", "inspect model plugins");
  model->require_subcommand(1);
  auto* summary = model->add_subcommand("summary", "stages with output shape, parameters and forward FLOPs");
  summary->add_option("--variant", summary_args.variant, "e.g. vgg11_bn, resnet50")->required();
  summary->add_option("--stem", summary_args.stem, "imagenet | cifar (resnet)")
      ->check(CLI::IsMember({"imagenet", "cifar"}));
  summary->add_option("--input-size", summary_args.input_size, "input height and width")->check(CLI::Range(1, 4096));
  summary->add_option("--in-channels", summary_args.in_channels, "input channels")->check(CLI::Range(1, 4096));
  summary->add_option("--num-classes", summary_args.num_classes, "classes")->check(CLI::Range(1, 1000000));
  summary->add_option("--width", summary_args.width, "channel multiplier");
  summary->add_option("--option", summary_args.options, "another model key as KEY=VALUE, e.g. classifier=compact");
  summary->add_flag("--json", summary_args.json, "print JSON");

  ld::cli::ModelBenchSettings bench_settings;
  auto* bench = model->add_subcommand("bench", "training images/s of a model on random data (SGD, channels-last)");
  bench->add_option("--variant", summary_args.variant, "e.g. vgg11_bn, resnet18")->required();
  bench->add_option("--stem", summary_args.stem, "imagenet | cifar (resnet)")
      ->check(CLI::IsMember({"imagenet", "cifar"}));
  bench->add_option("--input-size", summary_args.input_size, "input height and width")->check(CLI::Range(1, 4096));
  bench->add_option("--in-channels", summary_args.in_channels, "input channels")->check(CLI::Range(1, 4096));
  bench->add_option("--num-classes", summary_args.num_classes, "classes")->check(CLI::Range(1, 1000000));
  bench->add_option("--width", summary_args.width, "channel multiplier");
  bench->add_option("--batch", bench_settings.batch, "batch size")->check(CLI::Range(2, 1 << 20));
  bench->add_option("--steps", bench_settings.steps, "timed steps (after 3 warm-up steps)")
      ->check(CLI::Range(1, 1 << 20));
  bench->add_option("--threads", bench_settings.threads, "intra-op threads")->check(CLI::Range(1, 1024));
  bench->add_option("--device", bench_settings.device, "auto | cpu | cuda | cuda:N (default cpu)");
  bench->add_option("--precision", bench_settings.precision, "fp32 | bf16 | fp16 (autocast)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  bench->add_option("--tier", bench_settings.tier,
                    "where a cut's cached batch lives: device (its memory) | host (copied through pinned staging "
                    "buffers each step, as the ram and disk caches feed a GPU)")
      ->check(CLI::IsMember({"device", "host"}));
  bench->add_flag("--cuts", bench_settings.all_cuts,
                  "time a training step from every cut (stages before it dropped) against the full model");
  bench->add_option("--cut", bench_settings.cuts, "time a training step from this cut (repeatable)");
  bench->add_option("--option", summary_args.options, "another model key as KEY=VALUE, e.g. classifier=compact");
  int data_threads = 1;
  std::int64_t data_samples = 0;
  auto* data = app.add_subcommand("data", "inspect dataset plugins");
  data->require_subcommand(1);
  auto* data_bench =
      data->add_subcommand("bench", "training samples/s of a config's dataset (decode + transform + batch)");
  data_bench->add_option("config", config_file, "YAML config file")->required();
  data_bench->add_option("--set", sets, "override a config key (repeatable)");
  data_bench->add_option("--threads", data_threads, "loader threads")->check(CLI::Range(1, 1024));
  data_bench->add_option("--samples", data_samples, "samples to load (default one epoch)")
      ->check(CLI::Range(0, 1 << 30));

  auto* cache = app.add_subcommand("cache", "plan feature caches");
  cache->require_subcommand(1);
  auto* cache_plan = cache->add_subcommand("plan", "per cut: bytes per sample, cache size and forward FLOPs saved");
  cache_plan->add_option("config", config_file, "YAML config file")->required();
  cache_plan->add_option("--set", sets, "override a config key (repeatable)");
  cache_plan->add_flag("--json", json, "print JSON");

  ld::cli::CacheBenchArgs cache_args;
  auto* cache_bench =
      cache->add_subcommand("bench", "write and shuffled-read bandwidth of a cache, page cache dropped");
  cache_bench->add_option("--dir", cache_args.dir, "folder for the cache file")->required();
  cache_bench->add_option("--plugin", cache_args.plugin, "cache plugin");
  cache_bench->add_option("--rows", cache_args.rows, "rows (samples)")->check(CLI::Range(1, 1 << 30));
  cache_bench->add_option("--row-bytes", cache_args.row_bytes, "bytes per row")->check(CLI::Range(4, 1 << 30));
  cache_bench->add_option("--batch", cache_args.batch, "rows per batch")->check(CLI::Range(1, 1 << 20));
  cache_bench->add_option("--prefetch", cache_args.prefetch, "batches read ahead")->check(CLI::Range(1, 256));
  cache_bench->add_option("--threads", cache_args.threads, "threads")->check(CLI::Range(1, 1024));
  cache_bench->add_option("--epochs", cache_args.epochs, "read passes (best reported)")->check(CLI::Range(1, 1000));

  ld::cli::SuiteRunArgs suite_args;
  std::string report_input, report_out;
  auto* suite = app.add_subcommand("suite", "run experiment suites and report their results");
  suite->require_subcommand(1);
  auto* suite_run = suite->add_subcommand("run", "run a suite's matrix, skipping runs already finished");
  suite_run->add_option("suite", suite_args.file, "suite YAML file")->required();
  suite_run->add_option("--jobs", suite_args.jobs, "runs at once (set runtime.threads so jobs x threads <= cores)")
      ->check(CLI::Range(1, 256));
  suite_run->add_flag("--dry-run", suite_args.dry_run, "print the plan only");
  suite_run->add_flag("--stop-on-failure", suite_args.stop_on_failure, "start no new run after a failure");
  auto* suite_report = suite->add_subcommand("report", "Markdown table, CSV and plots from a suite's results.db");
  suite_report->add_option("input", report_input, "suite YAML file or results.db")->required();
  suite_report->add_option("--out", report_out, "report folder (default <output>/report)");

  auto* plugins = app.add_subcommand("plugins", "list and describe the available plugins");
  plugins->require_subcommand(1);
  auto* list = plugins->add_subcommand("list", "every loaded plugin with its kind, version and description");
  list->add_flag("--json", json, "print JSON");
  auto* describe = plugins->add_subcommand("describe", "a plugin's manifest and config keys");
  describe->add_option("name", plugin_name, "plugin name")->required();
  describe->add_flag("--json", json, "print JSON");

  // An unknown command word (at the top or under a command group) is named,
  // with the closest command, instead of CLI11's "A subcommand is required".
  {
    CLI::App* level = &app;
    for (int i = 1; i < argc && !level->get_subcommands({}).empty(); ++i) {
      const std::string word = argv[i];
      if (word.empty() || word[0] == '-') break;
      std::vector<std::string> names;
      CLI::App* next = nullptr;
      for (CLI::App* sub : level->get_subcommands({})) {
        names.push_back(sub->get_name());
        if (sub->get_name() == word) next = sub;
      }
      if (next == nullptr) {
        const std::string where = level == &app ? "ldrop" : "ldrop " + level->get_name();
        std::fprintf(stderr, "error: %s: unknown command '%s'%s (commands: %s)\n", where.c_str(), word.c_str(),
                     ld::core::did_you_mean(word, names).c_str(), ld::core::quoted_list(names).c_str());
        return kBadInput;
      }
      level = next;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kBadInput;
  }

  ld::core::PluginHost host;
  ld::core::RunConfig cfg;
  try {
    if (*compare) return ld::cli::compare_runs(baseline, compared);
    if (*summary) {
      host.load_standard_paths();
      return ld::cli::model_summary(host, summary_args);
    }
    if (*bench) {
      host.load_standard_paths();
      return ld::cli::model_bench(host, summary_args, bench_settings);
    }
    if (*suite_run || *suite_report) {
      host.load_standard_paths();
      const std::string file = *suite_run ? suite_args.file : report_input;
      if (fs::path(file).extension() != ".db") {
        for (const auto& p : ld::core::suite_plugin_paths(file)) host.load_path(p);
      }
    }
    if (*suite_run) {
      ld::core::Suite plan = ld::core::load_suite(suite_args.file, host);  // bad input: exit 2
      (void)plan;
      try {
        return ld::cli::suite_run(host, suite_args);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", first_line(e.what()).c_str());
        return kFailed;
      }
    }
    if (*suite_report) return ld::cli::suite_report(host, report_input, report_out);
    if (*cache_bench) {
      host.load_standard_paths();
      return ld::cli::cache_bench(host, cache_args);
    }
    if (*plugins) {
      host.load_standard_paths();
      if (*list) return ld::cli::plugins_list(host, json);
      return ld::cli::plugins_describe(host, plugin_name, json);
    }
    cfg = prepare(host, config_file, sets);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", first_line(e.what()).c_str());
    return kBadInput;
  }
  if (*cache_plan) {
    try {
      return ld::cli::cache_plan(host, cfg, default_out_dir(cfg), json);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", first_line(e.what()).c_str());
      return kFailed;
    }
  }
  if (*data_bench) {
    try {
      return ld::cli::data_bench(host, cfg, data_threads, data_samples);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", first_line(e.what()).c_str());
      return kFailed;
    }
  }
  if (*check) {
    std::cout << cfg.effective_yaml();
    std::printf("# config hash %s\n", cfg.hash().c_str());
    return 0;
  }
  try {
    ld::core::RunOptions options;
    options.out_dir = out_dir.empty() ? default_out_dir(cfg) : out_dir;
    options.progress = !quiet;
    ld::core::install_interrupt_handlers();
    ld::core::run_training(cfg, host, options);
    std::printf("results in %s (summary.json, metrics.jsonl, model.pt, config.yaml)\n", options.out_dir.c_str());
  } catch (const ld::core::Interrupted& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "\nerror: %s; stopped, temporary files removed, no summary written\n", e.what());
    return 128 + e.signal();
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", first_line(e.what()).c_str());
    return kFailed;
  }
  return 0;
}
