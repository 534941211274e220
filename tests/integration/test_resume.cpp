// Checkpoints and resume (issue 13): real `ldrop run` processes stopped by
// SIGTERM and resumed with `ldrop run --resume` end bit-identical to the
// same run done without interruption.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <ATen/ATen.h>
#include <torch/serialize.h>
#include <nlohmann/json.hpp>

#include "idx_fixture.h"
#include "learndrop/cache.h"
#include "learndrop/core/config.h"
#include "learndrop/model.h"
#include "test_env.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Result = ld::test::LdropResult;

json strip(const json& j) { return ld::test::without_timing(j); }

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// What a finished run folder holds, timing aside.
struct RunFiles {
  std::vector<json> metrics;
  std::string stats;
  json summary;
  std::map<std::string, at::Tensor> model;
};

RunFiles read_run(const fs::path& dir) {
  RunFiles r;
  // model.pt loaded into the model of the run's config.
  auto host = ld::test::builtin_host();
  host->load_path(ld::test::test_plugin("scripted_policy"));
  const ld::core::RunConfig cfg =
      ld::core::resolve_config(ld::core::load_config((dir / "config.yaml").string()), *host);
  const json summary = json::parse(slurp(dir / "summary.json"));
  ld::ModelContext shape;
  shape.in_channels = summary["input_shape"][0];
  shape.height = summary["input_shape"][1];
  shape.width = summary["input_shape"][2];
  shape.num_classes = summary["num_classes"];
  auto model = host->create_model(cfg.model.plugin, cfg.model.options, shape);
  std::ifstream metrics(dir / "metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) r.metrics.push_back(strip(json::parse(line)));
  r.stats = slurp(dir / "stats.jsonl");
  r.summary = strip(json::parse(slurp(dir / "summary.json")));
  torch::serialize::InputArchive archive;
  archive.load_from((dir / "model.pt").string());
  model->load(archive);
  for (const auto& kv : model->named_parameters()) r.model[kv.key()] = kv.value().detach().clone();
  for (const auto& kv : model->named_buffers()) r.model[kv.key()] = kv.value().detach().clone();
  return r;
}

// Bit-identical: every metric line, the stats, the summary and each tensor of model.pt.
void expect_identical(const fs::path& expected, const fs::path& got) {
  const RunFiles a = read_run(expected), b = read_run(got);
  ASSERT_EQ(a.metrics.size(), b.metrics.size());
  for (std::size_t i = 0; i < a.metrics.size(); ++i) EXPECT_EQ(a.metrics[i], b.metrics[i]) << "epoch " << i + 1;
  EXPECT_EQ(a.stats, b.stats);
  EXPECT_EQ(a.summary, b.summary);
  ASSERT_EQ(a.model.size(), b.model.size());
  ASSERT_FALSE(a.model.empty());
  for (const auto& [name, t] : a.model) {
    ASSERT_TRUE(b.model.count(name)) << name;
    const at::Tensor& u = b.model.at(name);
    ASSERT_EQ(t.sizes(), u.sizes()) << name;
    // Compared as bytes: -0.0 and 0.0, or two NaNs, would pass a value comparison.
    const at::Tensor x = t.contiguous(), y = u.contiguous();
    EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), static_cast<std::size_t>(x.nbytes())), 0) << name;
  }
}

class Resume : public ::testing::Test {
 protected:
  void SetUp() override {
    ld::test::write_idx_fixture(data_.str());
    // 256 samples in batches of 32: 8 steps per epoch, 48 in all. The
    // scripted policy decides every 3 steps: cut 2 at step 12 (epoch 2),
    // cut 4 at step 27 (epoch 4). Dropout draws from LibTorch's generator.
    config_ = (dir_.path() / "tiny.yaml").string();
    std::ofstream(config_) << "experiment:\n  name: resume\n  seed: 3\nruntime:\n  threads: 1\n"
                              "model:\n  plugin: vgg\n  variant: vgg11_bn\n  width: 0.0625\n  classifier: compact\n"
                              "  dropout: 0.3\n"
                              "dataset:\n  plugin: mnist\n  root: "
                           << data_.str()
                           << "\ntrain:\n  epochs: 6\n  batch_size: 32\n  lr: 0.05\n  lr_schedule: cosine\n";
  }

