#pragma once
// The data-parallel part of a run (docs/distributed.md): which rows a rank
// trains on, its loss weight, the gradient all-reduce, the reduced metrics,
// rank 0's decisions and the cache shards. In a run of one process every
// call is a no-op or the identity, so the loop reads the same either way.

#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "learndrop/policy.h"
#include "run/run_setup.h"
#include "loop/run_state.h"

namespace ld::core {

class GradientReducer;
class ProcessGroup;

/// What the data-parallel part acts on (parts of RunParts).
struct ParallelParts {
  StagedModel& model;
  DropController& controller;
  BatchFeed& feed;
  const RunOutput& out;
  std::int64_t n_train;          ///< Training samples of every rank.
  std::int64_t steps_per_epoch;  ///< Steps of a full epoch (global batches).
};

class DataParallel {
 public:
  /// `group` is null in a run of one process.
  DataParallel(ProcessGroup* group, const RunConfig& cfg, ParallelParts parts);
  ~DataParallel();

  bool active() const { return group_ != nullptr; }
  /// This process's rank; -1 in a run of one process.
  int rank() const;
  /// Whether this process asks the policy (rank 0, or the only process).
  bool decides() const;
  /// The test rows [first, last) of `n` this process evaluates.
  std::pair<std::int64_t, std::int64_t> test_rows(std::int64_t n) const;
  /// Sums each tensor over the ranks, in place.
  void reduce(const std::vector<at::Tensor>& tensors);

  /// This process's sample order of `epoch`, given the epoch's order of
  /// every sample: its contiguous 1/world of every global batch, or, once
  /// the cache is sharded, a permutation of its own shard's positions.
  std::vector<std::int64_t> epoch_order(std::int64_t epoch, std::vector<std::int64_t> all);
  /// The weight of this rank's mean loss at step `s` of a batch of `rows`:
  /// its share of the global batch (1 alone).
  double loss_share(std::int64_t s, std::int64_t rows) const;

  /// Around the backward pass: the gradient all-reduce overlapped with it.
  void before_backward(const std::vector<at::Tensor>& trained);
  void after_backward(RunTotals& totals);

  /// The epoch's metrics summed over every rank's rows.
  void reduce_epoch(EpochTally& tally, RunTotals& totals, std::int64_t flops_full_before);
  /// Rank 0's buffers (batch-norm statistics) copied to every rank, so that
  /// evaluations, a drop's cache and the saved model are the same model on
  /// every rank. Frozen stages' buffers are equal already and stay bit-exact.
  void sync_buffers();
  /// At an evaluation point: the period's loss summed over the ranks, buffers synced.
  void reduce_point(at::Tensor& loss_since_point);
  /// Rank 0's decision on every rank.
  Decision broadcast(Decision d);
  /// Rank 0's drop plan on every rank: each rank weighs the drop with its
  /// own shard size (they differ by a row), so near the cost guard's margin
  /// one rank would cache, another freeze or hold (issue 31, defect 4).
  DropPlan agree(DropPlan plan);

  /// Before a data-parallel run's first cached drop to `cut` > 0: each rank's cache
  /// shard becomes the samples of its part of this epoch's batches (and of
  /// the left-out last rows, dealt in turn), disjoint and covering; the rest
  /// of the epoch goes on in shard positions (the feed is stopped and
  /// reordered; the drop resumes it), and later epochs permute each rank's
  /// own shard.
  void shard_before_first_drop(std::int64_t epoch, std::size_t cut);

 private:
  // The rows of global batch `s` over all ranks.
  std::int64_t global_rows(std::int64_t s) const;

  ProcessGroup* group_;
  const RunConfig& cfg_;
  ParallelParts p_;
  std::unique_ptr<GradientReducer> reducer_;
  std::vector<std::int64_t> shard_sizes_;  // every rank's cache shard, once sharded
  bool shard_epoch_ = false;               // the epoch permutes this rank's shard
};

}  // namespace ld::core
