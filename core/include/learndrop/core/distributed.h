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
  void allreduce_sum(const std::vector<at::Tensor>& tensors, std::int64_t bucket_bytes = 25 << 20);

  /// Rank `root`'s tensors, copied into each rank's (same shapes and dtypes), in buckets.
  void broadcast_tensors(const std::vector<at::Tensor>& tensors, int root = 0);

  /// Rank `root`'s values, on every rank.
  std::vector<std::int64_t> broadcast(std::vector<std::int64_t> values, int root = 0);

  /// Waits for every rank.
  void barrier();

 private:
  struct Impl;
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ld::core
