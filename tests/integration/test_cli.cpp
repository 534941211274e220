// The ldrop command line, run as a user would.
#include <gtest/gtest.h>

#include <torch/cuda.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "cifar_fixture.h"
#include "idx_fixture.h"
#include "test_env.h"

namespace {

using Result = ld::test::LdropResult;

Result ldrop(const std::string& args, const std::string& env = "") { return ld::test::run_ldrop(args, env); }

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    ld::test::write_idx_fixture(data_.str());
    config_ = (dir_.path() / "tiny.yaml").string();
    std::ofstream(config_) << ld::test::tiny_config(data_.str());
  }
  ld::test::TempDir data_, dir_;
  std::string config_;
};

}  // namespace

TEST_F(Cli, RunTrainsAndWritesTheRunFolder) {
  std::string out = (dir_.path() / "run").string();
  Result r = ldrop("run " + config_ + " --out " + out + " --set train.epochs=2");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("epoch   1/2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("epoch   2/2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("img/s"), std::string::npos) << r.output;
  std::ifstream in(out + "/summary.json");
  nlohmann::json summary = nlohmann::json::parse(in);
  EXPECT_EQ(summary["epochs"], 2);
  EXPECT_EQ(summary["dataset"], "mnist");
  std::ifstream cfg(out + "/config.yaml");
  std::string text((std::istreambuf_iterator<char>(cfg)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("epochs: 2"), std::string::npos) << text;
}

TEST_F(Cli, DataBenchMeasuresTheConfigsLoader) {
  Result r = ldrop("data bench " + config_ + " --threads 2 --samples 64 --set train.batch_size=16");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("mnist: 4 batches of 16 at 1x16x16, 2 threads: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" samples/s"), std::string::npos) << r.output;
  r = ldrop("data bench " + config_ + " --set dataset.root=" + (dir_.path() / "missing").string());
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
}

// SIGHUP (a closed terminal) left the cache file until a later run (issue 12, CLI finding 8).
TEST_F(Cli, InterruptRemovesTheDiskCacheAndWritesNoSummary) {
  for (const auto& [name, code] : {std::pair<std::string, int>{"INT", 130}, std::pair<std::string, int>{"HUP", 129}}) {
  SCOPED_TRACE(name);
  // A long run that drops at the first step, interrupted once its cache file
  // exists; without checkpoints (with them, the cache is kept for a resume:
  // the Resume tests).
  const std::string cache = (dir_.path() / ("cache" + name)).string(), out = (dir_.path() / ("run" + name)).string();
  const std::string cmd =
      "LEARNDROP_PLUGIN_PATH=" + ld::test::test_plugin("scripted_policy") + " " + LDROP_EXE + " run " + config_ +
      " --quiet --out " + out +
      " --set train.epochs=500 --set train.checkpoint_every=0 --set policy.plugin=scripted --set policy.cuts=2"
      " --set policy.period=1"
      " --set cache.plugin=disk --set cache.dir=" +
      cache + " > " + (dir_.path() / "log").string() + " 2>&1 & pid=$!; " + "for i in $(seq 600); do ls " + cache +
      "/ldcache-*.bin > /dev/null 2>&1 && break; sleep 0.1; done; " + "kill -" + name +
      " $pid; wait $pid; echo \"exit=$?\"; ls -A " + cache;
  const std::string output = ld::test::run_shell(cmd).output;
  std::ifstream log(dir_.path() / "log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_EQ(output, "exit=" + std::to_string(code) + "\n") << "output: " << output << "\nlog: " << text;
  EXPECT_NE(text.find("interrupted by SIG" + name), std::string::npos) << text;
  EXPECT_FALSE(std::filesystem::exists(out + "/summary.json"));
  }
}

TEST_F(Cli, CachePlanSizesEveryCut) {
  Result r = ldrop("cache plan " + config_ + " --json");
  ASSERT_EQ(r.code, 0) << r.output;
  nlohmann::json plan = nlohmann::json::parse(r.output);
  ASSERT_EQ(plan["cuts"].size(), 8u);  // vgg11_bn: one stage per conv layer
  // Stage 1 of the tiny VGG (conv, pool): 4 channels at 8x8, float32, for 256 samples.
  EXPECT_EQ(plan["cuts"][0]["shape"], nlohmann::json({4, 8, 8}));
  EXPECT_EQ(plan["cuts"][0]["bytes_per_sample"], 4 * 8 * 8 * 4);
  EXPECT_EQ(plan["cuts"][0]["cache_bytes"], 256 * 4 * 8 * 8 * 4);
  for (std::size_t k = 1; k < 8; ++k) {
    EXPECT_GT(plan["cuts"][k]["forward_saved_fraction"], plan["cuts"][k - 1]["forward_saved_fraction"]);
  }
  EXPECT_LT(plan["cuts"][7]["forward_saved_fraction"].get<double>(), 1.0);  // the head always runs
  r = ldrop("cache plan " + config_ + " --json --set cache.dtype=float16");
  EXPECT_EQ(nlohmann::json::parse(r.output)["cuts"][0]["cache_bytes"], 256 * 4 * 8 * 8 * 2);
  r = ldrop("cache plan " + config_ + " --json --set train.precision=bf16");
  EXPECT_EQ(nlohmann::json::parse(r.output)["cuts"][0]["cache_bytes"], 256 * 4 * 8 * 8 * 2)
      << "cache.dtype: auto stores bf16 runs' maps in bfloat16";
  // The tiers of auto: a ram_budget one byte short of cut 1 sends it to disk.
  r = ldrop("cache plan " + config_ + " --json --set cache.plugin=auto --set cache.ram_budget=" +
            std::to_string(256 * 4 * 8 * 8 * 4 - 1));
  ASSERT_EQ(r.code, 0) << r.output;
  plan = nlohmann::json::parse(r.output);
  EXPECT_EQ(plan["cuts"][0]["auto_backend"], "disk") << "cut 1 is one byte over ram_budget";
  EXPECT_EQ(plan["ram_budget"], 256 * 4 * 8 * 8 * 4 - 1);
  EXPECT_EQ(plan["device"], torch::cuda::is_available() ? "cuda:0" : "cpu");
  if (!torch::cuda::is_available()) EXPECT_EQ(plan["device_budget"], 0);
  r = ldrop("cache plan " + config_);
  EXPECT_NE(r.output.find("FLOPs saved/ep"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tier device: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tier ram: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tier disk: "), std::string::npos) << r.output;
}

// Issue 31, defect 5: the plan sized a stream's cache as if it were built
// whole, and called a cut "neither" where a run of auto keeps it in RAM
// (an unusable cache.dir), or "disk" where the run could not write there.
TEST_F(Cli, CachePlanCountsAStreamsGrowthAndAgreesWithARunOnTheRamFallback) {
  // 256 samples in 5 parts (51, 102, 153, 204, 256 after each), one view:
  // the RAM cache allocates 51, 102 (copy: 51 + 102), 153 (102 + 153),
  // 229 (153 + 229), 343 (229 + 343 = 572 rows at once) rows.
  Result r = ldrop("cache plan " + config_ + " --json --set stream.parts=5 --set stream.epochs=1 --set train.epochs=5");
  ASSERT_EQ(r.code, 0) << r.output;
  nlohmann::json plan = nlohmann::json::parse(r.output);
  EXPECT_EQ(plan["stream_rows_after_part"], nlohmann::json({51, 102, 153, 204, 256}));
  const std::int64_t row = plan["cuts"][0]["bytes_per_sample"];
  EXPECT_EQ(plan["cuts"][0]["cache_bytes"], 256 * row);
  EXPECT_EQ(plan["cuts"][0]["ram_capacity_bytes"], 343 * row);
  EXPECT_EQ(plan["cuts"][0]["ram_peak_bytes"], 572 * row);
  r = ldrop("cache plan " + config_ + " --set stream.parts=5 --set stream.epochs=1 --set train.epochs=5");
  EXPECT_NE(r.output.find("RAM growing"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("stream of 5 parts: a cache built in the first part grows"), std::string::npos) << r.output;

  // cache.dir under a file: no run can create it. auto keeps the (small)
  // cut in RAM instead, and the plan says so.
  std::ofstream(dir_.path() / "a-file") << "x";
  const std::string bad = (dir_.path() / "a-file" / "cache").string();
  const std::string sets = " --set cache.plugin=auto --set cache.ram_budget=1 --set cache.dir=" + bad;
  r = ldrop("cache plan " + config_ + " --json" + sets);
  ASSERT_EQ(r.code, 0) << r.output;
  plan = nlohmann::json::parse(r.output);
  EXPECT_EQ(plan["cuts"][1]["auto_backend"], "ram (disk fallback)");
  EXPECT_EQ(plan["free_disk"], 0);
  EXPECT_NE(plan["cache_dir_unusable"].get<std::string>().find("a-file is not a folder"), std::string::npos);
  r = ldrop("cache plan " + config_ + sets);
  EXPECT_NE(r.output.find("tier disk: unusable, "), std::string::npos) << r.output;
  const std::string out = (dir_.path() / "fallback").string();
  r = ldrop("run " + config_ + " --out " + out + sets +
                " --set train.epochs=2 --set policy.plugin=fixed --set policy.cut=2 --set policy.epoch=1"
                " --set policy.drop_mode=cache",
            "");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("keeping the cut-2 cache in RAM instead"), std::string::npos) << r.output;
}

// Issue 30, part 3: `ldrop check` validated the keys only, so a criterion
// file's syntax error showed when a run started, after its setup.
TEST_F(Cli, CheckCreatesThePolicySoACriterionFilesErrorsShowBeforeAnyRun) {
  const std::string good = (dir_.path() / "good.py").string(), bad = (dir_.path() / "bad.py").string();
  std::ofstream(good) << "class Policy:\n    def __init__(self, context, options):\n"
                         "        self.stages = context.num_stages\n"
                         "    def decide(self, input):\n        return input.cut, 'never'\n";
  std::ofstream(bad) << "class Policy:\n    def decide(self, input)\n        return 0\n";
  const std::string python = " --set policy.plugin=python --set policy.file=";
  Result r = ldrop("check " + config_ + python + good);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("# config hash "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("# policy 'python' created for the 8 stages of vgg11_bn"), std::string::npos) << r.output;
  r = ldrop("check " + config_ + python + bad);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("python: " + bad + ":2: SyntaxError"), std::string::npos) << r.output;
  r = ldrop("check " + config_ + python + good + " --set policy.class=Other");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("defines no class 'Other' (policy.class)"), std::string::npos) << r.output;
  // A built-in policy is created the same way (the tiny config trains fully).
  r = ldrop("check " + config_);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("# policy 'none' created for the 8 stages"), std::string::npos) << r.output;
}

// The plan counted 1 view where a crop+flip CIFAR run caches 2, the sample
// and its mirror (issue 22): plan and run now come from one function.
TEST_F(Cli, CachePlanMatchesWhatACropFlipRunCaches) {
  ld::test::write_cifar_fixture(data_.str());
  const std::string cifar = (dir_.path() / "cifar.yaml").string(), out = (dir_.path() / "cifar-run").string();
  std::ofstream(cifar) << "experiment:\n  name: cifar\n  seed: 2\nruntime:\n  threads: 1\n"
                          "model:\n  plugin: vgg\n  variant: vgg11_bn\n  width: 0.0625\n  classifier: compact\n"
                          "dataset:\n  plugin: cifar10\n  root: "
                       << data_.str()
                       << "\n  augment: crop_flip\n"
                          "train:\n  epochs: 2\n  batch_size: 8\n  lr: 0.05\n  lr_schedule: constant\n"
                          "policy:\n  plugin: scripted\n  cuts: 2\n  period: 1\n  drop_mode: cache\n"
                          "  cost_guard: false\ncache:\n  plugin: ram\n";
  const std::string env = "LEARNDROP_PLUGIN_PATH=" + ld::test::test_plugin("scripted_policy") + " ";
  Result r = ldrop("cache plan " + cifar + " --json", env);
  ASSERT_EQ(r.code, 0) << r.output;
  const nlohmann::json plan = nlohmann::json::parse(r.output);
  EXPECT_EQ(plan["views"], 2) << "feature augmentation caches the sample and its mirror";
  EXPECT_EQ(plan["feature_augment"], true);
  r = ldrop("run " + cifar + " --quiet --out " + out, env);
  ASSERT_EQ(r.code, 0) << r.output;
  std::ifstream in(out + "/summary.json");
  const nlohmann::json summary = nlohmann::json::parse(in);
  ASSERT_FALSE(summary["drops"].empty()) << summary.dump();
  const nlohmann::json& drop = summary["drops"][0];
  ASSERT_EQ(drop["mode"], "cache") << drop.dump();
  const auto cut = drop["to_cut"].get<std::size_t>();
  EXPECT_EQ(drop["cache_bytes"], plan["cuts"][cut - 1]["cache_bytes"]) << drop.dump() << "\n" << plan.dump();
  EXPECT_EQ(summary["augmentation_after_drop"], plan["augmentation_after_drop"]);
}

TEST_F(Cli, BadConfigExitsNonZeroAndWritesNothing) {
  std::string out = (dir_.path() / "bad").string();
  Result r = ldrop("run " + config_ + " --out " + out + " --set policy.treshold=0.2 --set policy.plugin=learn-drop");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("error: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("did you mean 'threshold'?"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST_F(Cli, FailingRunExitsNonZeroWithoutASummary) {
  std::string out = (dir_.path() / "fail").string();
  Result r = ldrop("run " + config_ + " --out " + out + " --set dataset.root=" + (dir_.path() / "missing").string());
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out + "/summary.json"));
}

// Issue 31, defect 3: train.lr=100 trained into NaN and ended `done`, exit 0,
// its stats reading "stopped learning" to every criterion.
TEST_F(Cli, ADivergedRunStopsWithExitOneKeepingTheLastGoodCheckpoint) {
  // The learning rate: it diverges.
  std::string out = (dir_.path() / "lr").string();
  Result r = ldrop("run " + config_ + " --out " + out + " --set train.lr=100");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("training diverged at epoch "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("train.lr 100: lower it?)"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out + "/summary.json"));
  // A NaN loss at step 12 (epoch 2 of 8 steps each): epoch 1's checkpoint stays,
  // and no NaN statistics reach the policy.
  out = (dir_.path() / "diverged").string();
  r = ldrop("run " + config_ + " --out " + out + " --set policy.plugin=learn-drop --set policy.warmup=0",
            "LEARNDROP_TEST_NAN_AT_STEP=12 ");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("training diverged at epoch 2, step 16: the mean training loss since the last evaluation "
                          "point is NaN"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("the checkpoint of the last epoch boundary before it is kept"), std::string::npos)
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(out + "/summary.json"));
  const nlohmann::json state = nlohmann::json::parse(std::ifstream(out + "/checkpoint/state.json"));
  EXPECT_EQ(state["run_state"]["epoch"], 1) << "the checkpoint written after epoch 1, not one of epoch 2";
  std::ifstream stats(out + "/stats.jsonl");
  int points = 0;
  for (std::string line; std::getline(stats, line);) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("stages")) continue;
    ++points;
    for (const auto& st : j["stages"]) EXPECT_TRUE(st["relative_change"].is_number()) << line;
  }
  EXPECT_EQ(points, 1) << "only epoch 1's point reached the policy";
}

