// Data that arrive over time (stream.*) and runs that start from trained
// weights (model.weights, model.head, model.freeze), through run_training on
// generated idx data sets.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <torch/serialize.h>

#include "idx_fixture.h"
#include "learndrop/core/config.h"
#include "learndrop/core/run.h"
#include "learndrop/registrar.h"
#include "test_env.h"

namespace ld::core {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

PluginHost& host() {
  static auto h = [] {
    auto p = test::builtin_host();
    p->load_library(test::test_plugin("scripted_policy"));
    return p;
  }();
  return *h;
}

RunConfig config(const std::string& data, const std::vector<std::string>& sets, const std::string& extra = "") {
  ConfigTree tree = parse_config(test::tiny_config(data, extra), "tiny.yaml");
  for (const auto& s : sets) apply_override(tree, s);
  return resolve_config(tree, host());
}

struct RunFiles {
  json summary;
  std::vector<json> metrics;
};

RunFiles train(const std::string& data, const std::string& out, const std::vector<std::string>& sets) {
  RunOptions opts;
  opts.out_dir = out;
  opts.progress = false;
  RunFiles r;
  r.summary = run_training(config(data, sets), host(), opts);
  std::ifstream in(out + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) r.metrics.push_back(json::parse(line));
  return r;
}

// 256 samples in 4 parts of 64, 2 epochs after each (8 epochs), batches of
// 32: 2, 4, 6 and 8 steps per epoch. The scripted policy decides every 3
// steps: cut 2 at step 12 (the end of part 2), cut 4 at step 27 (in part 4).
const std::vector<std::string> kStream = {"stream.parts=4",          "stream.epochs=2",          "train.epochs=8",
                                          "policy.plugin=scripted",  "policy.period=3",
                                          "policy.cuts=0,0,0,2,2,2,2,2,4", "policy.drop_mode=cache",
                                          "policy.cost_guard=false"};

// The tiny config's model (vgg11_bn, width 1/16, compact classifier) for
// `classes` classes, with the weights of the run in `dir`.
std::shared_ptr<StagedModel> load_tiny_model(const fs::path& dir, std::int64_t classes) {
  test::IdxFixture shape;
  auto model = host().create_model(
      "vgg", test::plugin_options(host(), PluginKind::kModel, "vgg",
                                  {{"variant", "vgg11_bn"}, {"width", "0.0625"}, {"classifier", "compact"}}),
      ModelContext{1, shape.size, shape.size, classes});
  torch::serialize::InputArchive archive;
  archive.load_from((dir / "model.pt").string());
  model->load(archive);
  return model;
}

// Every stage's parameters and buffers of the run in `after` are those of
// the run in `before`, bit for bit (the heads may differ in class count).
void expect_same_stages(const fs::path& before_dir, std::int64_t before_classes, const fs::path& after_dir,
                        std::int64_t after_classes) {
  auto before = load_tiny_model(before_dir, before_classes), after = load_tiny_model(after_dir, after_classes);
  for (std::size_t i = 0; i < before->num_stages(); ++i) {
    auto a = before->stage_module(i)->named_parameters(), b = after->stage_module(i)->named_parameters();
    for (const auto& p : a) EXPECT_TRUE(p.value().equal(b[p.key()])) << "stage " << i << " " << p.key();
    auto ab = before->stage_module(i)->named_buffers(), bb = after->stage_module(i)->named_buffers();
    for (const auto& p : ab) EXPECT_TRUE(p.value().equal(bb[p.key()])) << "stage " << i << " " << p.key();
  }
}

class Stream : public ::testing::Test {
 protected:
  void SetUp() override { test::write_idx_fixture(data_.str()); }
  test::TempDir data_, out_;
};

}  // namespace

