// The ldrop command table: every subcommand with its options and what it
// does, in two phases with their own exit codes (commands.h, Command).

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <limits>
#include <memory>
#include <set>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "launch.h"
#include "learndrop/core/config.h"
#include "learndrop/core/interrupt.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/suite.h"
#include "learndrop/core/text.h"
#include "learndrop/core/run.h"
#include "learndrop/error.h"

namespace ld::cli {

namespace {

namespace fs = std::filesystem;

// Loads plugins (built-in, LEARNDROP_PLUGIN_PATH, then the config's
// plugins.paths) and validates the config against their manifests.
core::RunConfig prepare(core::PluginHost& host, const std::string& file, const std::vector<std::string>& sets) {
  core::ConfigTree tree = core::load_config(file);
  for (const auto& s : sets) core::apply_override(tree, s);
  host.load_standard_paths();
  for (const auto& p : core::plugin_paths(tree)) {
    try {
      host.load_path(p);
    } catch (const Error& e) {
      throw Error(file + ": plugins.paths: " + e.what());
    }
  }
  core::RunConfig cfg = core::resolve_config(tree, host);
  for (const auto& w : cfg.warnings) spdlog::warn("{}", w);
  return cfg;
}

std::string default_out_dir(const core::RunConfig& cfg) {
  return (fs::path("runs") / (cfg.name + "-" + cfg.hash().substr(0, 8))).string();
}


// A config file with --set overrides, validated in the input phase.
struct ConfigArgs {
  std::string file;
  std::vector<std::string> sets;
  core::RunConfig cfg;
  void add_to(CLI::App* sub) {
    sub->add_option("config", file, "YAML config file")->required();
    sub->add_option("--set", sets, "override a config key, e.g. --set train.epochs=3 (repeatable)");
  }
  int load(core::PluginHost& host) {
    cfg = prepare(host, file, sets);
    return kContinue;
  }
};

void add_model_options(CLI::App* sub, ModelSummaryArgs& a) {
  sub->add_option("--variant", a.variant, "e.g. vgg11_bn, resnet50")->required();
  sub->add_option("--stem", a.stem, "imagenet | cifar (resnet)")->check(CLI::IsMember({"imagenet", "cifar"}));
  sub->add_option("--input-size", a.input_size, "input height and width")->check(CLI::Range(1, 4096));
  sub->add_option("--in-channels", a.in_channels, "input channels")->check(CLI::Range(1, 4096));
  sub->add_option("--num-classes", a.num_classes, "classes")->check(CLI::Range(1, 1000000));
  sub->add_option("--width", a.width, "channel multiplier");
  sub->add_option("--option", a.options, "another model key as KEY=VALUE, e.g. classifier=compact");
}

// Loads the built-in plugins and LEARNDROP_PLUGIN_PATH, then calls `f`.
template <typename F>
std::function<int(core::PluginHost&)> with_plugins(F f) {
  return [f](core::PluginHost& host) {
    host.load_standard_paths();
    return f(host);
  };
}

// "section.key" -> value text of an effective config.
std::map<std::string, std::string> flatten(const std::string& yaml) {
  std::map<std::string, std::string> out;
  const YAML::Node root = YAML::Load(yaml);
  for (const auto& section : root) {
    for (const auto& key : section.second) {
      std::string text = YAML::Dump(key.second);
      // Numbers as their shortest exact form (0.05, not 0.050000000000000003).
      try {
        std::size_t used = 0;
        const double v = std::stod(text, &used);
        if (used == text.size()) text = nlohmann::json(v).dump();
      } catch (const std::exception&) {
      }
      out[section.first.as<std::string>() + "." + key.first.as<std::string>()] = text;
    }
  }
  return out;
}

// The keys whose values differ between two effective configs, as
// "key: old -> new" (at most 8 named).
std::string changed_keys(const std::string& before, const std::string& after) {
  const auto a = flatten(before), b = flatten(after);
  std::set<std::string> keys;
  for (const auto& kv : a) keys.insert(kv.first);
  for (const auto& kv : b) keys.insert(kv.first);
  std::string text;
  std::size_t n = 0;
  for (const auto& k : keys) {
    auto ia = a.find(k), ib = b.find(k);
    const std::string va = ia == a.end() ? "(absent)" : ia->second, vb = ib == b.end() ? "(absent)" : ib->second;
    if (va == vb) continue;
    if (n++ < 8) text += (text.empty() ? "" : ", ") + k + ": " + va + " -> " + vb;
  }
  if (n > 8) text += ", and " + std::to_string(n - 8) + " more";
  return text;
}

// ldrop run [CONFIG] [--resume RUN_DIR]: the config file, or the run folder's
// config.yaml; a config given with --resume must hash as the run's did.
struct RunArgs {
  std::string file, resume, out_dir, branch_from;
  std::int64_t branch_epoch = -1;
  bool branch_or_start = false;
  std::vector<std::string> sets;
  bool quiet = false;
  int nproc = 1;
  core::RunConfig cfg;

