// The schedule's one-place rules (core/src/train/loop): steps per epoch and
// the learning rate's warm-up, for a run and for a stream's restarts.
#include <gtest/gtest.h>

#include "learndrop/core/config.h"
#include "loop/optimizer.h"
#include "loop/schedule.h"

namespace ld::core {
namespace {

TEST(Schedule, ALastBatchOfOneSamplePerRankIsLeftOutOfItsEpoch) {
  EXPECT_EQ(steps_for(100, 32, 1), 4);  // 4 left: a batch
  EXPECT_EQ(steps_for(97, 32, 1), 3);   // 1 left: cannot train batch norm
  EXPECT_EQ(steps_for(98, 32, 1), 4);   // 2 left
  EXPECT_EQ(steps_for(65, 32, 2), 2);   // 1 left over 2 ranks
  EXPECT_EQ(steps_for(68, 32, 2), 3);   // 4 left: 2 per rank
  EXPECT_EQ(steps_for(1, 32, 1), 0);
}

TEST(Schedule, TheWarmUpIsOneFormulaForARunAndForAStreamsRestarts) {
  TrainSettings t;
  t.lr = 0.1;
  t.epochs = 10;
  t.lr_schedule = "constant";
  t.warmup_epochs = 2;
  EXPECT_DOUBLE_EQ(warmup_factor(t, 0.0), 1e-3 / 2);
  EXPECT_DOUBLE_EQ(warmup_factor(t, 1.0), (1.0 + 1e-3) / 2);
  EXPECT_EQ(warmup_factor(t, 2.0), 1.0);
  EXPECT_EQ(warmup_factor(t, 7.5), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(t, 1.0), 0.1 * (1.0 + 1e-3) / 2);
  EXPECT_EQ(learning_rate(t, 3.0), 0.1);
  t.warmup_epochs = 0;
  EXPECT_EQ(warmup_factor(t, 0.0), 1.0);

  // A stream restarting its cosine at each arrival warms up once, at the
  // start of the run, with the same factor.
  RunConfig cfg;
  cfg.train.lr = 0.1;
  cfg.train.epochs = 8;
  cfg.train.lr_schedule = "cosine";
  cfg.train.warmup_epochs = 1;
  cfg.stream.parts = 4;
  cfg.stream.epochs = 2;
  cfg.stream.lr = "restart";
  const Schedule s(cfg, 100, 10);
  TrainSettings part = cfg.train;
  part.epochs = 2;
  part.warmup_epochs = 0;
  EXPECT_DOUBLE_EQ(s.learning_rate(0.5), learning_rate(part, 0.5) * warmup_factor(cfg.train, 0.5));
  EXPECT_EQ(s.learning_rate(2.5), learning_rate(part, 0.5)) << "no warm-up after the first part";
  EXPECT_EQ(s.steps_in(0), steps_for(25, 10, 1));
}

TEST(Schedule, TheStreamsEpochRuleIsOneRuleForConfigScheduleAndBudgets) {
  StreamSettings none;
  EXPECT_EQ(none.epochs_per_part(12), 12);
  EXPECT_EQ(none.total_epochs(12), 12);
  StreamSettings five;
  five.parts = 5;
  five.epochs = 3;
  EXPECT_EQ(five.epochs_per_part(15), 3);
  EXPECT_EQ(five.total_epochs(2), 10) << "a budget of 2 epochs per part";
  // The schedule's parts follow it: epoch 14 is the last of part 4.
  RunConfig cfg;
  cfg.train.epochs = 15;
  cfg.stream = five;
  const Schedule s(cfg, 100, 10);
  EXPECT_EQ(s.part_of(14), 4);
  EXPECT_TRUE(s.last_of_part(14));
  EXPECT_FALSE(s.last_of_part(13));
  EXPECT_EQ(s.samples_after(0), 20);
}

}  // namespace
}  // namespace ld::core