TEST_F(Stream, ConfigErrorsNameTheKeyAndWhatWasExpected) {
  auto error = [&](const std::vector<std::string>& sets, const std::string& extra = "") {
    return test::error_of([&] { config(data_.str(), sets, extra); });
  };
  EXPECT_NE(error({"stream.parts=4"}).find("stream.epochs: required with stream.parts 4"), std::string::npos);
  EXPECT_NE(error({"stream.parts=4", "stream.epochs=2", "train.epochs=5"})
                .find("train.epochs (from --set): a stream of 4 parts with stream.epochs 2 trains 8 epochs; leave "
                      "train.epochs out or set it to 8"),
            std::string::npos);
  EXPECT_NE(error({"stream.epochs=2"}).find("stream.epochs (from --set): applies to a stream (stream.parts > 1)"),
            std::string::npos);
  EXPECT_NE(error({"stream.order=random"}).find("expected one of 'shuffle', 'dataset'"), std::string::npos);
  // train.epochs follows the stream when the config leaves it out.
  ConfigTree tree = parse_config("model: {plugin: vgg}\nstream: {parts: 3, epochs: 4}\n", "s.yaml");
  EXPECT_EQ(resolve_config(tree, host()).train.epochs, 12);
  // Parts of fewer than 2 samples, found when the data set's size is known.
  RunOptions opts;
  opts.out_dir = out_.str();
  opts.progress = false;
  EXPECT_NE(test::error_of([&] { run_training(config(data_.str(), {"stream.parts=200", "stream.epochs=1", "train.epochs=200"}), host(), opts); })
                .find("stream.parts 200 splits the 256 training samples of dataset 'mnist' into parts of fewer than 2"),
            std::string::npos);
}

TEST_F(Stream, EachEpochTrainsOnWhatHasArrivedAndTheTestSetFollowsEachPart) {
  RunFiles r = train(data_.str(), out_.str(), {"stream.parts=4", "stream.epochs=2", "train.epochs=8", "train.eval_every=100"});
  ASSERT_EQ(r.metrics.size(), 8u);
  for (std::size_t e = 0; e < 8; ++e) {
    const std::int64_t part = static_cast<std::int64_t>(e / 2) + 1;
    EXPECT_EQ(r.metrics[e]["arrival"], part) << "epoch " << e + 1;
    EXPECT_EQ(r.metrics[e]["train_samples"], 64 * part) << "epoch " << e + 1;
    // Every arrived sample once per epoch (none is left out: 64k % 32 == 0).
    EXPECT_EQ(r.metrics[e]["forward_flops"].get<std::int64_t>(),
              64 * part * r.summary["forward_flops_full"].get<std::int64_t>() / r.summary["images_trained"].get<std::int64_t>())
        << "epoch " << e + 1;
    // The test set after each part's last epoch, despite eval_every: 100.
    EXPECT_EQ(r.metrics[e]["test_accuracy"].is_null(), e % 2 == 0) << "epoch " << e + 1;
  }
  EXPECT_EQ(r.summary["images_trained"], 2 * 64 * (1 + 2 + 3 + 4));
  ASSERT_EQ(r.summary["arrival_accuracy"].size(), 4u);
  ASSERT_EQ(r.summary["arrivals"].size(), 4u);
  for (std::size_t k = 0; k < 4; ++k) {
    const json& a = r.summary["arrivals"][k];
    EXPECT_EQ(a["samples"], 64 * (k + 1));
    EXPECT_EQ(r.summary["arrival_accuracy"][k], r.metrics[2 * k + 1]["test_accuracy"]);
    EXPECT_EQ(a.contains("first_look_accuracy"), k > 0) << "the model's look at a part before training on it";
  }
  EXPECT_EQ(r.summary["stream"]["parts"], 4);
}

TEST_F(Stream, ShuffledPartsAreDisjointAndEqualTheDataSetOrderAsSets) {
  // Both orders train on every sample by the end; the shuffled one in another order.
  RunFiles shuffled = train(data_.str(), out_.str(), {"stream.parts=2", "stream.epochs=1", "train.epochs=2"});
  test::TempDir out;
  RunFiles ordered = train(data_.str(), out.str(), {"stream.parts=2", "stream.epochs=1", "train.epochs=2", "stream.order=dataset"});
  EXPECT_EQ(shuffled.summary["images_trained"], ordered.summary["images_trained"]);
  EXPECT_NE(shuffled.metrics[0]["train_loss"], ordered.metrics[0]["train_loss"]) << "the same first part";
}