// Issue 31, defect 10: nlohmann's "[json.exception...]" texts reached the user.
TEST_F(Cli, ADamagedSummaryIsNamedWithoutTheJsonLibrarysTags) {
  const auto run = dir_.path() / "damaged";
  std::filesystem::create_directories(run);
  std::ofstream(run / "summary.json") << "{\"epochs\": ";
  std::ofstream(run / "model.pt") << "x";
  std::filesystem::copy_file(config_, run / "config.yaml");
  Result r = ldrop("compare " + run.string() + " " + run.string());
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_EQ(r.output.find("[json.exception"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find((run / "summary.json").string() + ": not valid JSON: parse error"), std::string::npos)
      << r.output;
  r = ldrop("export " + run.string() + " --format torchvision");
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.output.find((run / "summary.json").string() + " is not a JSON object"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("[json.exception"), std::string::npos) << r.output;
}

TEST_F(Cli, PluginPathsInTheConfigAreLoadedRelativeToIt) {
  std::filesystem::create_directories(dir_.path() / "plugins");
  std::filesystem::copy_file(ld::test::test_plugin("scripted_policy"), dir_.path() / "plugins" / "ldp_scripted.so");
  std::string cfg = (dir_.path() / "with-plugins.yaml").string();
  std::ofstream(cfg) << ld::test::tiny_config(data_.str(), "plugins:\n  paths: [plugins]\n");
  std::string out = (dir_.path() / "scripted").string();
  Result r = ldrop("run " + cfg + " --out " + out +
                   " --set policy.plugin=scripted --set policy.cuts=1 --set train.epochs=2 --quiet");
  ASSERT_EQ(r.code, 0) << r.output;
  std::ifstream in(out + "/summary.json");
  EXPECT_EQ(nlohmann::json::parse(in)["dropped_stages"], 1);
}

// Issue 12, CLI finding 12: "A subcommand is required" for a misspelt command.
TEST_F(Cli, AnUnknownCommandIsNamedWithTheClosestOne) {
  Result r = ldrop("frobnicate");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("error: ldrop: unknown command 'frobnicate' (commands: 'run', "), std::string::npos)
      << r.output;
  r = ldrop("suite rnu x.yaml");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("ldrop suite: unknown command 'rnu'; did you mean 'run'?"), std::string::npos) << r.output;
}

