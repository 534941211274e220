// ldrop policy replay: what a live run's policy saw is what replay feeds it.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "idx_fixture.h"
#include "learndrop/core/config.h"
#include "learndrop/core/replay.h"
#include "learndrop/core/trainer.h"
#include "learndrop/registrar.h"
#include "test_env.h"

namespace ld::core {

namespace {

using json = nlohmann::json;

const PluginHost& host() {
  static auto h = test::builtin_host();
  return *h;
}

json train(const std::string& data, const std::string& out, const std::vector<std::string>& sets) {
  ConfigTree tree = parse_config(test::tiny_config(data), "tiny.yaml");
  for (const auto& s : sets) apply_override(tree, s);
  const RunConfig cfg = resolve_config(tree, host());
  RunOptions opts;
  opts.out_dir = out;
  opts.progress = false;
  return run_training(cfg, host(), opts);
}

// The run's own policy, as its config.yaml made it, replayed on its stats.
ReplayResult replay_own(const RecordedRun& run) {
  const RunConfig cfg = resolve_config(load_config((run.dir / "config.yaml").string()), host());
  auto policy = host().create_policy(cfg.policy.plugin, cfg.policy.options, run.context);
  return replay(run, *policy, cfg.drop_mode, cfg.cost_guard);
}

class Replay : public ::testing::Test {
 protected:
  void SetUp() override { test::write_idx_fixture(data_.str()); }
  test::TempDir data_, out_;
};

// Each built-in policy with keys that make it drop within the tiny run.
const std::vector<std::pair<std::string, std::vector<std::string>>>& policies() {
  static const std::vector<std::pair<std::string, std::vector<std::string>>> all = {
      {"learn-drop",
       {"policy.plugin=learn-drop", "policy.period=4", "policy.min_progress=0", "policy.warmup=0",
        "policy.threshold=2"}},
      {"none", {"policy.plugin=none"}},
      {"fixed", {"policy.plugin=fixed", "policy.cut=3", "policy.epoch=2"}},
      {"freezeout", {"policy.plugin=freezeout", "policy.period=4"}},
      {"autofreeze", {"policy.plugin=autofreeze", "policy.period=4"}},
      {"cka", {"policy.plugin=cka", "policy.period=4", "policy.threshold=0.5"}},
  };
  return all;
}

}  // namespace

TEST_F(Replay, EveryBuiltInPolicysDecisionsAreTheOnesItLogged) {
  for (const bool shadow : {true, false}) {
    for (const auto& [name, sets] : policies()) {
      SCOPED_TRACE(name + (shadow ? " (shadow)" : ""));
      test::TempDir out;
      std::vector<std::string> with = sets;
      with.push_back("train.epochs=6");
      with.push_back(std::string("policy.shadow=") + (shadow ? "true" : "false"));
      const json summary = train(data_.str(), out.str(), with);
      const RecordedRun run = read_recorded_run(out.path());
      ASSERT_GT(run.points.size(), 3u);
      const ReplayResult r = replay_own(run);
      ASSERT_FALSE(r.decisions.empty());
      for (std::size_t i = 0; i < r.decisions.size(); ++i) {
        EXPECT_EQ(r.decisions[i].cut, run.points[i].logged_cut) << "point " << i + 1;
        EXPECT_EQ(r.decisions[i].reason, run.points[i].logged_reason) << "point " << i + 1;
      }
      const auto& drops = summary[shadow ? "shadow_drops" : "drops"];
      if (name == "none") {
        EXPECT_FALSE(r.drop.has_value());
        continue;
      }
      // The policy's first drop as the run applied it (or, in shadow mode, would have).
      ASSERT_TRUE(r.drop.has_value()) << summary.dump();
      ASSERT_FALSE(drops.empty()) << summary.dump();
      EXPECT_EQ(r.drop->cut, drops[0]["to_cut"].get<std::size_t>());
      EXPECT_DOUBLE_EQ(r.drop->epoch, drops[0]["epoch"].get<double>());
      if (!shadow) EXPECT_EQ(r.drop->mode, drops[0]["mode"].get<std::string>());
      EXPECT_GT(r.drop->speedup, 1.0);
      if (!shadow) {
        EXPECT_EQ(run.shared, static_cast<std::size_t>(r.drop->eval_point)) << "points after the drop saw another network";
        EXPECT_EQ(r.not_judged, static_cast<std::int64_t>(run.points.size() - run.shared));
      }
    }
  }
}

TEST_F(Replay, AStreamRunsDecisionsAreTheOnesItLogged) {
  const json summary = train(data_.str(), out_.str(),
                             {"policy.plugin=learn-drop", "policy.shadow=true", "policy.min_progress=0",
                              "policy.warmup=0", "policy.threshold=2", "stream.parts=2", "stream.epochs=3",
                              "train.epochs=6"});
  const RecordedRun run = read_recorded_run(out_.path());
  EXPECT_EQ(run.points.back().input.arrivals, 2);
  EXPECT_LT(run.points.front().input.samples, run.points.back().input.samples);
  const ReplayResult r = replay_own(run);
  for (std::size_t i = 0; i < r.decisions.size(); ++i) {
    EXPECT_EQ(r.decisions[i].cut, run.points[i].logged_cut) << "point " << i + 1;
  }
  EXPECT_GT(run.points.front().arriving, 0) << "the cost guard reads the rows still to arrive";
}

TEST_F(Replay, ARecordWithoutTheFieldsItNeedsIsNamed) {
  train(data_.str(), out_.str(), {"train.epochs=2"});
  // An older record: no format.
  std::ifstream in(out_.path() / "stats.jsonl");
  std::string first;
  std::getline(in, first);
  json j = json::parse(first);
  in.close();
  j.erase("format");
  std::ofstream(out_.path() / "stats.jsonl") << j.dump() << "\n";
  EXPECT_NE(test::error_of([&] { read_recorded_run(out_.path()); }).find("stats.jsonl:1: written by an older LearnDrop"),
            std::string::npos);
  j["format"] = 2;
  j.erase("images_ahead");
  std::ofstream(out_.path() / "stats.jsonl") << j.dump() << "\n";
  EXPECT_NE(test::error_of([&] { read_recorded_run(out_.path()); }).find("stats.jsonl:1: no 'images_ahead'"),
            std::string::npos);
  j["images_ahead"] = 10;
  j["stages"].erase(j["stages"].size() - 1);
  std::ofstream(out_.path() / "stats.jsonl") << j.dump() << "\n";
  EXPECT_NE(test::error_of([&] { read_recorded_run(out_.path()); }).find("stages, but the run's model has"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { read_recorded_run(out_.path() / "nothing"); }).find("no such run folder"),
            std::string::npos);
}

TEST_F(Replay, HeldAnswersReachThePolicyAndReplayHoldsThemToo) {
  // A drop at the last point saves nothing: the cost guard holds it, and the
  // next point's input says so.
  train(data_.str(), out_.str(),
        {"policy.plugin=fixed", "policy.cut=3", "policy.epoch=0", "train.epochs=2", "policy.drop_mode=cache"});
  const RecordedRun run = read_recorded_run(out_.path());
  ASSERT_EQ(run.points.size(), 2u);
  EXPECT_EQ(run.points[0].input.held_cut, 0u);
  // The tiny model's drop after epoch 1 of 2 pays or not; either way the record tells the policy.
  const ReplayResult r = replay_own(run);
  if (r.drop) {
    EXPECT_TRUE(r.held.empty());
  } else {
    ASSERT_FALSE(r.held.empty());
    EXPECT_EQ(run.points[1].input.held_cut, 3u);
    EXPECT_NE(run.points[1].input.held_reason.find("cost guard"), std::string::npos);
  }
}

}  // namespace ld::core
