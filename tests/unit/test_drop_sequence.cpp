// The drop sequence (core/src/train/drop/drop_sequence.h) on its own: the parts of
// a real tiny run (set_up_run on an idx fixture) with a scripted policy, fed
// evaluation points as the loop feeds them. Each test checks one step of
// policy → shadow → cost plan → apply → report.
#include <gtest/gtest.h>

#include <deque>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "parallel/data_parallel.h"
#include "drop/drop_sequence.h"
#include "idx_fixture.h"
#include "learndrop/core/plugin_host.h"
#include "run/run_report.h"
#include "run/run_setup.h"
#include "test_env.h"

namespace ld::core {
namespace {

using json = nlohmann::json;

// Answers each point with the next scripted cut (0 once they run out) and
// keeps what it was shown.
class ScriptedPolicy : public DropPolicy {
 public:
  explicit ScriptedPolicy(std::deque<std::size_t> cuts) : cuts_(std::move(cuts)) {}
  Decision decide(const PolicyInput& in) override {
    seen.push_back(in);
    std::size_t cut = 0;
    if (!cuts_.empty()) {
      cut = cuts_.front();
      cuts_.pop_front();
    }
    return {cut, "scripted " + std::to_string(cut)};
  }
  std::vector<PolicyInput> seen;

 private:
  std::deque<std::size_t> cuts_;
};

// A tiny run's parts (VGG-11-BN at width 1/16 on 256 idx images, 8 steps an
// epoch) and a drop sequence over them with `policy`.
struct TinyRun {
  test::TempDir dir;
  std::unique_ptr<PluginHost> host = test::builtin_host();
  RunConfig cfg;
  RunOptions opts;
  RunParts p;
  std::unique_ptr<RunReporter> report;
  std::unique_ptr<RunState> state;
  std::unique_ptr<DataParallel> dp;
  ScriptedPolicy policy;
  std::unique_ptr<DropSequence> drops;

  TinyRun(std::deque<std::size_t> cuts, const std::vector<std::string>& sets) : policy(std::move(cuts)) {
    test::write_idx_fixture((dir.path() / "data").string());
    ConfigTree tree = parse_config(test::tiny_config((dir.path() / "data").string()), "tiny.yaml");
    for (const auto& s : sets) apply_override(tree, s);
    cfg = resolve_config(tree, *host);
    opts.out_dir = (dir.path() / "run").string();
    opts.progress = false;
    p = set_up_run(cfg, *host, opts);
    report = std::make_unique<RunReporter>(cfg, p, opts);
    state = std::make_unique<RunState>(p.device);
    dp = std::make_unique<DataParallel>(
        nullptr, cfg, ParallelParts{*p.model, *p.controller, *p.feed, *p.out, p.n_train, p.steps_per_epoch});
    drops = std::make_unique<DropSequence>(
        cfg, DropParts{policy, *p.controller, *p.optimizer, *p.feed, *p.schedule, p.judge, p.model->num_stages()},
        *state, *dp, *report, false);
    std::vector<std::int64_t> order(static_cast<std::size_t>(p.n_train));
    std::iota(order.begin(), order.end(), 0);
    p.feed->start(order, 0, p.steps_per_epoch, 1);
  }
  ~TinyRun() { p.feed->stop(); }

  // The loop's evaluation point after `steps` steps of epoch `epoch`.
  DropEffect point(std::int64_t epoch, std::int64_t steps) {
    state->epoch = epoch;
    state->step_in_epoch = steps;
    state->step = epoch * p.steps_per_epoch + steps;
    PolicyInput in = state->point_input(p.steps_per_epoch);
    in.cut = p.controller->frozen_cut();
    in.samples = p.n_train;
    in.arrivals = 1;
    in.train_loss = 1.0;
    in.stages = p.tracker->measure(in.cut);
    return drops->at_point(std::move(in), {1.0, 32 * steps});
  }