  std::string env() const { return "LEARNDROP_PLUGIN_PATH=" + ld::test::test_plugin("scripted_policy") + " "; }

  std::string sets(const std::string& cache) const {
    return " --quiet --set policy.plugin=scripted --set policy.cuts=0,0,0,2,2,2,2,2,4 --set policy.period=3"
           " --set policy.state=true --set cache.plugin=" +
           cache;
  }

  // The same run uninterrupted, once per cache and epochs.
  fs::path reference(const std::string& cache, int epochs = 6) {
    const fs::path out = dir_.path() / ("reference-" + cache + "-" + std::to_string(epochs));
    if (!fs::exists(out / "summary.json")) {
      Result r = ld::test::run_ldrop(
          "run " + config_ + " --out " + out.string() + sets(cache) + " --set train.epochs=" + std::to_string(epochs),
          env());
      EXPECT_EQ(r.code, 0) << r.output;
    }
    return out;
  }

  // The run stopped by SIGTERM before training step `step`.
  Result interrupted(const fs::path& out, const std::string& cache, std::int64_t step) {
    return ld::test::run_ldrop("run " + config_ + " --out " + out.string() + sets(cache),
                               env() + "LEARNDROP_TEST_SIGTERM_AT_STEP=" + std::to_string(step) + " ");
  }

  ld::test::TempDir data_, dir_;
  std::string config_;
};

}  // namespace

TEST_F(Resume, SigtermThenResumeIsBitIdenticalBeforeAfterAndBetweenDrops) {
  struct Case {
    std::string cache;
    std::int64_t step;
    std::string what;
  };
  const Case cases[] = {
      {"ram", 5, "before the first drop"},
      {"ram", 14, "in the epoch right after the first drop"},
      {"disk", 14, "in the epoch right after the first drop"},
      {"ram", 30, "after the second drop"},
      {"disk", 30, "after the second drop"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.cache + " cache, SIGTERM at step " + std::to_string(c.step) + ", " + c.what);
    const fs::path out = dir_.path() / ("resumed-" + c.cache + "-" + std::to_string(c.step));
    Result r = interrupted(out, c.cache, c.step);
    ASSERT_EQ(r.code, 143) << r.output;
    EXPECT_NE(r.output.find("interrupted by SIGTERM; stopped, checkpoint " + (out / "checkpoint").string()),
              std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("go on with: ldrop run --resume " + out.string()), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(out / "summary.json"));
    // The disk cache is kept for the resume; the ram cache cannot be.
    const bool dropped = c.step > 12;
    const bool kept = fs::exists(out / "cache") && !fs::is_empty(out / "cache");
    EXPECT_EQ(kept, c.cache == "disk" && dropped);

    r = ld::test::run_ldrop("run --resume " + out.string() + " --quiet", env());
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("resumed from " + (out / "checkpoint").string()), std::string::npos) << r.output;
    if (dropped) {
      const std::string how =
          c.cache == "disk" ? "cache reopened without recomputation" : "cache rebuilt from the frozen stages";
      EXPECT_NE(r.output.find(how), std::string::npos) << r.output;
    }
    expect_identical(reference(c.cache), out);
    // A finished run keeps no checkpoint, and has nothing to resume.
    EXPECT_FALSE(fs::exists(out / "checkpoint"));
    json summary = json::parse(slurp(out / "summary.json"));
    ASSERT_EQ(summary["resumes"].size(), 1u);
    EXPECT_EQ(summary["resumes"][0]["step"], c.step);
    r = ld::test::run_ldrop("run --resume " + out.string(), env());
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_NE(r.output.find("the run has finished (summary.json); nothing to resume"), std::string::npos) << r.output;
  }
}