TEST_F(Stream, ARowIsComputedOnceAndEveryCacheTierGivesTheSameMetrics) {
  RunFiles ram = train(data_.str(), out_.str(), kStream);
  ASSERT_EQ(ram.summary["drops"].size(), 2u);
  EXPECT_EQ(ram.summary["drops"][0]["to_cut"], 2);
  EXPECT_EQ(ram.summary["drops"][1]["to_cut"], 4);
  // Drop 1 at the end of part 2 caches its 128 samples; parts 3 and 4 add
  // their 64 rows each through stages 0..1 (later cut 0..3), once.
  const std::vector<std::int64_t> stage = ram.summary["stage_forward_flops"];
  const json& arrivals = ram.summary["arrivals"];
  EXPECT_EQ(arrivals[0]["cache_rows_added"], 0);
  EXPECT_EQ(arrivals[1]["cache_rows_added"], 0);
  EXPECT_EQ(arrivals[2]["cache_rows_added"], 64);
  EXPECT_EQ(arrivals[2]["cache_flops"].get<std::int64_t>(), 64 * (stage[0] + stage[1]));
  EXPECT_EQ(arrivals[3]["cache_rows_added"], 64);
  EXPECT_EQ(arrivals[3]["cache_flops"].get<std::int64_t>(), 64 * (stage[0] + stage[1]));
  EXPECT_EQ(ram.summary["drops"][0]["cache_build_flops"].get<std::int64_t>(), 128 * (stage[0] + stage[1]));
  EXPECT_EQ(ram.summary["drops"][1]["cache_build_flops"].get<std::int64_t>(), 256 * (stage[2] + stage[3]));
  for (const json& d : ram.summary["drops"]) {  // a part of the build's time
    EXPECT_GE(d["cache_allocate_seconds"].get<double>(), 0.0);
    EXPECT_LE(d["cache_allocate_seconds"].get<double>(), d["cache_build_seconds"].get<double>());
  }
  for (const std::string plugin : {"device", "disk", "auto", "auto-copy"}) {
    SCOPED_TRACE(plugin);
    test::TempDir out, cache_dir;
    auto with = kStream;
    with.push_back("cache.plugin=" + (plugin == "auto-copy" ? std::string("auto") : plugin));
    if (plugin != "device") with.push_back("cache.dir=" + cache_dir.str());
    // A RAM budget the first cache fits and the grown one does not: the host
    // copies the rows into a disk cache.
    if (plugin == "auto") with.push_back("cache.ram_budget=0");
    if (plugin == "auto-copy") with.push_back("cache.ram_budget=80KiB");
    RunFiles other = train(data_.str(), out.str(), with);
    ASSERT_EQ(other.metrics.size(), ram.metrics.size());
    for (std::size_t i = 0; i < ram.metrics.size(); ++i) {
      for (const char* key : {"train_loss", "test_accuracy", "test_loss", "cut", "forward_flops", "train_samples"}) {
        EXPECT_EQ(other.metrics[i][key], ram.metrics[i][key]) << key << " at epoch " << i + 1;
      }
    }
    EXPECT_EQ(other.summary["arrival_accuracy"], ram.summary["arrival_accuracy"]);
    EXPECT_EQ(other.summary["arrivals"][2]["cache_copied"], plugin == "auto-copy");
    EXPECT_TRUE(fs::is_empty(cache_dir.path())) << "cache files left after the run";
  }
}