  // The lines of stats.jsonl written so far.
  std::vector<json> stats() const {
    std::vector<json> out;
    std::ifstream in(dir.path() / "run" / "stats.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
    return out;
  }
};

TEST(DropSequence, ACachedDropMovesTheCutBuildsTheCacheAndIsRecorded) {
  TinyRun r({3}, {"policy.drop_mode=cache", "policy.cost_guard=false"});
  const DropEffect e = r.point(1, 8);
  EXPECT_TRUE(e.dropped);
  EXPECT_EQ(r.p.controller->frozen_cut(), 3u);
  EXPECT_EQ(r.p.controller->cache_cut(), 3u);
  EXPECT_GT(e.flops, 0) << "the build's forward work";
  EXPECT_DOUBLE_EQ(r.state->last_drop_epoch, 2.0);
  const auto stats = r.stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].dump().find("\"predicted_seconds\""), std::string::npos) << "no clock in stats.jsonl";
  EXPECT_NE(stats[0].dump().find("\"mode\":\"cache\""), std::string::npos) << stats[0].dump();
}

TEST(DropSequence, AFreezeOnlyDropFreezesWithoutACache) {
  TinyRun r({2}, {"policy.drop_mode=freeze", "policy.cost_guard=false"});
  const DropEffect e = r.point(0, 8);
  EXPECT_TRUE(e.dropped);
  EXPECT_EQ(r.p.controller->frozen_cut(), 2u);
  EXPECT_EQ(r.p.controller->cache_cut(), 0u) << "the frozen stages still run forward";
  EXPECT_EQ(e.flops, 0);
}

TEST(DropSequence, ShadowModeDropsNothingAndShowsThePolicyItsOwnCut) {
  TinyRun r({2, 0}, {"policy.shadow=true", "policy.cost_guard=false"});
  EXPECT_FALSE(r.point(0, 8).dropped);
  EXPECT_EQ(r.p.controller->frozen_cut(), 0u);
  EXPECT_EQ(r.state->shadow_cut, 2u);
  r.point(1, 8);
  ASSERT_EQ(r.policy.seen.size(), 2u);
  const PolicyInput& second = r.policy.seen[1];
  EXPECT_EQ(second.cut, 2u);
  EXPECT_TRUE(second.stages[0].dropped && second.stages[1].dropped);
  EXPECT_FALSE(second.stages[2].dropped);
  EXPECT_EQ(second.stages[0].relative_change, 0.0);
  EXPECT_DOUBLE_EQ(second.last_drop_epoch, 1.0);
}

TEST(DropSequence, TheCostGuardHoldsADropThatCannotPayAndTellsThePolicyNext) {
  // At the last step of the last epoch no image is left to save work on.
  TinyRun r({4, 4}, {"policy.drop_mode=cache", "policy.cost_guard=true"});
  const std::int64_t last = r.cfg.train.epochs - 1;
  EXPECT_FALSE(r.point(last, r.p.steps_per_epoch).dropped);
  EXPECT_EQ(r.p.controller->frozen_cut(), 0u);
  EXPECT_EQ(r.state->held_cut, 4u);
  EXPECT_FALSE(r.state->held_reason.empty());
  r.point(last, r.p.steps_per_epoch);
  ASSERT_EQ(r.policy.seen.size(), 2u);
  EXPECT_EQ(r.policy.seen[1].held_cut, 4u) << "the next input names the held cut";
  EXPECT_EQ(r.policy.seen[1].held_reason, r.state->held_reason);
  const auto stats = r.stats();
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_NE(stats[0].dump().find("\"held\""), std::string::npos) << stats[0].dump();
}

TEST(DropSequence, ACutAtOrBelowTheCurrentOneChangesNothing) {
  TinyRun r({3, 1, 3}, {"policy.drop_mode=cache", "policy.cost_guard=false"});
  EXPECT_TRUE(r.point(0, 8).dropped);
  EXPECT_FALSE(r.point(1, 8).dropped);
  EXPECT_FALSE(r.point(2, 8).dropped);
  EXPECT_EQ(r.p.controller->frozen_cut(), 3u);
  EXPECT_DOUBLE_EQ(r.state->last_drop_epoch, 1.0) << "only the applied drop counts";
}

TEST(DropSequence, ModelFreezeFreezesBeforeTheFirstStepWithoutAPolicyCall) {
  TinyRun r({}, {});
  r.drops->freeze_from_start(2, "model.freeze: 2");
  EXPECT_EQ(r.p.controller->frozen_cut(), 2u);
  EXPECT_EQ(r.p.controller->cache_cut(), 0u);
  EXPECT_TRUE(r.policy.seen.empty());
  r.drops->freeze_from_start(0, "nothing");
  EXPECT_EQ(r.p.controller->frozen_cut(), 2u);
}

}  // namespace
}  // namespace ld::core