// Issue 31, defect 10: a second SIGTERM during a cache build ended the
// process at once, silently, leaving the partial cache file behind.
TEST_F(Resume, ASecondSigtermDuringABuildStopsItRemovesThePartialFileAndTheLastCheckpointResumes) {
  const fs::path out = dir_.path() / "twice";
  Result r = ld::test::run_ldrop("run " + config_ + " --out " + out.string() + sets("disk"),
                                 env() + "LEARNDROP_TEST_SIGTERM_TWICE_IN_BUILD=1 ");
  ASSERT_EQ(r.code, 143) << r.output;
  EXPECT_NE(r.output.find("second signal: stopping at the next batch without a new checkpoint"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("error: interrupted by SIGTERM twice; stopped without a new checkpoint, temporary files "
                          "removed"),
            std::string::npos)
      << r.output;
  std::vector<std::string> left;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out / "cache", ec)) left.push_back(e.path().filename().string());
  EXPECT_TRUE(left.empty()) << "left in cache/: " << left.front();
  EXPECT_FALSE(fs::exists(out / "summary.json"));
  EXPECT_FALSE(fs::exists(out / ".lock"));
  // The checkpoint of epoch 1 (before the build at step 12) was kept.
  ASSERT_TRUE(fs::exists(out / "checkpoint"));
  r = ld::test::run_ldrop("run --resume " + out.string() + " --quiet", env());
  ASSERT_EQ(r.code, 0) << r.output;
  expect_identical(reference("disk"), out);
}

// Issue 31, defect 10: a cache kept for a resume in a cache.dir outside the
// run folder, or by a checkpoint a resume passed over, was never removed.
TEST_F(Resume, ACacheKeptOutsideTheRunFolderGoesWithItsCheckpoint) {
  ld::test::TempDir disk;
  auto kept = [&] {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(disk.path(), ec)) {
      if (ld::is_kept_cache_file(e.path().filename().string())) names.push_back(e.path().filename().string());
    }
    return names;
  };
  const std::string with = sets("disk") + " --set cache.dir=" + disk.str();
  const fs::path out = dir_.path() / "outside";
  // Stopped after the second drop: the cut-4 cache is kept in cache.dir.
  Result r = ld::test::run_ldrop("run " + config_ + " --out " + out.string() + with,
                                 env() + "LEARNDROP_TEST_SIGTERM_AT_STEP=30 ");
  ASSERT_EQ(r.code, 143) << r.output;
  ASSERT_EQ(kept().size(), 1u);
  EXPECT_NE(slurp(out / "kept-caches").find((disk.path() / kept()[0]).string()), std::string::npos);
  // A new run in the folder, not a resume: the kept file is nobody's.
  r = ld::test::run_ldrop("run " + config_ + " --out " + out.string() + with + " --set train.epochs=1", env());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(kept().empty()) << kept()[0];
  EXPECT_FALSE(fs::exists(out / "kept-caches"));

  // A resume that passes over checkpoint/ (corrupt) for checkpoint.prev
  // (cut 2) never reopens the cut-4 file: the finished run removes it.
  const fs::path over = dir_.path() / "passed-over";
  ASSERT_EQ(ld::test::run_ldrop("run " + config_ + " --out " + over.string() + with,
                                env() + "LEARNDROP_TEST_SIGTERM_AT_STEP=30 ")
                .code,
            143);
  ASSERT_EQ(kept().size(), 1u);
  fs::resize_file(over / "checkpoint" / "tensors.pt", 10);
  r = ld::test::run_ldrop("run --resume " + over.string() + " --quiet", env());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from the older complete checkpoint"), std::string::npos) << r.output;
  EXPECT_TRUE(kept().empty()) << kept()[0];
  EXPECT_FALSE(fs::exists(over / "kept-caches"));
  expect_identical(reference("disk"), over);
}

