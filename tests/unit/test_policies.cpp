// Drop policies on synthetic streams of statistics: the learning-rate-aware
// change score (against a real constant gradient field), the guards, and the
// peer criteria FreezeOut and AutoFreeze.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include <ATen/ATen.h>
#include <torch/nn/modules/linear.h>

#include "learndrop/core/config.h"
#include "loop/optimizer.h"
#include "drop/stage_stats.h"
#include "learndrop/drop_guards.h"
#include "learndrop/registrar.h"
#include "learndrop/stage_streaks.h"
#include "test_env.h"

namespace ld::core {

namespace {

constexpr std::int64_t kStepsPerEpoch = 400;

PolicyContext policy_context(std::size_t stages, std::int64_t steps_per_epoch, std::int64_t epochs, double lr_warmup) {
  PolicyContext c;
  c.num_stages = stages;
  c.steps_per_epoch = steps_per_epoch;
  c.epochs = epochs;
  c.lr_warmup_epochs = lr_warmup;
  return c;
}

std::shared_ptr<DropPolicy> policy(const std::string& name, const std::map<std::string, std::string>& set,
                                   std::size_t stages, std::int64_t epochs, double lr_warmup = 0,
                                   std::int64_t steps_per_epoch = kStepsPerEpoch) {
  static auto host = test::builtin_host();
  return host->create_policy(name, test::plugin_options(*host, PluginKind::kPolicy, name, set),
                             policy_context(stages, steps_per_epoch, epochs, lr_warmup));
}

// A stream of points, `per_epoch` per epoch for `epochs`; `stats(epoch, i)`
// fills stage i. Returns the cut after each point (the host's role: the cut
// follows the answers, dropped stages are marked).
std::vector<std::size_t> replay(DropPolicy& p, std::size_t stages, std::int64_t epochs, int per_epoch,
                                const std::function<StageStats(double, std::size_t)>& stats,
                                const std::function<double(double)>& lr_sum = [](double) { return 1.0; }) {
  std::vector<std::size_t> cuts;
  std::size_t cut = 0;
  double last_drop_epoch = -1;  // as the host keeps it: when it last applied a drop
  for (int k = 1; k <= epochs * per_epoch; ++k) {
    PolicyInput in;
    in.eval_point = k;
    in.epoch = static_cast<double>(k) / per_epoch;
    in.steps_since_point = kStepsPerEpoch / per_epoch;
    in.step = k * in.steps_since_point;
    in.cut = cut;
    in.last_drop_epoch = last_drop_epoch;
    in.lr_sum = lr_sum(in.epoch);
    for (std::size_t i = 0; i < stages; ++i) {
      StageStats s = i < cut ? StageStats{} : stats(in.epoch, i);
      s.name = "s" + std::to_string(i);
      s.dropped = i < cut;
      in.stages.push_back(s);
    }
    const std::size_t next = std::max(cut, std::min(stages, p.decide(in).cut));
    if (next > cut) last_drop_epoch = in.epoch;
    cut = next;
    cuts.push_back(cut);
  }
  return cuts;
}

// The first epoch (point / per_epoch) at which the cut reached `c`, or -1.
double epoch_of_cut(const std::vector<std::size_t>& cuts, std::size_t c, int per_epoch) {
  for (std::size_t k = 0; k < cuts.size(); ++k) {
    if (cuts[k] >= c) return static_cast<double>(k + 1) / per_epoch;
  }
  return -1;
}

StageStats changing(double relative_change) {
  StageStats s;
  s.relative_change = relative_change;
  return s;
}

// One stage: a linear layer far from the origin whose gradient is the same
// vector at every step (a constant gradient field), trained by plain SGD on
// a cosine schedule with warm-up. Returns, per point, the change the host
// measures and the sum of the learning rates of the point's steps.
struct Measured {
  std::vector<double> change, lr_sum, epoch;
};
Measured constant_field(std::int64_t epochs, std::int64_t steps_per_epoch, std::int64_t period) {
  class OneStage : public StagedModel {
   public:
    OneStage() {
      add_stage("linear", torch::nn::Linear(64, 64));
      set_head(torch::nn::Linear(64, 2));
    }
  };
  at::manual_seed(1);
  OneStage model;
  model.to(at::kDouble);  // float32 would lose the last, tiny steps of the cosine to rounding
  {
    at::NoGradGuard no_grad;
    for (auto& p : model.stage_module(0)->parameters()) p.fill_(10.0);  // ‖θ‖ ≈ 650, steps of ≈ 0.1
  }
  TrainSettings t;
  t.epochs = epochs;
  t.optimizer = "sgd";
  t.lr = 0.1;
  t.momentum = 0;
  t.weight_decay = 0;
  t.lr_schedule = "cosine";
  t.warmup_epochs = 1;
  StagedOptimizer opt(model, t);
  StageStatsTracker tracker(model);
  at::manual_seed(2);
  std::vector<at::Tensor> field;
  for (const auto& p : model.parameters()) field.push_back(at::randn(p.sizes(), at::kDouble) * 0.01);
  Measured m;
  double lr_sum = 0;
  for (std::int64_t step = 0; step < epochs * steps_per_epoch; ++step) {
    const double lr = learning_rate(t, static_cast<double>(step) / static_cast<double>(steps_per_epoch));
    opt.set_lr(lr);
    auto params = model.parameters();
    for (std::size_t j = 0; j < params.size(); ++j) params[j].mutable_grad() = field[j].clone();
    opt.step();
    lr_sum += lr;
    if ((step + 1) % period == 0) {
      m.change.push_back(tracker.measure(0)[0].relative_change);
      m.lr_sum.push_back(lr_sum);
      m.epoch.push_back(static_cast<double>(step + 1) / static_cast<double>(steps_per_epoch));
      lr_sum = 0;
    }
  }
  return m;
}

}  // namespace

TEST(LearnDropPolicy, LrNormalisedScoreIsFlatUnderCosineForAConstantGradientField) {
  // The host's measured change of a stage pushed by a constant gradient,
  // scored by the policy: normalised by the learning rates it stays at its
  // reference (no stage ever looks converged); raw, the cosine decay alone
  // makes it look converged.
  const Measured m = constant_field(20, 20, 5);
  ASSERT_EQ(m.change.size(), 80u);
  // The change per unit learning rate is the same at every point (to the
  // slowly growing ‖θ‖), while the raw change falls with the schedule.
  const double first = m.change[4] / m.lr_sum[4];
  for (std::size_t k = 4; k < m.change.size(); ++k) {
    EXPECT_NEAR(m.change[k] / m.lr_sum[k] / first, 1.0, 2e-3) << "point " << k;
  }
  EXPECT_LT(m.change[78] / m.change[4], 0.05);
  for (const std::string normalize : {"lr", "none"}) {
    SCOPED_TRACE(normalize);
    auto p = policy("learn-drop",
                    {{"normalize", normalize}, {"threshold", "0.99"}, {"min_slope", "100"}, {"warmup", "0"},
                     {"max_fraction", "1"}, {"keep_stages", "0"}, {"min_progress", "0"}, {"stagger", "false"}},
                    1, 20, 1.0, 20);
    std::size_t cut = 0;
    double dropped_at = -1;
    for (std::size_t k = 0; k < m.change.size() && cut == 0; ++k) {
      PolicyInput in;
      in.eval_point = static_cast<std::int64_t>(k) + 1;
      in.epoch = m.epoch[k];
      in.lr_sum = m.lr_sum[k];
      in.steps_since_point = 5;
      StageStats s = changing(m.change[k]);
      s.name = "linear";
      in.stages = {s};
      cut = p->decide(in).cut;
      if (cut > 0) dropped_at = in.epoch;
    }
    if (normalize == "lr") {
      EXPECT_EQ(dropped_at, -1) << "the normalised score fell below 0.99";
    } else {
      EXPECT_GT(dropped_at, 1.0);
      EXPECT_LT(dropped_at, 6.0);  // the cosine has fallen by 1% long before
    }
  }
}

TEST(LearnDropPolicy, ReferenceIsNotTakenInsideTheLearningRateWarmUp) {
  // Per unit of learning rate the warm-up's changes are the largest (the
  // steepest gradients): were they the reference, every later point would
  // score below 0.5 and drop at once.
  auto stream = [](double epoch, std::size_t) { return changing(epoch <= 1.0 ? 0.3 : 0.1); };
  auto with = [&](double warmup) {
    auto p = policy("learn-drop",
                    {{"normalize", "lr"}, {"warmup", "0"}, {"min_progress", "0"}, {"stagger", "false"}}, 3, 10, warmup);
    return epoch_of_cut(replay(*p, 3, 10, 4, stream), 1, 4);
  };
  EXPECT_GT(with(0.0), 0);      // reference from the warm-up: drops
  EXPECT_EQ(with(1.0), -1.0);   // the schedule's warm-up excluded: no drop
}

TEST(LearnDropPolicy, GuardsHoldBackProgressStagesAndSuccessiveDrops) {
  // Every stage has stopped from the start (scores far below the threshold
  // and flat): only the guards decide.
  auto first_then_flat = [](double epoch, std::size_t) { return changing(epoch < 0.3 ? 1.0 : 0.01); };
  {
    auto p = policy("learn-drop", {{"warmup", "0"}, {"min_progress", "0"}, {"stagger", "false"}}, 6, 10);
    auto cuts = replay(*p, 6, 10, 4, first_then_flat);
    EXPECT_EQ(cuts.back(), 4u);  // keep_stages 2 (the default): the last two stages keep training
    EXPECT_LT(epoch_of_cut(cuts, 4, 4), 1.0);
  }
  {
    auto p = policy("learn-drop", {{"warmup", "0"}, {"min_progress", "0.4"}, {"stagger", "false"}, {"keep_stages", "1"}},
                    6, 10);
    auto cuts = replay(*p, 6, 10, 4, first_then_flat);
    EXPECT_DOUBLE_EQ(epoch_of_cut(cuts, 1, 4), 4.0);  // 40% of 10 epochs
    EXPECT_EQ(cuts.back(), 5u);
  }
  {
    // One stage stops per epoch; a cool-down of 30% of the training allows a
    // drop at most every 3 epochs.
    auto staggered = [](double epoch, std::size_t i) { return changing(epoch < 0.3 + i ? 1.0 : 0.01); };
    auto p = policy("learn-drop",
                    {{"warmup", "0"}, {"min_progress", "0"}, {"stagger", "false"}, {"keep_stages", "0"},
                     {"cooldown", "0.3"}},
                    6, 10);
    auto cuts = replay(*p, 6, 10, 4, staggered);
    const double d1 = epoch_of_cut(cuts, 1, 4), d2 = epoch_of_cut(cuts, 2, 4);
    ASSERT_GT(d1, 0);
    ASSERT_GT(d2, 0);
    EXPECT_GE(d2 - d1, 3.0 - 1e-9);
    auto free = policy("learn-drop",
                       {{"warmup", "0"}, {"min_progress", "0"}, {"stagger", "false"}, {"keep_stages", "0"}}, 6, 10);
    auto free_cuts = replay(*free, 6, 10, 4, staggered);
    EXPECT_LT(epoch_of_cut(free_cuts, 2, 4) - epoch_of_cut(free_cuts, 1, 4), 3.0);
  }
  {
    // Staggered by depth: stage i of 6 not before 0.4 + 0.6 i / 5 of the training.
    auto p = policy("learn-drop", {{"warmup", "0"}, {"min_progress", "0.4"}, {"stagger", "true"}, {"keep_stages", "1"}},
                    6, 10);
    auto cuts = replay(*p, 6, 10, 4, first_then_flat);
    EXPECT_DOUBLE_EQ(epoch_of_cut(cuts, 1, 4), 4.0);
    EXPECT_DOUBLE_EQ(epoch_of_cut(cuts, 2, 4), 5.25);  // 5.2 rounded up to the next point
    EXPECT_DOUBLE_EQ(epoch_of_cut(cuts, 3, 4), 6.5);
    EXPECT_DOUBLE_EQ(epoch_of_cut(cuts, 4, 4), 7.75);
    EXPECT_DOUBLE_EQ(epoch_of_cut(cuts, 5, 4), 9.0);
    EXPECT_EQ(cuts.back(), 5u);
  }
}

// Issue 22: DropGuards::clamp kept the progress of its last answer, so a
// drop the host held back (its cost guard) still started the cool-down. It
// is now a pure function of the input: the cool-down counts from the drop
// the host last applied (PolicyInput::last_drop_epoch).
TEST(StageStreaks, CountsPointsInARowAndResumesFromItsSavedList) {
  ld::StageStreaks s("settled_for", 4);
  for (int point = 0; point < 3; ++point) {
    s.record(0, true);
    s.record(1, true);
    s.record(2, point != 1);  // broken at the second point: counts again from 0
    s.record(3, true);
    s.record(7, true);  // past the model's stages: ignored
  }
  EXPECT_EQ(s[0], 3);
  EXPECT_EQ(s[2], 1);
  EXPECT_EQ(s.leading(0, 2), 2u);  // stage 2 has held for 1 point only
  EXPECT_EQ(s.leading(0, 1), 4u);
  EXPECT_EQ(s.leading(3, 3), 4u);  // from the current cut on
  EXPECT_EQ(s.leading(0, 4), 0u);
  ld::PolicyState state;
  s.save(state);
  ld::StageStreaks t("settled_for", 4);
  t.load(state);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(t[i], s[i]) << i;
  ld::StageStreaks other_model("settled_for", 5);
  EXPECT_NE(ld::test::error_of([&] { other_model.load(state); }).find("'settled_for' has 4 values, expected 5"),
            std::string::npos);
  ld::StageStreaks other_name("stopped_for", 4);
  EXPECT_NE(ld::test::error_of([&] { other_name.load(state); }).find("no 'stopped_for'"), std::string::npos);
  EXPECT_EQ(ld::drop_mode_hint("cache"), ld::DropModeHint::kCache);
  EXPECT_EQ(ld::drop_mode_hint("freeze"), ld::DropModeHint::kFreeze);
  EXPECT_EQ(ld::drop_mode_hint("auto"), ld::DropModeHint::kAny);
  EXPECT_NE(ld::test::error_of([] { ld::drop_mode_hint("fast"); })
                .find("policy.prefer: expected cache, freeze or auto, got 'fast'"),
            std::string::npos);
}

TEST(DropGuards, UndeclaredGuardKeysAreTheHostsLessThoseAManifestDeclares) {
  const auto all = ld::undeclared_guard_keys({});
  ASSERT_EQ(all.size(), ld::host_guard_keys().size());
  const auto some = ld::undeclared_guard_keys(ld::drop_guard_keys("0.4", "2", "1", "0"));
  EXPECT_TRUE(some.empty());
  const auto rest = ld::undeclared_guard_keys({ld::ConfigKey("cooldown", ld::ValueType::kFloat, "0.1", "mine"),
                                               ld::ConfigKey("threshold", ld::ValueType::kFloat, "0.5", "mine")});
  ASSERT_EQ(rest.size(), all.size() - 1);
  for (const auto& k : rest) {
    EXPECT_NE(k.name, "cooldown");
    for (const auto& g : ld::host_guard_keys()) {
      if (g.name == k.name) EXPECT_EQ(k.default_value, g.default_value) << k.name;  // the neutral value
    }
  }
}

TEST(DropGuards, TheCooldownCountsFromTheLastAppliedDropNotTheLastAnswer) {
  PolicyContext ctx;
  ctx.num_stages = 6;
  ctx.epochs = 10;
  const ld::Options options("policy", {{"min_progress", 0.0},
                                       {"keep_stages", std::int64_t{0}},
                                       {"max_fraction", 1.0},
                                       {"cooldown", 0.3},  // 3 of the 10 epochs
                                       {"stagger", false}});
  const ld::DropGuards g = ld::DropGuards::from(options, ctx);
  PolicyInput in;
  in.epoch = 2;
  in.cut = 0;
  std::string why;
  // No drop applied yet: nothing cools down, and asking twice answers the same.
  EXPECT_EQ(g.clamp(in, 2, &why), 2u);
  EXPECT_EQ(g.clamp(in, 2, &why), 2u) << "clamp remembered its own answer";
  EXPECT_EQ(why, "");
  // The host held that drop back; a point later the policy asks again and is not cooled down.
  in.epoch = 2.25;
  EXPECT_EQ(g.clamp(in, 2, &why), 2u);
  // The host applied a drop at epoch 2.25: until epoch 5.25 the cut stays.
  in.cut = 2;
  in.last_drop_epoch = 2.25;
  in.epoch = 5;
  EXPECT_EQ(g.clamp(in, 4, &why), 2u);
  EXPECT_EQ(why, "cooldown");
  in.epoch = 5.25;
  EXPECT_EQ(g.clamp(in, 4, &why), 4u);
  EXPECT_EQ(why, "");
}

// Issue 22: learn-drop kept (and checkpointed) every score of every stage,
// while the continuation test reads the last window + 1 of them.
TEST(LearnDropPolicy, ItsStateStaysBoundedOverALongRun) {
  auto p = policy("learn-drop", {{"window", "3"}, {"min_progress", "0.99"}}, 4, 200);
  replay(*p, 4, 200, 4, [](double epoch, std::size_t) { return changing(1.0 / (1.0 + epoch)); });
  const PolicyState state = p->save_state();
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(state.at("scores." + std::to_string(i)).size(), 4u) << "stage " << i;
}

TEST(FreezeOutPolicy, StagesFreezeAtTheirScheduledFractionsInOrder) {
  // 5 stages, 10 epochs, linear from t0 = 0.5: stage i at 0.5 + 0.125 i of
  // the training, i.e. epochs 5, 6.25, 7.5, 8.75 (the last never).
  auto any = [](double, std::size_t) { return changing(1.0); };
  auto p = policy("freezeout", {{"t0", "0.5"}, {"keep_stages", "0"}}, 5, 10);
  auto cuts = replay(*p, 5, 10, 4, any);
  EXPECT_DOUBLE_EQ(epoch_of_cut(cuts, 1, 4), 5.0);
  EXPECT_DOUBLE_EQ(epoch_of_cut(cuts, 2, 4), 6.25);
  EXPECT_DOUBLE_EQ(epoch_of_cut(cuts, 3, 4), 7.5);
  EXPECT_DOUBLE_EQ(epoch_of_cut(cuts, 4, 4), 8.75);
  EXPECT_EQ(cuts.back(), 4u);
  // Cubic: t_i = (0.5^(1/3) + (1 - 0.5^(1/3)) i / 4)^3, stage 1 at 0.6169.
  auto c = policy("freezeout", {{"t0", "0.5"}, {"scaling", "cubic"}}, 5, 10);
  auto ccuts = replay(*c, 5, 10, 100, any);
  EXPECT_DOUBLE_EQ(epoch_of_cut(ccuts, 1, 100), 5.0);
  EXPECT_NEAR(epoch_of_cut(ccuts, 2, 100), 10 * std::pow(std::cbrt(0.5) + (1 - std::cbrt(0.5)) / 4, 3), 0.011);
  // keep_stages 2 stops before the last two.
  auto k = policy("freezeout", {{"t0", "0.2"}, {"keep_stages", "2"}}, 5, 10);
  EXPECT_EQ(replay(*k, 5, 10, 4, any).back(), 3u);
}

TEST(AutoFreezePolicy, LeadingStagesWithStableGradientNormsFreeze) {
  // Stages 0 and 1 have steady gradient norms, the others swing by 50%
  // between points: the two leading stages are below the median change.
  auto grads = [](double epoch, std::size_t i) {
    StageStats s;
    const int k = static_cast<int>(std::lround(epoch * 4));
    s.mean_grad_norm = i < 2 ? 1.0 + 0.001 * k : (k % 2 ? 1.5 : 1.0);
    s.relative_change = 0.1;
    return s;
  };
  auto p = policy("autofreeze", {{"percentile", "50"}}, 6, 10);
  auto cuts = replay(*p, 6, 10, 4, grads);
  EXPECT_DOUBLE_EQ(epoch_of_cut(cuts, 2, 4), 0.5);  // the second point has the first changes
  EXPECT_EQ(cuts.back(), 2u);
  // A stage in front that still changes blocks the prefix behind it.
  auto blocked = [&](double epoch, std::size_t i) {
    StageStats s = grads(epoch, i);
    if (i == 0) s.mean_grad_norm = static_cast<int>(std::lround(epoch * 4)) % 2 ? 2.0 : 1.0;
    return s;
  };
  auto q = policy("autofreeze", {{"percentile", "50"}}, 6, 10);
  EXPECT_EQ(replay(*q, 6, 10, 4, blocked).back(), 0u);
  // min_progress holds it back.
  auto r = policy("autofreeze", {{"min_progress", "0.5"}}, 6, 10);
  EXPECT_DOUBLE_EQ(epoch_of_cut(replay(*r, 6, 10, 4, grads), 1, 4), 5.0);
}

}  // namespace ld::core