TEST_F(Stream, AFreezeDropKeepsRealInputsAndSkipsOnlyTheBackward) {
  auto sets = kStream;
  sets.back() = "policy.cost_guard=true";
  sets[6] = "policy.drop_mode=freeze";
  RunFiles r = train(data_.str(), out_.str(), sets);
  ASSERT_EQ(r.summary["drops"].size(), 2u);
  for (const auto& d : r.summary["drops"]) {
    EXPECT_EQ(d["mode"], "freeze");
    EXPECT_EQ(d["cache_build_flops"], 0);
  }
  // Forward FLOPs are full training's: the frozen stages still run forward.
  EXPECT_EQ(r.summary["forward_flops"], r.summary["forward_flops_full"]);
  for (const auto& a : r.summary["arrivals"]) EXPECT_EQ(a["cache_rows_added"], 0);
  EXPECT_EQ(r.metrics.back()["cut"], 4);
}

TEST_F(Stream, TheCostGuardHoldsADropThatDoesNotPay) {
  // A drop at the last evaluation point of the run saves nothing.
  RunFiles r = train(data_.str(), out_.str(),
                {"policy.plugin=scripted", "policy.cuts=0,0,0,0,0,0,0,4", "policy.period=1", "policy.drop_mode=cache",
                 "train.epochs=1"});
  EXPECT_EQ(r.summary["dropped_stages"], 0);
  std::ifstream in(out_.path() / "stats.jsonl");
  std::string last, line;
  while (std::getline(in, line)) last = line;
  const json point = json::parse(last);
  EXPECT_EQ(point["drop_plan"]["drop"], false);
  EXPECT_NE(point["drop_plan"]["held"].get<std::string>().find("cost guard: dropping to cut 4 (cache) saves 0"),
            std::string::npos)
      << point.dump();
}