TEST_F(Resume, EveryBuiltInPolicyOptimizerAndAugmentationResumesBitIdentical) {
  // The policies' own state (learn-drop's scores and guards, autofreeze's
  // gradient norms, freezeout's schedule), Adam's moments, and the cached
  // views and feature shifts of an augmented CIFAR set.
  ld::test::TempDir cifar;
  ASSERT_EQ(ld::test::run_shell(std::string(LDROP_FIXTURE_EXE) + " " + cifar.str() + " --cifar 20").code, 0);
  const std::string cifar_sets =
      " --set dataset.plugin=cifar10 --set dataset.root=" + cifar.str() +
      " --set dataset.augment=crop_flip --set model.plugin=resnet --set model.variant=resnet18"
      " --set model.stem=cifar --set model.width=0.125 --set train.batch_size=16"
      " --set policy.plugin=fixed --set policy.cut=3 --set policy.epoch=2";
  struct Case {
    std::string name, sets;
    std::int64_t step;
  };
  const Case cases[] = {
      {"learn-drop", " --set policy.plugin=learn-drop --set train.epochs=10 --set cache.plugin=ram", 57},
      {"autofreeze-adam",
       " --set policy.plugin=autofreeze --set train.optimizer=adam --set train.epochs=10 --set cache.plugin=ram", 57},
      {"freezeout-adamw",
       " --set policy.plugin=freezeout --set train.optimizer=adamw --set train.epochs=10 --set cache.plugin=disk", 57},
      {"cifar-feature", cifar_sets + " --set train.epochs=6 --set cache.augment=feature --set cache.plugin=disk", 27},
      {"cifar-views",
       cifar_sets + " --set train.epochs=6 --set cache.augment=views --set cache.views=3"
                    " --set cache.plugin=ram",
       27},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path full = dir_.path() / (c.name + "-full"), part = dir_.path() / (c.name + "-resumed");
    Result r = ld::test::run_ldrop("run " + config_ + " --quiet --out " + full.string() + c.sets, env());
    ASSERT_EQ(r.code, 0) << r.output;
    r = ld::test::run_ldrop("run " + config_ + " --quiet --out " + part.string() + c.sets,
                            env() + "LEARNDROP_TEST_SIGTERM_AT_STEP=" + std::to_string(c.step) + " ");
    ASSERT_EQ(r.code, 143) << r.output;
    r = ld::test::run_ldrop("run --resume " + part.string() + " --quiet", env());
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
    expect_identical(full, part);
    EXPECT_GE(json::parse(slurp(full / "summary.json"))["dropped_stages"].get<int>(), 1);  // a drop came before
  }
}