  int load(core::PluginHost& host) {
    if (nproc > 1 && !resume.empty()) {
      throw Error("--nproc with --resume: distributed runs do not write checkpoints yet (docs/distributed.md)");
    }
    if (!branch_from.empty() && !resume.empty()) {
      throw Error("--branch-from with --resume: a resumed run goes on from its own checkpoint");
    }
    if (!branch_from.empty() && nproc > 1) {
      throw Error("--branch-from with --nproc: data-parallel runs do not branch (they write no checkpoints yet)");
    }
    if (branch_from.empty() && (branch_epoch >= 0 || branch_or_start)) {
      throw Error(std::string(branch_epoch >= 0 ? "--branch-epoch" : "--branch-or-start") +
                  " without --branch-from REF_RUN_DIR");
    }
    if (resume.empty()) {
      if (file.empty()) throw Error("run: a config file is needed (or --resume RUN_DIR)");
      cfg = prepare(host, file, sets);
      // Before any rank is spawned (it was refused by each rank).
      if (nproc > 1 && cfg.stream.enabled()) {
        throw Error("--nproc " + std::to_string(nproc) + " with stream.parts " + std::to_string(cfg.stream.parts) +
                    ": data-parallel runs of a stream are not built (run it in one process)");
      }
      return kContinue;
    }
    const fs::path saved = fs::path(resume) / "config.yaml";
    if (!fs::is_directory(resume)) throw Error("--resume " + resume + ": no such run folder");
    if (!fs::exists(saved))
      throw Error("--resume " + resume + ": " + saved.string() + " is missing (not a run folder)");
    if (!out_dir.empty() && fs::weakly_canonical(out_dir) != fs::weakly_canonical(resume)) {
      throw Error("--out " + out_dir + " with --resume " + resume + ": a resumed run stays in its folder");
    }
    if (file.empty()) {
      cfg = prepare(host, saved.string(), sets);
      return kContinue;
    }
    core::PluginHost run_host;
    const core::RunConfig before = prepare(run_host, saved.string(), {});
    cfg = prepare(host, file, sets);
    if (cfg.hash() != before.hash()) {
      throw Error("--resume " + resume + ": " + file + " is not the config of that run (hash " + cfg.hash() +
                  ", the run's " + before.hash() +
                  "); changed: " + changed_keys(before.identity_yaml(), cfg.identity_yaml()));
    }
    return kContinue;
  }
};

void add_run(CLI::App& app, std::vector<Command>& out) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* run = app.add_subcommand("run", "train a model as the config says, or resume an interrupted run");
  run->add_option("config", args->file, "YAML config file (with --resume: optional, must match the run's)");
  run->add_option("--set", args->sets, "override a config key, e.g. --set train.epochs=3 (repeatable)");
  run->add_option("--out", args->out_dir, "run folder (default runs/<experiment.name>-<config hash>)");
  run->add_option("--resume", args->resume,
                  "go on with the interrupted run in RUN_DIR from its checkpoint (docs/checkpoints.md)");
  run->add_option("--branch-from", args->branch_from,
                  "start from a kept epoch checkpoint of the run in REF_RUN_DIR, before this run's first drop: the "
                  "configs may differ only in the policy section (docs/suites.md)");
  run->add_option("--branch-epoch", args->branch_epoch,
                  "with --branch-from: the epoch to branch at (default: the latest before the first drop)")
      ->check(CLI::Range(std::int64_t{1}, std::numeric_limits<std::int64_t>::max()));
  run->add_flag("--branch-or-start", args->branch_or_start,
                "with --branch-from: if the run cannot branch, say why and train from the start (suites do)");
  run->add_flag("--quiet", args->quiet, "no per-epoch progress lines");
  run->add_option("--nproc", args->nproc,
                  "train data-parallel on N local ranks (c10d Gloo; rank r > 0 logs to RUN_DIR/ranks/r/; "
                  "docs/distributed.md)")
      ->check(CLI::Range(1, 256));
  out.push_back({run, [args](core::PluginHost& host) { return args->load(host); },
                 [args](core::PluginHost& host) {
                   core::RunOptions options;
                   options.out_dir = !args->resume.empty()   ? args->resume
                                     : args->out_dir.empty() ? default_out_dir(args->cfg)
                                                             : args->out_dir;
                   options.progress = !args->quiet;
                   options.resume = !args->resume.empty();
                   options.branch_from = args->branch_from;
                   options.branch_epoch = args->branch_epoch;
                   options.branch_or_start = args->branch_or_start;
                   core::install_interrupt_handlers();
                   if (args->nproc > 1) {
                     return launch_local_ranks(args->nproc, options.out_dir, args->cfg.dist_timeout);
                   }
                   core::run_training(args->cfg, host, options);
                   std::printf("results in %s (summary.json, metrics.jsonl, model.pt, config.yaml)\n",
                               options.out_dir.c_str());
                   return 0;
                 }});