// Issue 12, CLI finding 2: these ran past 300 s / grew to 24 GB and were killed.
TEST_F(Cli, ModelSummaryRefusesSizesPastAMemoryEstimateInsteadOfRunningThem) {
  Result r = ldrop("model summary --variant resnet152 --in-channels 4096 --input-size 4096 --width 16");
  EXPECT_EQ(r.code, 2) << r.output;  // bad input
  EXPECT_NE(r.output.find("--width 16: about "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("of float32 parameters"), std::string::npos) << r.output;
  r = ldrop("model summary --variant vgg19_bn --input-size 4096 --in-channels 4096");
  EXPECT_EQ(r.code, 2) << r.output;  // bad input
  EXPECT_NE(r.output.find("--input-size 4096: the forward pass would hold about "), std::string::npos) << r.output;
  r = ldrop("model summary --variant vgg11_bn --input-size 96 --num-classes 10");
  EXPECT_EQ(r.code, 0) << r.output;
}

TEST_F(Cli, MissingConfigFileIsNamed) {
  Result r = ldrop("run /nonexistent/cfg.yaml");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("/nonexistent/cfg.yaml: config file does not exist"), std::string::npos) << r.output;
}

TEST(CliPlugins, ListAsJsonHasEveryManifest) {
  Result r = ldrop("plugins list --json");
  ASSERT_EQ(r.code, 0) << r.output;
  auto list = nlohmann::json::parse(r.output);
  std::set<std::string> names;
  for (const auto& p : list) {
    names.insert(p["kind"].get<std::string>() + "/" + p["name"].get<std::string>());
    EXPECT_TRUE(p.contains("version") && p.contains("description") && p.contains("keys"));
  }
  EXPECT_EQ(names, (std::set<std::string>{"model/vgg", "model/resnet", "dataset/mnist", "dataset/cifar10",
                                          "dataset/imagenette", "policy/none", "policy/learn-drop", "policy/fixed",
                                          "policy/freezeout", "policy/autofreeze", "policy/cka", "policy/freeze-probe", "policy/python",
                                          "cache/ram", "cache/disk", "cache/auto", "cache/device"}));
}