// Issue 31, defect 6: a resume reloaded model.weights although the checkpoint
// holds every tensor, so a fine-tune could not resume once its source moved.
// From weights the default policy is cka, whose state resumes as well; so
// does freeze-probe's, whose probe keeps the stages' outputs at step 0 in the
// checkpoint: its readings after the resume (stats.jsonl) must be the
// uninterrupted run's.
TEST_F(Resume, AFineTuneResumesFromItsCheckpointAloneAfterItsSourceMoved) {
  const fs::path source = dir_.path() / "pretrained", moved = dir_.path() / "pretrained-moved";
  Result r = ld::test::run_ldrop(
      "run " + config_ + " --quiet --out " + source.string() + " --set policy.plugin=none --set train.epochs=2");
  ASSERT_EQ(r.code, 0) << r.output;
  struct Case {
    std::string policy, sets;
  };
  // A tolerance that lets freeze-probe drop at its first point, before the
  // interruption, so that its counters and the frozen prefix resume too.
  for (const Case& c : {Case{"cka", ""}, Case{"freeze-probe", " --set policy.plugin=freeze-probe"
                                                              " --set policy.tolerance=10"}}) {
    SCOPED_TRACE(c.policy);
    if (fs::exists(moved)) fs::rename(moved, source);
    const std::string sets = " --quiet --set model.weights=" + source.string() + " --set train.epochs=4" + c.sets;
    const fs::path full = dir_.path() / (c.policy + "-full"), part = dir_.path() / (c.policy + "-resumed");
    r = ld::test::run_ldrop("run " + config_ + " --out " + full.string() + sets);
    ASSERT_EQ(r.code, 0) << r.output;
    const json summary = json::parse(slurp(full / "summary.json"));
    EXPECT_EQ(summary["policy"], c.policy);
    if (c.policy == "freeze-probe") {
      ASSERT_FALSE(summary["drops"].empty());
      EXPECT_LT(summary["drops"][0]["step"].get<std::int64_t>(), 20);  // before the SIGTERM
      EXPECT_NE(slurp(full / "stats.jsonl").find("frozen_probe_loss"), std::string::npos);
    }
    r = ld::test::run_ldrop("run " + config_ + " --out " + part.string() + sets, "LEARNDROP_TEST_SIGTERM_AT_STEP=20 ");
    ASSERT_EQ(r.code, 143) << r.output;
    fs::rename(source, moved);
    r = ld::test::run_ldrop("run --resume " + part.string() + " --quiet");
    ASSERT_EQ(r.code, 0) << r.output;
    expect_identical(full, part);
  }
}

TEST_F(Resume, AStreamResumesBitIdenticalBetweenArrivalsDropsAndAddedRows) {
  // 4 parts of 64 samples, 2 epochs after each (steps 1-4 part 1, 5-12
  // part 2, 13-24 part 3, 25-40 part 4); cut 2 at step 12, after which part
  // 3's and part 4's rows are added to the cache; cut 4 at step 27.
  const std::string stream = " --set stream.parts=4 --set stream.epochs=2 --set train.epochs=8"
                             " --set policy.drop_mode=cache --set policy.cost_guard=false";
  struct Case {
    std::string cache;
    std::int64_t step;
  };
  for (const Case& c : {Case{"ram", 6}, Case{"ram", 14}, Case{"disk", 14}, Case{"ram", 26}, Case{"disk", 30}}) {
    SCOPED_TRACE(c.cache + " cache, SIGTERM at step " + std::to_string(c.step));
    const fs::path full = dir_.path() / ("stream-" + c.cache), part = dir_.path() / ("stream-" + c.cache + "-" +
                                                                                      std::to_string(c.step));
    if (!fs::exists(full / "summary.json")) {
      Result r = ld::test::run_ldrop("run " + config_ + " --out " + full.string() + sets(c.cache) + stream, env());
      ASSERT_EQ(r.code, 0) << r.output;
    }
    Result r = ld::test::run_ldrop("run " + config_ + " --out " + part.string() + sets(c.cache) + stream,
                                   env() + "LEARNDROP_TEST_SIGTERM_AT_STEP=" + std::to_string(c.step) + " ");
    ASSERT_EQ(r.code, 143) << r.output;
    r = ld::test::run_ldrop("run --resume " + part.string() + " --quiet", env());
    ASSERT_EQ(r.code, 0) << r.output;
    if (c.step > 12) {
      const std::string how =
          c.cache == "disk" ? "cache reopened without recomputation" : "cache rebuilt from the frozen stages";
      EXPECT_NE(r.output.find(how), std::string::npos) << r.output;
    }
    expect_identical(full, part);
    EXPECT_EQ(json::parse(slurp(part / "summary.json"))["arrivals"].size(), 4u);
  }
}

