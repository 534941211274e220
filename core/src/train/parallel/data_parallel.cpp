#include "parallel/data_parallel.h"

#include <algorithm>
#include <numeric>
#include <string>
#include <utility>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "parallel/distributed.h"
#include "learndrop/core/files.h"
#include "learndrop/core/seeds.h"

namespace ld::core {

namespace {

// A rank's part of an epoch: its contiguous 1/world of every global batch
// (batch s covers order[s*B, (s+1)*B) of the shared permutation), in step
// order, so that its feed's batch s (of B/world rows) is its part of batch s.
std::vector<std::int64_t> shard_order(const std::vector<std::int64_t>& order, std::int64_t batch, std::int64_t steps,
                                      int rank, int world) {
  std::vector<std::int64_t> out;
  const auto n = static_cast<std::int64_t>(order.size());
  for (std::int64_t s = 0; s < steps; ++s) {
    const std::int64_t begin = s * batch, rows = std::min(batch, n - begin);
    out.insert(out.end(), order.begin() + begin + rows * rank / world,
               order.begin() + begin + rows * (rank + 1) / world);
  }
  return out;
}

}  // namespace

DataParallel::DataParallel(ProcessGroup* group, const RunConfig& cfg, ParallelParts parts)
    : group_(group), cfg_(cfg), p_(parts) {
  if (group_) reducer_ = std::make_unique<GradientReducer>(*group_, p_.model.parameters());
}

DataParallel::~DataParallel() = default;

int DataParallel::rank() const { return group_ ? group_->rank() : -1; }

bool DataParallel::decides() const { return !group_ || group_->rank() == 0; }

std::pair<std::int64_t, std::int64_t> DataParallel::test_rows(std::int64_t n) const {
  const std::int64_t rank = group_ ? group_->rank() : 0, world = group_ ? group_->world() : 1;
  return {n * rank / world, n * (rank + 1) / world};
}

void DataParallel::reduce(const std::vector<at::Tensor>& tensors) {
  if (group_) group_->allreduce_sum(tensors);
}

std::vector<std::int64_t> DataParallel::epoch_order(std::int64_t epoch, std::vector<std::int64_t> all) {
  shard_epoch_ = !shard_sizes_.empty();
  if (shard_epoch_) {
    const int r = group_->rank();
    return core::epoch_order(shard_sizes_[static_cast<std::size_t>(r)], mix_seed(cfg_.seed, 0x7368617264ULL + r),
                             epoch);
  }
  if (!group_) return all;
  return shard_order(all, cfg_.train.batch_size, p_.steps_per_epoch, group_->rank(), group_->world());
}

std::int64_t DataParallel::global_rows(std::int64_t s) const {
  const std::int64_t batch = cfg_.train.batch_size;
  if (!shard_epoch_) return std::min(batch, p_.n_train - s * batch);
  const std::int64_t local = batch / group_->world();
  std::int64_t rows = 0;
  for (std::int64_t m : shard_sizes_) rows += std::clamp<std::int64_t>(m - s * local, 0, local);
  return rows;
}

double DataParallel::loss_share(std::int64_t s, std::int64_t rows) const {
  if (!group_) return 1;
  return static_cast<double>(rows) / static_cast<double>(global_rows(s));
}

void DataParallel::before_backward(const std::vector<at::Tensor>& trained) {
  if (reducer_) reducer_->prepare(trained);
}

void DataParallel::after_backward(RunTotals& totals) {
  if (!reducer_) return;
  reducer_->finish();  // the buckets' all-reduces ran during the backward pass
  if (totals.allreduce_bytes_first == 0) totals.allreduce_bytes_first = reducer_->bytes_per_step();
  totals.allreduce_bytes_last = reducer_->bytes_per_step();
}

void DataParallel::reduce_epoch(EpochTally& tally, RunTotals& totals, std::int64_t flops_full_before) {
  if (!group_) return;
  at::Tensor counts = at::tensor({tally.seen, tally.flops, totals.flops_full - flops_full_before}, at::kLong);
  group_->allreduce_sum({tally.loss_sum, tally.correct_sum, counts});
  tally.seen = counts[0].item<std::int64_t>();
  tally.flops = counts[1].item<std::int64_t>();
  totals.flops_full = flops_full_before + counts[2].item<std::int64_t>();
}

void DataParallel::sync_buffers() {
  if (!group_) return;
  at::NoGradGuard no_grad;
  group_->broadcast_tensors(p_.model.buffers());
}

void DataParallel::reduce_point(at::Tensor& loss_since_point) {
  if (!group_) return;
  group_->allreduce_sum({loss_since_point});
  sync_buffers();  // a drop's cache is built from the same frozen stages on every rank
}

Decision DataParallel::broadcast(Decision d) {
  if (!group_) return d;
  const std::vector<std::int64_t> got =
      group_->broadcast({static_cast<std::int64_t>(d.cut), static_cast<std::int64_t>(d.mode)});
  d.cut = static_cast<std::size_t>(got[0]);
  d.mode = static_cast<DropModeHint>(got[1]);
  if (group_->rank() != 0) d.reason = "rank 0's decision";
  return d;
}

DropPlan DataParallel::agree(DropPlan plan) {
  if (!group_) return plan;
  const std::vector<std::int64_t> got =
      group_->broadcast({plan.drop ? 1 : 0, static_cast<std::int64_t>(plan.mode)});
  if (group_->rank() == 0) return plan;
  const bool drop = got[0] != 0;
  const auto mode = static_cast<DropMode>(got[1]);
  if (drop != plan.drop || mode != plan.mode) {
    plan.drop = drop;
    plan.mode = mode;
    for (const auto& o : plan.options) {
      if (o.mode == mode) plan.chosen = o;
    }
    plan.held = drop ? "" : "rank 0's cost guard held the drop";
  }
  return plan;
}

void DataParallel::shard_before_first_drop(std::int64_t epoch, std::size_t cut) {
  if (!group_ || p_.controller.cache_cut() != 0 || std::min(cut, p_.model.num_stages()) == 0) return;
  p_.feed.stop();  // its order becomes shard positions below
  const int world = group_->world(), rank = group_->rank();
  const std::int64_t batch = cfg_.train.batch_size;
  const std::vector<std::int64_t> all = core::epoch_order(p_.n_train, cfg_.seed, epoch);
  const std::int64_t covered = std::min(p_.n_train, p_.steps_per_epoch * batch);
  std::vector<std::int64_t> mine;
  std::size_t epoch_rows = 0;  // this epoch's order: the start of the shard
  shard_sizes_.assign(static_cast<std::size_t>(world), 0);
  for (int q = 0; q < world; ++q) {
    std::vector<std::int64_t> part = shard_order(all, batch, p_.steps_per_epoch, q, world);
    if (q == rank) epoch_rows = part.size();
    for (std::int64_t j = covered + q; j < p_.n_train; j += world) part.push_back(all[static_cast<std::size_t>(j)]);
    shard_sizes_[static_cast<std::size_t>(q)] = static_cast<std::int64_t>(part.size());
    if (q == rank) mine = std::move(part);
  }
  // This epoch's order is the start of the shard: positions 0, 1, ...
  std::vector<std::int64_t> order(epoch_rows);
  std::iota(order.begin(), order.end(), std::int64_t{0});
  p_.feed.reorder(std::move(order));
  const nlohmann::json record = {{"rank", rank}, {"world_size", world}, {"epoch", epoch + 1}, {"samples", mine}};
  atomic_write(p_.out.dir() / "cache_shard.json", record.dump() + "\n");
  spdlog::debug("rank {}: cache shard of {} samples", rank, mine.size());
  p_.controller.set_shard(std::move(mine));
}

}  // namespace ld::core