TEST(CliPlugins, DescribeShowsKeysWithTypesAndDefaults) {
  Result r = ldrop("plugins describe learn-drop");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("threshold"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("default 0.5"), std::string::npos) << r.output;  // threshold
  r = ldrop("plugins describe vgg --json");
  ASSERT_EQ(r.code, 0) << r.output;
  auto m = nlohmann::json::parse(r.output);
  EXPECT_EQ(m["kind"], "model");
  bool has_variant = false;
  for (const auto& k : m["keys"]) has_variant = has_variant || k["name"] == "variant";
  EXPECT_TRUE(has_variant);
  r = ldrop("plugins describe vgj");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("did you mean 'vgg'?"), std::string::npos) << r.output;
}

TEST(CliModel, SummaryPrintsEveryStageAndTotals) {
  Result r = ldrop("model summary --variant resnet18 --json");
  ASSERT_EQ(r.code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["params"], 11689512);
  EXPECT_EQ(j["forward_flops"], 2 * 1814073344LL);
  EXPECT_EQ(j["stages"].size(), 9u);
  std::int64_t sum = j["head"]["forward_flops"];
  for (const auto& s : j["stages"]) sum += s["forward_flops"].get<std::int64_t>();
  EXPECT_EQ(sum, j["forward_flops"]);
  r = ldrop("model summary --variant vgg11_bn --input-size 32 --num-classes 10 --stem cifar");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("conv8"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("total: "), std::string::npos) << r.output;
  r = ldrop("model summary --variant resnet51");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("did you mean 'resnet50'?"), std::string::npos) << r.output;
}

TEST(CliPlugins, EnvironmentPathPluginIsListed) {
  Result r = ldrop("plugins list");
  EXPECT_EQ(r.output.find("scripted"), std::string::npos);
  Result with = ld::test::run_ldrop(
      "plugins list", "LEARNDROP_PLUGIN_PATH=" + std::string(LEARNDROP_TEST_PLUGIN_DIR) + "/scripted_policy ");
  EXPECT_EQ(with.code, 0);
  EXPECT_NE(with.output.find("scripted"), std::string::npos) << with.output;
}