TEST_F(Resume, AnExternalSigtermAtAnyMomentResumesBitIdentical) {
  // Not at a chosen step: kill -TERM once the third epoch line exists (of 40).
  const fs::path out = dir_.path() / "external";
  const std::string cmd = env() + LDROP_EXE + " run " + config_ + " --out " + out.string() + sets("disk") +
                          " --set train.epochs=40 > " + (dir_.path() / "log").string() + " 2>&1 & pid=$!; " +
                          "for i in $(seq 3000); do test $(cat " + (out / "metrics.jsonl").string() +
                          " 2>/dev/null | wc -l) -ge 3 && break; sleep 0.01; done; kill -TERM $pid; wait $pid; "
                          "echo \"exit=$?\"";
  const std::string output = ld::test::run_shell(cmd).output;
  ASSERT_EQ(output, "exit=143\n") << slurp(dir_.path() / "log");
  {
    Result r = ld::test::run_ldrop(
        "run " + config_ + " --resume " + out.string() + sets("disk") + " --set train.epochs=40", env());
    ASSERT_EQ(r.code, 0) << r.output;
  }
  expect_identical(reference("disk", 40), out);
}

TEST_F(Resume, ACorruptCheckpointIsNamedAndTheOlderOneIsUsed) {
  // Stopped in epoch 4: checkpoint/ is from step 30, checkpoint.prev/ from the end of epoch 3.
  const fs::path out = dir_.path() / "corrupt";
  ASSERT_EQ(interrupted(out, "ram", 30).code, 143);
  ASSERT_TRUE(fs::exists(out / "checkpoint.prev" / "MANIFEST.json"));
  const fs::path tensors = out / "checkpoint" / "tensors.pt";
  {
    std::string bytes = slurp(tensors);
    bytes[bytes.size() / 2] ^= 0x40;  // one flipped bit
    std::ofstream(tensors, std::ios::binary | std::ios::trunc) << bytes;
  }
  Result r = ld::test::run_ldrop("run --resume " + out.string() + " --quiet", env());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find(tensors.string() + " is corrupt: its CRC-32 does not match"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("resuming from the older complete checkpoint " + (out / "checkpoint.prev").string()),
            std::string::npos)
      << r.output;
  expect_identical(reference("ram"), out);

  // Truncated, with no older one: a clear error naming the file, exit 1.
  const fs::path alone = dir_.path() / "truncated";
  ASSERT_EQ(interrupted(alone, "ram", 5).code, 143);
  ASSERT_FALSE(fs::exists(alone / "checkpoint.prev"));
  const fs::path optimizer = alone / "checkpoint" / "optimizer.pt";
  fs::resize_file(optimizer, fs::file_size(optimizer) / 2);
  r = ld::test::run_ldrop("run --resume " + alone.string(), env());
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("no usable checkpoint in " + alone.string() + ": " + optimizer.string() +
                          " is truncated or overwritten"),
            std::string::npos)
      << r.output;
}

TEST_F(Resume, AStatelessPolicyAndAChangedConfigAreRefused) {
  const fs::path out = dir_.path() / "stateless";
  Result r =
      ld::test::run_ldrop("run " + config_ + " --out " + out.string() +
                              " --quiet --set policy.plugin=scripted --set policy.cuts=0,2 --set policy.period=3",
                          env() + "LEARNDROP_TEST_SIGTERM_AT_STEP=9 ");
  ASSERT_EQ(r.code, 143) << r.output;
  // Issue 31, defect 10: said at the start, not only when the resume fails.
  EXPECT_NE(r.output.find("policy 'scripted' does not save its state (DropPolicy::has_state() is false): the "
                          "checkpoints this run writes cannot be resumed"),
            std::string::npos)
      << r.output;
  r = ld::test::run_ldrop("run --resume " + out.string(), env());
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("policy 'scripted' does not save its state (DropPolicy::has_state() is false)"),
            std::string::npos)
      << r.output;

  const fs::path changed = dir_.path() / "changed";
  ASSERT_EQ(interrupted(changed, "ram", 9).code, 143);
  r = ld::test::run_ldrop("run " + config_ + " --resume " + changed.string() + sets("ram") +
                              " --set train.lr=0.1 --set train.checkpoint_every=2",
                          env());
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("is not the config of that run"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("changed: train.lr: 0.05 -> 0.1"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("checkpoint_every"), std::string::npos) << r.output;  // not part of a run's identity
  r = ld::test::run_ldrop("run --resume " + (dir_.path() / "nowhere").string(), env());
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("no such run folder"), std::string::npos) << r.output;

  // Issue 31, defect 6: keys that say where or how fast, not what a run
  // computes, may change on resume: another cache.dir (a full disk swapped),
  // prefetch depth and loader threads. The result is the same run's.
  const fs::path swapped = dir_.path() / "swapped";
  ASSERT_EQ(interrupted(swapped, "disk", 30).code, 143);
  const fs::path other_disk = dir_.path() / "other-disk";
  r = ld::test::run_ldrop("run " + config_ + " --resume " + swapped.string() + sets("disk") +
                              " --set cache.dir=" + other_disk.string() +
                              " --set runtime.prefetch=0 --set runtime.loader_threads=1",
                          env());
  ASSERT_EQ(r.code, 0) << r.output;
  expect_identical(reference("disk"), swapped);
}

