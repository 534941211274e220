// ldrop policy replay: what a live run's policy saw is what replay feeds it.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "idx_fixture.h"
#include "learndrop/core/config.h"
#include "learndrop/core/replay.h"
#include "learndrop/core/run.h"
#include "learndrop/registrar.h"
#include "test_env.h"

namespace ld::core {

namespace {

using json = nlohmann::json;

const PluginHost& host() {
  static auto h = test::builtin_host();
  return *h;
}

// A tiny run; with `branch_from`, started from that run's kept checkpoint.
json train(const std::string& data, const std::string& out, const std::vector<std::string>& sets,
           const std::string& branch_from = "") {
  ConfigTree tree = parse_config(test::tiny_config(data), "tiny.yaml");
  for (const auto& s : sets) apply_override(tree, s);
  const RunConfig cfg = resolve_config(tree, host());
  RunOptions opts;
  opts.out_dir = out;
  opts.progress = false;
  opts.branch_from = branch_from;
  return run_training(cfg, host(), opts);
}

// The run's own policy, as its config.yaml made it, replayed on its stats.
ReplayResult replay_own(const RecordedRun& run) {
  const RunConfig cfg = resolve_config(load_config((run.dir / "config.yaml").string()), host());
  auto policy = host().create_policy(cfg.policy.plugin, cfg.policy.options, run.context);
  return replay(run, *policy, cfg.drop_mode, cfg.cost_guard, DropGuards::from(cfg.policy.options, run.context));
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
      {"freeze-probe", {"policy.plugin=freeze-probe", "policy.period=4", "policy.tolerance=100"}},
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

// Issue 30: the Python example re-implements learn-drop's change score; on a
// recorded run it decides exactly as the C++ policy (the guards are the
// python plugin's keys, set to learn-drop's).
TEST_F(Replay, ThePythonLearnDropExampleDecidesAsTheBuiltInOne) {
  const json summary = train(data_.str(), out_.str(),
                             {"policy.plugin=learn-drop", "policy.shadow=true", "policy.period=4",
                              "policy.min_progress=0", "policy.warmup=0", "policy.threshold=2", "train.epochs=6"});
  const RecordedRun run = read_recorded_run(out_.path());
  const ReplayResult cpp = replay_own(run);
  ASSERT_TRUE(cpp.drop.has_value()) << summary.dump();
  Options o = test::plugin_options(
      host(), PluginKind::kPolicy, "python",
      {{"file", std::string(LEARNDROP_SOURCE_DIR) + "/examples/python-policy/learn_drop.py"},
       {"class", "LearnDrop"},
       {"options", R"({"threshold": 2, "warmup": 0})"},
       {"period", "4"},
       {"min_progress", "0"},
       {"keep_stages", "2"},
       {"stagger", "true"}});
  auto python = host().create_policy("python", o, run.context);
  const ReplayResult py = replay(run, *python, "auto", true, DropGuards::from(o, run.context));
  ASSERT_EQ(py.decisions.size(), cpp.decisions.size());
  for (std::size_t i = 0; i < cpp.decisions.size(); ++i) {
    EXPECT_EQ(py.decisions[i].cut, cpp.decisions[i].cut) << "point " << i + 1;
  }
  ASSERT_TRUE(py.drop.has_value());
  EXPECT_EQ(py.drop->cut, cpp.drop->cut);
  EXPECT_EQ(py.drop->eval_point, cpp.drop->eval_point);
  // Its state round-trips through a checkpoint's named lists.
  auto again = host().create_policy("python", o, run.context);
  again->load_state(python->save_state());
  EXPECT_EQ(again->save_state().values, python->save_state().values);
}

// Issue 30: a Python criterion branches from a recorded run like any other
// policy: from the full run's (here a shadow run's) kept checkpoint before
// its first drop, its state rebuilt by feeding it the recorded points, and
// it ends as its run from the start.
TEST_F(Replay, APythonCriterionBranchesFromARecordedRunAndEndsAsItsRunFromTheStart) {
  const std::vector<std::string> python = {
      "train.epochs=6",
      "policy.plugin=python",
      "policy.file=" + std::string(LEARNDROP_SOURCE_DIR) + "/examples/python-policy/learn_drop.py",
      "policy.class=LearnDrop",
      R"(policy.options='{"threshold": 2, "warmup": 0}')",
      "policy.period=4",
      "policy.min_progress=0.5",
      "policy.keep_stages=2",
      "policy.stagger=true"};
  test::TempDir ref, scratch, branched;
  train(data_.str(), ref.str(),
        {"train.epochs=6", "policy.plugin=learn-drop", "policy.period=4", "policy.shadow=true",
         "train.checkpoint_keep=all"});
  const json from_start = train(data_.str(), scratch.str(), python);
  ASSERT_FALSE(from_start["drops"].empty()) << from_start.dump();
  const json summary = train(data_.str(), branched.str(), python, ref.str());
  ASSERT_TRUE(summary["branched_from"].is_object()) << summary.dump();
  EXPECT_GE(summary["branched_from"]["epoch"].get<int>(), 1);
  EXPECT_EQ(test::without_timing(summary), test::without_timing(from_start));
  auto lines = [](const std::string& dir, const char* name) {
    std::ifstream in(dir + "/" + name);
    std::vector<json> out;
    for (std::string line; std::getline(in, line);) out.push_back(test::without_timing(json::parse(line)));
    return out;
  };
  EXPECT_EQ(lines(branched.str(), "metrics.jsonl"), lines(scratch.str(), "metrics.jsonl"));
  EXPECT_EQ(lines(branched.str(), "stats.jsonl"), lines(scratch.str(), "stats.jsonl"));
}

// A mistake in the user's code stops the run with the file, the line and
// the exception, exit 1, and the checkpoint of the last epoch boundary kept;
// a wrong answer and a syntax error are named as well.
TEST_F(Replay, APythonCriterionsErrorsNameTheFileAndLineAndLoseNothing) {
  const std::string file = (out_.path() / "broken.py").string();
  std::ofstream(file) << "class Policy:\n"
                         "    def __init__(self, context, options):\n"
                         "        self.points = 0\n"
                         "    def decide(self, input):\n"
                         "        self.points += 1\n"
                         "        return input.cut if self.points < 3 else 1 / 0\n";
  std::ofstream(out_.path() / "tiny.yaml") << test::tiny_config(data_.str());
  const std::string run = (out_.path() / "run").string();
  test::LdropResult r = test::run_ldrop("run " + (out_.path() / "tiny.yaml").string() + " --out " + run +
                                        " --set policy.plugin=python --set policy.file=" + file +
                                        " --set train.epochs=4");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("python: " + file + ":6: ZeroDivisionError: division by zero (in Policy.decide)"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("Traceback (most recent call last)"), std::string::npos) << "the whole traceback is logged";
  const json state = json::parse(std::ifstream(run + "/checkpoint/state.json"));
  EXPECT_EQ(state["run_state"]["epoch"], 2) << "the checkpoint of the last epoch boundary";

  std::ofstream(file) << "class Policy:\n"
                         "    def __init__(self, context, options): pass\n"
                         "    def decide(self, input): return '3'\n";
  r = test::run_ldrop("run " + (out_.path() / "tiny.yaml").string() + " --out " + run + "-wrong" +
                      " --set policy.plugin=python --set policy.file=" + file);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("Policy.decide returned '3' (a str) as the cut; expected a cut (an int >= 0)"),
            std::string::npos)
      << r.output;

  std::ofstream(file) << "class Policy:\n    def decide(self input):\n        return 0\n";
  r = test::run_ldrop("run " + (out_.path() / "tiny.yaml").string() + " --out " + run + "-syntax" +
                      " --set policy.plugin=python --set policy.file=" + file);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("python: " + file + ":2: SyntaxError"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(run + "-syntax/metrics.jsonl")) << "refused before training";
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

// Issue 30: the host applies the drop guards to every policy's answer.
// `fixed` applies none itself; it asks for its cut from the first point,
// and min_progress and keep_stages hold it, in a live run, in shadow mode
// and in replay alike. The policy is told why at the next point.
TEST_F(Replay, TheHostsDropGuardsHoldAPolicyThatAppliesNoneLiveAndInReplay) {
  for (const bool shadow : {false, true}) {
    SCOPED_TRACE(shadow ? "shadow" : "live");
    test::TempDir out;
    const json summary = train(data_.str(), out.str(),
                               {"policy.plugin=fixed", "policy.cut=6", "policy.epoch=0", "train.epochs=4",
                                "policy.min_progress=0.5", "policy.keep_stages=3", "policy.cost_guard=false",
                                std::string("policy.shadow=") + (shadow ? "true" : "false")});
    const RecordedRun run = read_recorded_run(out.path());
    const std::size_t allowed = run.context.num_stages - 3;
    ASSERT_GE(run.points.size(), 2u);
    ASSERT_LT(allowed, 6u) << "keep_stages must hold the cut back for this test";
    // Epoch 1 of 4: min_progress 0.5 holds the whole answer.
    std::ifstream stats(out.path() / "stats.jsonl");
    std::string line;
    ASSERT_TRUE(std::getline(stats, line));
    const json first = json::parse(line);
    EXPECT_EQ(first["decision"], 6) << "the policy's own answer is logged";
    EXPECT_EQ(first["guarded"], json({{"cut", 0}, {"by", "min_progress"}})) << first.dump();
    EXPECT_EQ(run.points[1].input.held_cut, 6u);
    EXPECT_EQ(run.points[1].input.held_reason, "held by min_progress");
    // Epoch 2: keep_stages lets `allowed` stages go.
    const auto& drops = summary[shadow ? "shadow_drops" : "drops"];
    ASSERT_EQ(drops.size(), 1u) << summary.dump();
    EXPECT_DOUBLE_EQ(drops[0]["epoch"].get<double>(), 2.0);
    EXPECT_EQ(drops[0]["to_cut"].get<std::size_t>(), allowed);
    const ReplayResult r = replay_own(run);
    ASSERT_TRUE(r.drop.has_value());
    EXPECT_DOUBLE_EQ(r.drop->epoch, 2.0);
    EXPECT_EQ(r.drop->cut, allowed);
    ASSERT_FALSE(r.held.empty());
    EXPECT_EQ(r.held[0], "point 1: held by min_progress");
  }
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