  auto checked = std::make_shared<ConfigArgs>();
  CLI::App* check = app.add_subcommand(
      "check", "validate a config, print the effective config, and create its dataset, model and policy as a run would");
  checked->add_to(check);
  out.push_back({check, [checked](core::PluginHost& host) { return checked->load(host); },
                 [checked](core::PluginHost& host) { return check_config(host, checked->cfg); }});
}

void add_keys(CLI::App& app, std::vector<Command>& out) {
  CLI::App* sub = app.add_subcommand(
      "keys", "the host's config keys as a Markdown table (docs/config.md holds it; plugins' keys: plugins describe)");
  out.push_back({sub, [](core::PluginHost&) { return kContinue; }, [](core::PluginHost&) {
                   std::cout << core::host_keys_markdown();
                   return 0;
                 }});
}

void add_export(CLI::App& app, std::vector<Command>& out) {
  auto args = std::make_shared<ExportArgs>();
  auto cfg = std::make_shared<core::RunConfig>();
  CLI::App* sub = app.add_subcommand("export", "write a finished run's model for use outside LearnDrop");
  sub->add_option("run_dir", args->run_dir, "run folder (with model.pt and config.yaml)")->required();
  sub->add_option("--format", args->format, "torchvision: a state dict with torchvision's parameter names")
      ->check(CLI::IsMember({"torchvision"}));
  sub->add_option("--out", args->out, "output file (default RUN_DIR/model.torchvision.pt)");
  sub->add_option("--probe", args->probe,
                  "also write N random inputs and LearnDrop's logits on them (OUT.probe.pt) for "
                  "tools/export/check_torchvision.py")
      ->check(CLI::Range(0, 100000));
  out.push_back({sub,
                 [args, cfg](core::PluginHost& host) {
                   const fs::path saved = fs::path(args->run_dir) / "config.yaml";
                   if (!fs::exists(saved)) throw Error("export: " + saved.string() + " is missing (not a run folder)");
                   *cfg = prepare(host, saved.string(), {});
                   return kContinue;
                 },
                 [args, cfg](core::PluginHost& host) { return export_run(host, *cfg, *args); }});
}

void add_compare(CLI::App& app, std::vector<Command>& out) {
  auto baseline = std::make_shared<std::string>();
  auto compared = std::make_shared<std::vector<std::string>>();
  CLI::App* compare =
      app.add_subcommand("compare", "compare finished runs with a baseline run (time, FLOPs, accuracy)");
  compare->add_option("baseline", *baseline, "run folder of the baseline (e.g. policy none)")->required();
  compare->add_option("runs", *compared, "run folders to compare with it")->required();
  out.push_back({compare, [baseline, compared](core::PluginHost&) { return compare_runs(*baseline, *compared); }, {}});
}

void add_model(CLI::App& app, std::vector<Command>& out) {
  CLI::App* model = app.add_subcommand("model", "inspect model plugins");
  model->require_subcommand(1);

  auto summary_args = std::make_shared<ModelSummaryArgs>();
  CLI::App* summary = model->add_subcommand("summary", "stages with output shape, parameters and forward FLOPs");
  add_model_options(summary, *summary_args);
  summary->add_flag("--json", summary_args->json, "print JSON");
  out.push_back({summary, with_plugins([summary_args](core::PluginHost& host) {
                   return model_summary(host, *summary_args);
                 }),
                 {}});

  auto bench_args = std::make_shared<ModelSummaryArgs>();
  auto bench_settings = std::make_shared<ModelBenchSettings>();
  CLI::App* bench =
      model->add_subcommand("bench", "training images/s of a model on random data (SGD, channels-last)");
  add_model_options(bench, *bench_args);
  ModelBenchSettings& b = *bench_settings;
  bench->add_option("--batch", b.batch, "batch size")->check(CLI::Range(2, 1 << 20));
  bench->add_option("--steps", b.steps, "timed steps (after 3 warm-up steps)")->check(CLI::Range(1, 1 << 20));
  bench->add_option("--threads", b.threads, "intra-op threads")->check(CLI::Range(1, 1024));
  bench->add_option("--device", b.device, "auto | cpu | cuda | cuda:N (default cpu)");
  bench->add_option("--precision", b.precision, "fp32 | bf16 | fp16 (autocast)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  bench->add_option("--tier", b.tier,
                    "where a cut's cached batch lives: device (its memory) | host (copied through pinned staging "
                    "buffers each step, as the ram and disk caches feed a GPU)")
      ->check(CLI::IsMember({"device", "host"}));
  bench->add_flag("--cuts", b.all_cuts,
                  "time a training step from every cut (stages before it dropped) against the full model");
  bench->add_option("--cut", b.cuts, "time a training step from this cut (repeatable)");
  bench->add_option("--build-batch", b.build_batch,
                    "samples per forward pass of a cut's cache build (default: as a run builds, the training batch "
                    "but at least 256)")
      ->check(CLI::Range(0, 1 << 20));
  out.push_back({bench, with_plugins([bench_args, bench_settings](core::PluginHost& host) {
                   return model_bench(host, *bench_args, *bench_settings);
                 }),
                 {}});
}

void add_data(CLI::App& app, std::vector<Command>& out) {
  CLI::App* data = app.add_subcommand("data", "inspect dataset plugins");
  data->require_subcommand(1);
  auto config = std::make_shared<ConfigArgs>();
  auto threads = std::make_shared<int>(1);
  auto samples = std::make_shared<std::int64_t>(0);
  CLI::App* bench =
      data->add_subcommand("bench", "training samples/s of a config's dataset (decode + transform + batch)");
  config->add_to(bench);
  bench->add_option("--threads", *threads, "loader threads")->check(CLI::Range(1, 1024));
  bench->add_option("--samples", *samples, "samples to load (default one epoch)")->check(CLI::Range(0, 1 << 30));
  out.push_back({bench, [config](core::PluginHost& host) { return config->load(host); },
                 [config, threads, samples](core::PluginHost& host) {
                   return data_bench(host, config->cfg, *threads, *samples);
                 }});
}

void add_policy(CLI::App& app, std::vector<Command>& out) {
  CLI::App* policy = app.add_subcommand("policy", "drop criteria on recorded runs");
  policy->require_subcommand(1);
  auto args = std::make_shared<ReplayArgs>();
  CLI::App* replay = policy->add_subcommand(
      "replay",
      "feed a run's recorded evaluation points (stats.jsonl) to a policy, with the host's cost guard: where it would "
      "first drop, and the predicted speedup (docs/replay.md)");
  replay->add_option("runs", args->runs, "run folders (several: the mean and spread over them)")->required();
  replay->add_option("--policy", args->policy, "policy plugin (default: the run's own, with its options)");
  replay->add_option("--set", args->sets, "a policy key for every setting, e.g. --set policy.threshold=0.3");
  replay->add_option("--grid", args->grid,
                     "a policy key's values, one setting each, e.g. --grid policy.threshold=0.3,0.5,0.7 "
                     "(repeatable: every combination)");
  replay->add_flag("--json", args->json, "the results as JSON");
  out.push_back({replay, with_plugins([](core::PluginHost&) { return kContinue; }),
                 [args](core::PluginHost& host) { return policy_replay(host, *args); }});
}

void add_cache(CLI::App& app, std::vector<Command>& out) {
  CLI::App* cache = app.add_subcommand("cache", "plan feature caches");
  cache->require_subcommand(1);
  auto config = std::make_shared<ConfigArgs>();
  auto json = std::make_shared<bool>(false);
  CLI::App* plan = cache->add_subcommand("plan", "per cut: bytes per sample, cache size and forward FLOPs saved");
  config->add_to(plan);
  plan->add_flag("--json", *json, "print JSON");
  out.push_back({plan, [config](core::PluginHost& host) { return config->load(host); },
                 [config, json](core::PluginHost& host) {
                   return cache_plan(host, config->cfg, default_out_dir(config->cfg), *json);
                 }});

  auto args = std::make_shared<CacheBenchArgs>();
  CacheBenchArgs& a = *args;
  CLI::App* bench = cache->add_subcommand("bench", "write and shuffled-read bandwidth of a cache, page cache dropped");
  bench->add_option("--dir", a.dir, "folder for the cache file")->required();
  bench->add_option("--plugin", a.plugin, "cache plugin");
  bench->add_option("--rows", a.rows, "rows (samples)")->check(CLI::Range(1, 1 << 30));
  bench->add_option("--row-bytes", a.row_bytes, "bytes per row")->check(CLI::Range(4, 1 << 30));
  bench->add_option("--batch", a.batch, "rows per batch")->check(CLI::Range(1, 1 << 20));
  bench->add_option("--prefetch", a.prefetch, "batches read ahead")->check(CLI::Range(1, 256));
  bench->add_option("--threads", a.threads, "threads")->check(CLI::Range(1, 1024));
  bench->add_option("--epochs", a.epochs, "read passes (best reported)")->check(CLI::Range(1, 1000));
  out.push_back({bench, with_plugins([args](core::PluginHost& host) { return cache_bench(host, *args); }), {}});
}

// Loads the plugins a suite's base config names (not for a .db report input).
void load_suite_plugins(core::PluginHost& host, const std::string& file) {
  host.load_standard_paths();
  if (fs::path(file).extension() != ".db") {
    for (const auto& p : core::suite_plugin_paths(file)) host.load_path(p);
  }
}

void add_suite(CLI::App& app, std::vector<Command>& out) {
  CLI::App* suite = app.add_subcommand("suite", "run experiment suites and report their results");
  suite->require_subcommand(1);
  auto args = std::make_shared<SuiteRunArgs>();
  CLI::App* run = suite->add_subcommand("run", "run a suite's matrix, skipping runs already finished");
  run->add_option("suite", args->file, "suite YAML file")->required();
  run->add_option("--jobs", args->jobs, "runs at once (set runtime.threads so jobs x threads <= cores)")
      ->check(CLI::Range(1, 256));
  run->add_flag("--dry-run", args->dry_run, "print the plan only");
  run->add_flag("--stop-on-failure", args->stop_on_failure, "start no new run after a failure");
  run->add_flag("--no-share", args->no_share,
                "train every run from its start (by default a run that differs from its baseline only in the "
                "policy branches from the baseline's checkpoint before its first drop: docs/suites.md)");
  out.push_back({run,
                 [args](core::PluginHost& host) {
                   load_suite_plugins(host, args->file);
                   core::load_suite(args->file, host);  // a bad suite stops here, before anything runs
                   return kContinue;
                 },
                 [args](core::PluginHost& host) { return suite_run(host, *args); }});

  auto input = std::make_shared<std::string>();
  auto report_out = std::make_shared<std::string>();
  CLI::App* report = suite->add_subcommand("report", "Markdown table, CSV and plots from a suite's results.db");
  report->add_option("input", *input, "suite YAML file or results.db")->required();
  report->add_option("--out", *report_out, "report folder (default <output>/report)");
  out.push_back({report,
                 [input, report_out](core::PluginHost& host) {
                   load_suite_plugins(host, *input);
                   return suite_report(host, *input, *report_out);
                 },
                 {}});
}

void add_plugins(CLI::App& app, std::vector<Command>& out) {
  CLI::App* plugins = app.add_subcommand("plugins", "list and describe the available plugins");
  plugins->require_subcommand(1);
  auto json = std::make_shared<bool>(false);
  CLI::App* list = plugins->add_subcommand("list", "every loaded plugin with its kind, version and description");
  list->add_flag("--json", *json, "print JSON");
  out.push_back({list, with_plugins([json](core::PluginHost& host) { return plugins_list(host, *json); }), {}});
  auto name = std::make_shared<std::string>();
  CLI::App* describe = plugins->add_subcommand("describe", "a plugin's manifest and config keys");
  describe->add_option("name", *name, "plugin name")->required();
  describe->add_flag("--json", *json, "print JSON");
  out.push_back({describe, with_plugins([name, json](core::PluginHost& host) {
                   return plugins_describe(host, *name, *json);
                 }),
                 {}});
}

}  // namespace

