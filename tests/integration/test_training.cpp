// Training runs through run_training on a generated idx data set.
#include <gtest/gtest.h>

#include <fstream>

#include <torch/serialize.h>

#include "idx_fixture.h"
#include "learndrop/core/config.h"
#include "learndrop/core/flops.h"
#include "learndrop/core/trainer.h"
#include "learndrop/registrar.h"
#include "test_env.h"

namespace ld::core {

namespace {

using json = nlohmann::json;

struct RunResult {
  json summary;
  std::vector<json> metrics;
  RunConfig config;
};

RunResult train(const std::string& data, const std::string& out, const std::vector<std::string>& sets,
                const std::string& extra = "") {
  static auto host = [] {
    auto h = test::builtin_host();
    h->load_library(test::test_plugin("scripted_policy"));
    return h;
  }();
  ConfigTree tree = parse_config(test::tiny_config(data, extra), "tiny.yaml");
  for (const auto& s : sets) apply_override(tree, s);
  RunResult r;
  r.config = resolve_config(tree, *host);
  RunOptions opts;
  opts.out_dir = out;
  opts.progress = false;
  r.summary = run_training(r.config, *host, opts);
  std::ifstream in(out + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) r.metrics.push_back(json::parse(line));
  return r;
}

class TrainingRun : public ::testing::Test {
 protected:
  void SetUp() override { test::write_idx_fixture(data_.str()); }
  test::TempDir data_, out_;
};

}  // namespace

TEST_F(TrainingRun, DropsArePrefixOnlyMonotoneAndClamped) {
  // The policy asks for 2, then 1 (a step back), then 3, then 99 (past the end).
  RunResult r = train(data_.str(), out_.str(), {"policy.plugin=scripted", "policy.cuts=2,1,3,99", "train.epochs=5"});
  std::vector<std::size_t> cuts;
  for (const auto& m : r.metrics) cuts.push_back(m["cut"].get<std::size_t>());
  std::size_t n = r.summary["num_stages"];
  EXPECT_EQ(cuts, (std::vector<std::size_t>{2, 2, 3, n, n}));
  ASSERT_EQ(r.summary["drops"].size(), 3u);
  EXPECT_EQ(r.summary["drops"][0]["from_cut"], 0);
  EXPECT_EQ(r.summary["drops"][1]["from_cut"], 2);
  EXPECT_EQ(r.summary["drops"][2]["to_cut"], n);
  EXPECT_EQ(r.summary["dropped_stages"], n);
}

TEST_F(TrainingRun, FlopBookkeepingAddsWhatRan) {
  RunResult r = train(data_.str(), out_.str(), {"policy.plugin=scripted", "policy.cuts=0,3,5", "train.epochs=4"});
  std::vector<std::int64_t> stage = r.summary["stage_forward_flops"];
  std::int64_t head = r.summary["head_forward_flops"];
  auto from = [&](std::size_t k) {
    std::int64_t f = head;
    for (std::size_t i = k; i < stage.size(); ++i) f += stage[i];
    return f;
  };
  auto range = [&](std::size_t a, std::size_t b) {
    std::int64_t f = 0;
    for (std::size_t i = a; i < b; ++i) f += stage[i];
    return f;
  };
  const std::int64_t per_epoch = 256;  // 8 full batches of 32
  // Decisions come at epoch ends: epochs train at cuts 0, 0, 3, 5.
  std::int64_t expected = per_epoch * (from(0) + from(0) + from(3) + from(5));
  expected += 256 * range(0, 3) + 256 * range(3, 5);  // the two cache builds
  EXPECT_EQ(r.summary["forward_flops"].get<std::int64_t>(), expected);
  EXPECT_EQ(r.summary["forward_flops_full"].get<std::int64_t>(), 4 * per_epoch * from(0));
  double reduction = 1.0 - static_cast<double>(expected) / static_cast<double>(4 * per_epoch * from(0));
  EXPECT_NEAR(r.summary["flops_reduction"].get<double>(), reduction, 1e-12);
  std::int64_t sum = 0;
  for (const auto& m : r.metrics) sum += m["forward_flops"].get<std::int64_t>();
  EXPECT_EQ(sum, expected);
}

TEST_F(TrainingRun, SameConfigAndSeedGiveTheSameMetrics) {
  test::TempDir out2;
  std::vector<std::string> sets = {"policy.plugin=scripted", "policy.cuts=0,2", "train.epochs=2"};
  RunResult a = train(data_.str(), out_.str(), sets);
  RunResult b = train(data_.str(), out2.str(), sets);
  ASSERT_EQ(a.metrics.size(), b.metrics.size());
  for (std::size_t i = 0; i < a.metrics.size(); ++i) {
    for (const char* key : {"train_loss", "test_accuracy", "test_loss", "cut", "forward_flops"}) {
      EXPECT_EQ(a.metrics[i][key], b.metrics[i][key]) << key << " at epoch " << i + 1;
    }
  }
  RunResult c = train(data_.str(), out2.str(),
                      {"policy.plugin=scripted", "policy.cuts=0,2", "train.epochs=2", "experiment.seed=4"});
  EXPECT_NE(a.metrics[0]["train_loss"], c.metrics[0]["train_loss"]) << "the seed has no effect";
}

TEST_F(TrainingRun, DiskAndAutoCachesGiveTheSameMetricsAsRam) {
  // Drops at the first two evaluation points, so the last epochs read the cache.
  const std::vector<std::string> sets = {"policy.plugin=scripted", "policy.cuts=2,4", "train.epochs=4",
                                         "policy.period=4"};
  RunResult ram = train(data_.str(), out_.str(), sets);
  for (const std::string plugin : {"disk", "auto"}) {
    SCOPED_TRACE(plugin);
    test::TempDir out, cache_dir;
    auto with = sets;
    with.push_back("cache.plugin=" + plugin);
    with.push_back("cache.dir=" + cache_dir.str());
    if (plugin == "auto") with.push_back("cache.ram_budget=0");
    RunResult other = train(data_.str(), out.str(), with);
    ASSERT_EQ(other.metrics.size(), ram.metrics.size());
    for (std::size_t i = 0; i < ram.metrics.size(); ++i) {
      for (const char* key : {"train_loss", "test_accuracy", "test_loss", "cut", "forward_flops"}) {
        EXPECT_EQ(other.metrics[i][key], ram.metrics[i][key]) << key << " at epoch " << i + 1;
      }
    }
    EXPECT_EQ(other.summary["dropped_stages"], 4);
    EXPECT_GT(other.summary["cache_read_bytes"].get<std::int64_t>(), 0);
    EXPECT_NE(other.summary["drops"][1]["cache"].get<std::string>().find("disk"), std::string::npos);
    EXPECT_TRUE(std::filesystem::is_empty(cache_dir.path())) << "cache files left after the run";
  }
}

TEST_F(TrainingRun, FixedPolicyDropsAtItsEpoch) {
  RunResult r = train(data_.str(), out_.str(), {"policy.plugin=fixed", "policy.cut=3", "policy.epoch=2"});
  std::vector<std::size_t> cuts;
  for (const auto& m : r.metrics) cuts.push_back(m["cut"].get<std::size_t>());
  EXPECT_EQ(cuts, (std::vector<std::size_t>{0, 3, 3}));  // the drop ends epoch 2
  EXPECT_DOUBLE_EQ(r.summary["drops"][0]["epoch"].get<double>(), 2.0);
}

TEST_F(TrainingRun, EvaluatesTheFullSavedModelOnTheTestSplit) {
  RunResult r = train(data_.str(), out_.str(), {"policy.plugin=scripted", "policy.cuts=3", "train.epochs=2"});
  // Rebuild the model, load model.pt and evaluate it from stage 0.
  auto host = test::builtin_host();
  auto ds = host->create_dataset("mnist", r.config.dataset.options, DatasetContext{});
  auto model = host->create_model("vgg", r.config.model.options, ModelContext{1, 16, 16, 4});
  torch::serialize::InputArchive archive;
  archive.load_from(out_.str() + "/model.pt");
  model->load(archive);
  model->eval();
  at::NoGradGuard no_grad;
  std::vector<std::int64_t> idx(64);
  std::iota(idx.begin(), idx.end(), 0);
  Batch b = ds->get_batch(Split::kTest, idx, 0);
  double acc = model->forward(b.images, 0).argmax(1).eq(b.labels).to(at::kDouble).mean().item<double>();
  EXPECT_DOUBLE_EQ(acc, r.summary["test_accuracy"].get<double>());
  EXPECT_EQ(r.summary["dropped_stages"], 3);
}

TEST_F(TrainingRun, LearnsTheFixtureAndWritesEveryOutput) {
  RunResult r = train(data_.str(), out_.str(), {"train.epochs=4"});
  EXPECT_GT(r.summary["test_accuracy"].get<double>(), 0.9);  // the classes are separable blocks
  ASSERT_EQ(r.metrics.size(), 4u);
  for (const char* key : {"epoch", "train_loss", "test_accuracy", "cut", "epoch_seconds", "forward_flops"}) {
    EXPECT_TRUE(r.metrics[0].contains(key)) << key;
  }
  for (const char* key : {"model", "dataset", "policy", "seed", "epochs", "num_stages", "dropped_stages",
                          "test_accuracy", "train_seconds", "forward_flops", "forward_flops_full", "flops_reduction"}) {
    EXPECT_TRUE(r.summary.contains(key)) << key;
  }
  EXPECT_EQ(r.summary["model"], "vgg11_bn");
  EXPECT_EQ(r.summary["policy"], "none");
  EXPECT_EQ(r.summary["flops_reduction"].get<double>(), 0.0);
  for (const char* file : {"config.yaml", "metrics.jsonl", "stats.jsonl", "summary.json", "model.pt"}) {
    EXPECT_TRUE(std::filesystem::exists(out_.path() / file)) << file;
  }
  // The saved config is the effective one and identifies the run.
  auto host = test::builtin_host();
  RunConfig saved = resolve_config(load_config((out_.path() / "config.yaml").string()), *host);
  EXPECT_EQ(saved.hash(), r.summary["config_hash"]);
}

TEST_F(TrainingRun, LearnDropDropsOnTheFixture) {
  RunResult r = train(data_.str(), out_.str(),
                      {"policy.plugin=learn-drop", "policy.warmup=1", "policy.window=1", "policy.patience=1",
                       "policy.min_slope=0.1", "policy.threshold=0.3", "policy.max_fraction=0.75", "train.epochs=10"});
  EXPECT_GE(r.summary["dropped_stages"].get<int>(), 1);
  EXPECT_GT(r.summary["flops_reduction"].get<double>(), 0.0);
  EXPECT_EQ(r.metrics[0]["cut"], 0) << "dropped during warm-up";
}

TEST_F(TrainingRun, LearnDropDropsResidualBlocksOfANarrowResNet) {
  RunResult r = train(data_.str(), out_.str(),
                      {"model.plugin=resnet", "model.variant=resnet18", "model.width=0.0625", "model.stem=cifar",
                       "policy.plugin=learn-drop", "policy.window=1", "policy.patience=1", "policy.min_slope=0.1",
                       "policy.threshold=0.3", "policy.max_fraction=0.75", "train.epochs=10"});
  EXPECT_EQ(r.summary["num_stages"], 9);
  EXPECT_GE(r.summary["dropped_stages"].get<int>(), 2) << "the stem and at least one block";
  EXPECT_GT(r.summary["flops_reduction"].get<double>(), 0.0);
}

}  // namespace ld::core