TEST_F(Resume, CheckpointEveryZeroWritesNone) {
  const fs::path out = dir_.path() / "off";
  ASSERT_EQ(interrupted(out, "ram", 30).code, 143);  // a checkpoint the next run in this folder replaces
  Result r = ld::test::run_ldrop(
      "run " + config_ + " --out " + out.string() + sets("disk") + " --set train.checkpoint_every=0",
      env() + "LEARNDROP_TEST_SIGTERM_AT_STEP=30 ");
  ASSERT_EQ(r.code, 143) << r.output;
  EXPECT_NE(r.output.find(out.string() + " holds the checkpoint of an interrupted run; starting over"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("stopped, temporary files removed, no summary written"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out / "checkpoint"));
  EXPECT_FALSE(fs::exists(out / "checkpoint.prev"));
  EXPECT_TRUE(fs::is_empty(out / "cache"));  // removed as before checkpoints existed
}

// Issue 30, part 2: every criterion trains as full training until its first
// drop, so a run that differs from another only in its policy starts from
// that run's kept checkpoint before its first drop, and ends exactly as the
// run from the start: metrics, stats (its own policy's answers, replayed),
// summary and model.pt.
TEST_F(Resume, ABranchedRunEndsAsTheRunFromTheStartForACachedAFreezeAndAStreamDrop) {
  // Cut 2 at point 10 (step 30), cut 4 at point 13 (step 39).
  const std::string late = " --set policy.cuts=0,0,0,0,0,0,0,0,0,2,2,2,4";
  struct Case {
    std::string name, sets;
    std::int64_t epoch;  // the last kept epoch before step 30
  };
  const Case cases[] = {
      {"cache", " --set policy.drop_mode=cache --set policy.cost_guard=false", 3},
      {"freeze", " --set policy.drop_mode=freeze --set policy.cost_guard=false", 3},
      // 4 parts, 2 epochs after each: epochs 5-6 end at step 24, epoch 7 has steps 25-32.
      {"stream",
       " --set stream.parts=4 --set stream.epochs=2 --set train.epochs=8 --set policy.drop_mode=cache"
       " --set policy.cost_guard=false",
       6},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path ref = dir_.path() / ("branch-ref-" + c.name), scratch = dir_.path() / ("branch-scratch-" + c.name),
                   branched = dir_.path() / ("branched-" + c.name);
    Result r = ld::test::run_ldrop("run " + config_ + " --out " + ref.string() + sets("ram") + c.sets +
                                       " --set policy.cuts=0 --set train.checkpoint_keep=all",
                                   env());
    ASSERT_EQ(r.code, 0) << r.output;
    // Every epoch's checkpoint but the last's stays; the rolling one goes.
    EXPECT_TRUE(fs::exists(ref / "checkpoints" / "epoch-1" / "MANIFEST.json"));
    EXPECT_TRUE(fs::exists(ref / "checkpoints" / ("epoch-" + std::to_string(c.epoch))));
    EXPECT_FALSE(fs::exists(ref / "checkpoint"));
    r = ld::test::run_ldrop("run " + config_ + " --out " + scratch.string() + sets("ram") + c.sets + late, env());
    ASSERT_EQ(r.code, 0) << r.output;
    r = ld::test::run_ldrop(
        "run " + config_ + " --out " + branched.string() + sets("ram") + c.sets + late + " --branch-from " + ref.string(),
        env());
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("branched from " + ref.string() + " at the end of epoch " + std::to_string(c.epoch)),
              std::string::npos)
        << r.output;
    expect_identical(scratch, branched);
    const json summary = json::parse(slurp(branched / "summary.json"));
    EXPECT_EQ(summary["branched_from"]["epoch"], c.epoch);
    EXPECT_EQ(summary["drops"].size(), 2u);
  }
}