std::vector<Command> register_commands(CLI::App& app) {
  std::vector<Command> commands;
  add_run(app, commands);
  add_compare(app, commands);
  add_export(app, commands);
  add_model(app, commands);
  add_data(app, commands);
  add_cache(app, commands);
  add_policy(app, commands);
  add_suite(app, commands);
  add_plugins(app, commands);
  add_keys(app, commands);
  return commands;
}

int refuse_unknown_command(CLI::App& app, int argc, char** argv) {
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
                   core::did_you_mean(word, names).c_str(), core::quoted_list(names).c_str());
      return kBadInput;
    }
    level = next;
  }
  return 0;
}

// An error's first line for the user: nlohmann's "[json.exception.type_error.302] "
// tags name the library's internals, not the file or key (those come before).
static std::string for_user(const std::string& what) {
  std::string text = core::first_line(what);
  for (std::size_t at; (at = text.find("[json.exception.")) != std::string::npos;) {
    const std::size_t end = text.find("] ", at);
    if (end == std::string::npos) break;
    text.erase(at, end + 2 - at);
  }
  return text;
}

int run_command(const std::vector<Command>& commands) {
  const Command* chosen = nullptr;
  for (const auto& c : commands) {
    if (c.sub->parsed()) chosen = &c;
  }
  if (chosen == nullptr) return kBadInput;  // CLI11 requires a subcommand; not reached
  core::PluginHost host;
  int code = kContinue;
  try {
    code = chosen->input(host);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", for_user(e.what()).c_str());
    return kBadInput;
  }
  if (code != kContinue || !chosen->run) return code;
  try {
    return chosen->run(host);
  } catch (const core::Interrupted& e) {
    std::fflush(stdout);
    if (e.twice()) {
      std::fprintf(stderr,
                   "\nerror: %s; stopped without a new checkpoint, temporary files removed, no summary written (the "
                   "run folder's last checkpoint, if it has one, still resumes)\n",
                   e.what());
    } else if (e.checkpoint().empty()) {
      std::fprintf(stderr, "\nerror: %s; stopped, temporary files removed, no summary written\n", e.what());
    } else {
      std::fprintf(stderr, "\nerror: %s; stopped, %s\n", e.what(), e.checkpoint().c_str());
    }
    return 128 + e.signal();
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", for_user(e.what()).c_str());
    return kFailed;
  }
}

}  // namespace ld::cli
