#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace ld::core {

/// Where this process stands in a data-parallel run, as torchrun and cluster
/// schedulers say it: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
/// MASTER_ADDR, MASTER_PORT. Without WORLD_SIZE (or with 1) a run is not
/// distributed. docs/distributed.md.
struct RankEnv {
  int rank = 0, world = 1, local_rank = 0, local_world = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;

  bool distributed() const { return world > 1; }
};

/// Reads RankEnv from the environment; a variable that is not a number in
/// range is an ld::Error naming it and its value.
RankEnv rank_env_from_environment();

/// The size of the flat buckets collectives pack tensors into (DDP's default).
constexpr std::int64_t kBucketBytes = 25 << 20;

/// True when this build has the c10d Gloo backend (Debian's libtorch-dev and
/// libgloo-dev headers were found at configure time).
bool distributed_built();

/// One data-parallel group on PyTorch's c10d: TCPStore rendezvous at
/// MASTER_ADDR:MASTER_PORT (rank 0 serves it), ProcessGroupGloo for CPU
/// tensors (ProcessGroupNCCL is not in this build). Every collective either
/// completes on all ranks or throws ld::Error on each within the timeout,
/// naming the operation and the rank(s) lost.
class ProcessGroup {
 public:
  /// Connects `env.world` ranks; throws ld::Error when the rendezvous does
  /// not complete within `timeout_seconds`.
  static std::unique_ptr<ProcessGroup> connect(const RankEnv& env, const std::string& backend, at::Device device,
                                               double timeout_seconds);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int world() const;
  const std::string& backend() const;

  /// Sums each tensor over the ranks, in place. Tensors of one dtype are
  /// packed into flat buckets of at most `bucket_bytes` (as DDP does), one
  /// all-reduce each, so a model of many small parameters costs few messages.
  void allreduce_sum(const std::vector<at::Tensor>& tensors, std::int64_t bucket_bytes = kBucketBytes);

  /// Rank `root`'s tensors, copied into each rank's (same shapes and dtypes), in buckets of kBucketBytes.
  void broadcast_tensors(const std::vector<at::Tensor>& tensors, int root = 0);

  /// Rank `root`'s values, on every rank.
  std::vector<std::int64_t> broadcast(std::vector<std::int64_t> values, int root = 0);

 private:
  friend class GradientReducer;
  struct Impl;
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Gradient all-reduce overlapped with the backward pass, as DDP's reducer
/// does: the trained parameters, in reverse order (about the order their
/// gradients are computed), are packed into flat buckets of at most
/// `bucket_bytes`. A hook on each parameter copies its gradient into its
/// bucket, and a bucket's asynchronous all-reduce starts as soon as its last
/// gradient arrives, while autograd goes on with the earlier stages. `finish`
/// waits for the buckets and writes the sums into the parameters' `.grad`.
/// The sums are the same as ProcessGroup::allreduce_sum's.
class GradientReducer {
 public:
  /// Hooks every parameter of `params` (a model's, all of them: those a drop
  /// freezes no longer compute gradients, and their hooks do nothing).
  GradientReducer(ProcessGroup& group, const std::vector<at::Tensor>& params, std::int64_t bucket_bytes = kBucketBytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  /// Before a backward pass over `trained` (the optimizer's parameters): the
  /// buckets are rebuilt when that set changed (after a drop).
  void prepare(const std::vector<at::Tensor>& trained);
  /// After the backward pass: starts the buckets not started (a parameter
  /// without a gradient counts as zeros), waits for all, and sets each
  /// trained parameter's gradient to the sum over the ranks.
  void finish();
  /// The bytes one step all-reduces (over the current trained set).
  std::int64_t bytes_per_step() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // the parameters' hooks hold it weakly
};

}  // namespace ld::core