TEST_F(Resume, ABranchIsRefusedNamingWhyAndCanStartFromTheBeginningInstead) {
  const fs::path ref = dir_.path() / "refuse-ref", plain = dir_.path() / "refuse-plain";
  const std::string base = sets("ram") + " --set policy.cost_guard=false";  // every cut asked for is a drop
  Result r = ld::test::run_ldrop(
      "run " + config_ + " --out " + ref.string() + base + " --set policy.cuts=0 --set train.checkpoint_keep=all",
      env());
  ASSERT_EQ(r.code, 0) << r.output;
  r = ld::test::run_ldrop("run " + config_ + " --out " + plain.string() + base + " --set policy.cuts=0", env());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_FALSE(fs::exists(plain / "checkpoints"));
  const std::string late = " --set policy.cuts=0,0,0,0,0,0,0,0,0,2";
  struct Case {
    std::string args, error;
  };
  const Case cases[] = {
      {late + " --set train.lr=0.1 --branch-from " + ref.string(),
       "its config differs in train.lr (0.05 there, 0.1 here); a run branches only from one that differs in the "
       "policy section"},
      {late + " --branch-from " + plain.string(),
       "it kept no epoch checkpoints (a reference run needs train.checkpoint_keep: all)"},
      {late + " --branch-from " + ref.string() + " --branch-epoch 4",
       "its checkpoint of epoch 4 comes after its first drop, at step 30 (epoch 3.75)"},
      {late + " --branch-from " + ref.string() + " --branch-epoch 9",
       "its checkpoint of epoch 9 was not kept (kept: epochs 1, 2, 3, 4, 5)"},
      {" --set policy.cuts=2 --branch-from " + ref.string(), "it kept no checkpoint before its first drop, at step 3"},
      {late + " --set policy.period=4 --branch-from " + ref.string(),
       "its policy evaluated every 3 steps, policy 'scripted' evaluates every 4"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    const fs::path out = dir_.path() / "refused";
    r = ld::test::run_ldrop("run " + config_ + " --out " + out.string() + base + c.args, env());
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_NE(r.output.find("--branch-from "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(c.error), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(out / "summary.json"));
  }
  // --branch-or-start: the same refusal, said, and a run from the start.
  const fs::path scratch = dir_.path() / "refuse-scratch", started = dir_.path() / "refuse-started";
  r = ld::test::run_ldrop("run " + config_ + " --out " + scratch.string() + base + " --set policy.cuts=2", env());
  ASSERT_EQ(r.code, 0) << r.output;
  r = ld::test::run_ldrop("run " + config_ + " --out " + started.string() + base +
                              " --set policy.cuts=2 --branch-or-start --branch-from " + ref.string(),
                          env());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("it kept no checkpoint before its first drop, at step 3 (epoch 0.375) (kept: epochs 1, 2, "
                          "3, 4, 5); training from the start"),
            std::string::npos)
      << r.output;
  expect_identical(scratch, started);
  EXPECT_TRUE(json::parse(slurp(started / "summary.json"))["branched_from"].is_null());
}