TEST_F(Stream, FineTuningFromARunResetsTheHeadForAnotherClassCountAndAProbeKeepsTheStages) {
  // A 4-class model, then the same network on a 3-class set.
  RunFiles first = train(data_.str(), out_.str(), {"train.epochs=2"});
  test::TempDir three;
  test::IdxFixture f;
  f.classes = 3;
  test::write_idx_fixture(three.str(), f);
  RunOptions opts;
  test::TempDir kept_out;
  opts.out_dir = kept_out.str();
  opts.progress = false;
  const std::string error = test::error_of(
      [&] { run_training(config(three.str(), {"model.weights=" + out_.str()}), host(), opts); });
  EXPECT_NE(error.find("'head.layers.5.weight' has shape [4, 32], this model's head.layers.5.weight [3, 32]"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("set model.head: reset to train a new head"), std::string::npos) << error;
  test::TempDir probe_out;
  RunFiles probe = train(three.str(), probe_out.str(),
                    {"model.weights=" + out_.str(), "model.head=reset", "model.freeze=all", "train.epochs=2"});
  EXPECT_EQ(probe.summary["num_classes"], 3);
  EXPECT_EQ(probe.summary["frozen_from_start"], probe.summary["num_stages"]);
  EXPECT_EQ(probe.summary["model_weights"], out_.str());
  // A linear probe trains the head alone: every stage's parameters and
  // buffers are the first run's, bit for bit.
  expect_same_stages(out_.path(), 4, probe_out.path(), 3);
  EXPECT_EQ(probe.summary["drops"][0]["reason"], "model.freeze: all stages frozen from the start");
}

TEST_F(Stream, AProbedHeadIsFittedToTheLoadedStagesBeforeTheFirstStepAndLeavesThemAsTheyWere) {
  // A 4-class model (trained long enough for its features to tell the classes
  // apart), then a new head for a 3-class set: reset, or probe (LP-FT).
  train(data_.str(), out_.str(), {"train.epochs=6"});
  test::TempDir three;
  test::IdxFixture f;
  f.classes = 3;
  test::write_idx_fixture(three.str(), f);
  const std::vector<std::string> from = {"model.weights=" + out_.str(), "train.epochs=1"};
  auto with = [&](std::vector<std::string> sets, const std::vector<std::string>& more) {
    sets.insert(sets.end(), more.begin(), more.end());
    return sets;
  };
  test::TempDir reset_out, probe_out, again_out, frozen_out;
  const RunFiles reset = train(three.str(), reset_out.str(), with(from, {"model.head=reset"}));
  const RunFiles probe = train(three.str(), probe_out.str(), with(from, {"model.head=probe"}));
  EXPECT_TRUE(reset.summary["head_fit"].is_null());
  const json& fit = probe.summary["head_fit"];
  ASSERT_TRUE(fit.is_object()) << probe.summary.dump();
  EXPECT_EQ(probe.summary["model_head"], "probe");
  EXPECT_EQ(fit["samples"], f.train);
  EXPECT_EQ(fit["views"], 1);  // the idx set does not augment: one view, its image
  EXPECT_EQ(fit["epochs"], 5);
  EXPECT_DOUBLE_EQ(fit["lr"].get<double>(), 0.1);
  // The fit learned the new classes from the old stages' features: better
  // than the uniform guess, and the fine-tuning's first epoch starts lower.
  EXPECT_LT(fit["train_loss"].get<double>(), std::log(3.0));
  EXPECT_LT(probe.metrics[0]["train_loss"].get<double>(), reset.metrics[0]["train_loss"].get<double>());
  // Its work is the run's: one forward pass of the whole model per sample.
  std::int64_t per_sample = probe.summary["head_forward_flops"].get<std::int64_t>();
  for (const auto& v : probe.summary["stage_forward_flops"]) per_sample += v.get<std::int64_t>();
  EXPECT_EQ(fit["forward_flops"].get<std::int64_t>(), f.train * per_sample);
  EXPECT_EQ(probe.summary["forward_flops"].get<std::int64_t>() - reset.summary["forward_flops"].get<std::int64_t>(),
            fit["forward_flops"].get<std::int64_t>());
  EXPECT_GE(probe.summary["train_seconds"].get<double>(), fit["fit_seconds"].get<double>());
  // The same config and seed fit the same head.
  const RunFiles again = train(three.str(), again_out.str(), with(from, {"model.head=probe"}));
  EXPECT_EQ(test::without_timing(again.summary), test::without_timing(probe.summary));
  // With every stage frozen after the fit, the stages are the first run's bit
  // for bit: the features pass ran in eval mode and left the batch norms' statistics.
  const std::string stages = std::to_string(probe.summary["num_stages"].get<int>());
  const RunFiles frozen = train(three.str(), frozen_out.str(), with(from, {"model.head=probe", "model.freeze=" + stages}));
  EXPECT_TRUE(frozen.summary["head_fit"].is_object());
  expect_same_stages(out_.path(), 4, frozen_out.path(), 3);
}

TEST_F(Stream, AProbedHeadNeedsWeightsAndIsNotALinearProbeTwice) {
  auto error = [&](const std::vector<std::string>& sets) {
    return test::error_of([&] { config(data_.str(), sets); });
  };
  EXPECT_NE(error({"model.head=probe"}).find("model.head (from --set): probe applies to a model started from "
                                             "model.weights"),
            std::string::npos)
      << error({"model.head=probe"});
  const std::string twice = error({"model.weights=" + out_.str(), "model.head=probe", "model.freeze=all"});
  EXPECT_NE(twice.find("probe with model.freeze: all fits the head twice"), std::string::npos) << twice;
  const std::string epochs = error({"model.weights=" + out_.str(), "model.head=probe", "model.head_epochs=0"});
  EXPECT_NE(epochs.find("model.head_epochs"), std::string::npos) << epochs;
  const std::string unused = error({"model.weights=" + out_.str(), "model.head=reset", "model.head_lr=0.5"});
  EXPECT_NE(unused.find("model.head_lr (from --set): applies to model.head: probe (model.head is reset)"),
            std::string::npos)
      << unused;
  const std::string other = error({"model.weights=" + out_.str(), "model.head=fit"});
  EXPECT_NE(other.find("probe"), std::string::npos) << other;  // the allowed values are listed
}

}  // namespace ld::core
