// c10d, the engine of PyTorch's DistributedDataParallel, for LearnDrop's
// data-parallel runs. This is the only file that includes c10d (and Gloo)
// headers; it is compiled without the precompiled header, with
// USE_C10D_GLOO, when CMake found Gloo's headers (core/CMakeLists.txt).
#include "parallel/distributed.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <utility>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include "learndrop/core/text.h"
#include "learndrop/error.h"

#ifdef LEARNDROP_WITH_C10D
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace ld::core {

namespace {

// An environment variable as a whole number in [lo, hi]; `fallback` when unset.
int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < lo || n > hi) {
    throw Error(std::string("environment variable ") + name + "='" + v + "': expected a whole number in [" +
                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<int>(n);
}

}  // namespace

RankEnv rank_env_from_environment() {
  RankEnv e;
  e.world = env_int("WORLD_SIZE", 1, 1, 65536);
  e.rank = env_int("RANK", 0, 0, e.world - 1);
  e.local_world = env_int("LOCAL_WORLD_SIZE", e.world, 1, e.world);
  e.local_rank = env_int("LOCAL_RANK", e.rank % e.local_world, 0, e.local_world - 1);
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) e.master_addr = a;
  e.master_port = env_int("MASTER_PORT", e.master_port, 1, 65535);
  if (e.world > 1 && std::getenv("RANK") == nullptr) {
    throw Error("environment variable WORLD_SIZE=" + std::to_string(e.world) +
                " but RANK is not set: each process of a distributed run needs its RANK (ldrop run --nproc N sets "
                "both, as torchrun does)");
  }
  return e;
}

#ifdef LEARNDROP_WITH_C10D

bool distributed_built() { return true; }

struct ProcessGroup::Impl {
  RankEnv env;
  std::string backend;
  double timeout_seconds = 0;
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;

  // Who the failure of a collective lost: with two ranks, the other one.
  std::string lost() const {
    if (env.world == 2) return "rank " + std::to_string(1 - env.rank);
    return "one of the other " + std::to_string(env.world - 1) + " ranks";
  }

  template <class F>
  void collective(const char* what, F&& f) {
    try {
      f()->wait();
    } catch (const std::exception& e) {
      throw Error("distributed: rank " + std::to_string(env.rank) + " of " + std::to_string(env.world) + ": " + what +
                  " failed, " + lost() + " stopped or did not answer within " +
                  std::to_string(static_cast<long>(timeout_seconds)) +
                  " s (runtime.dist_timeout): " + first_line(e.what()));
    }
  }
};

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessGroup::~ProcessGroup() = default;

std::unique_ptr<ProcessGroup> ProcessGroup::connect(const RankEnv& env, const std::string& backend, at::Device device,
                                                    double timeout_seconds) {
  std::string chosen = backend == "auto" ? (device.is_cuda() ? "nccl" : "gloo") : backend;
  if (chosen == "nccl") {
    throw Error(
        "runtime.dist_backend: nccl is not in this build (a CPU build of LibTorch); use gloo, or a CUDA "
        "build (docs/distributed.md)");
  }
  if (device.is_cuda()) {
    throw Error("runtime.device " + device.str() +
                " with runtime.dist_backend gloo: this build all-reduces CPU tensors only; train on cpu");
  }
  auto impl = std::make_unique<Impl>();
  impl->env = env;
  impl->backend = chosen;
  impl->timeout_seconds = timeout_seconds;
  const auto timeout = std::chrono::milliseconds(static_cast<std::int64_t>(timeout_seconds * 1000));
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(env.master_port);
    o.isServer = env.rank == 0;
    o.numWorkers = env.world;
    o.waitWorkers = true;
    o.timeout = timeout;
    impl->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
    auto opts = c10d::ProcessGroupGloo::Options::create();
    opts->timeout = timeout;
    // Gloo's default device resolves this host's name, which a container may
    // not; GLOO_SOCKET_IFNAME picks an interface, as with PyTorch.
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost") {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    impl->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, env.rank, env.world, opts);
  } catch (const std::exception& e) {
    throw Error("distributed: rank " + std::to_string(env.rank) + " of " + std::to_string(env.world) +
                ": rendezvous at " + env.master_addr + ":" + std::to_string(env.master_port) + " failed within " +
                std::to_string(static_cast<long>(timeout_seconds)) + " s: " + first_line(e.what()));
  }
  spdlog::debug("rank {} of {}: connected ({}, store {}:{})", env.rank, env.world, chosen, env.master_addr,
                env.master_port);
  return std::unique_ptr<ProcessGroup>(new ProcessGroup(std::move(impl)));
}

int ProcessGroup::rank() const { return impl_->env.rank; }
int ProcessGroup::world() const { return impl_->env.world; }
const std::string& ProcessGroup::backend() const { return impl_->backend; }

namespace {
// Tensors of one dtype packed in order into flat buckets of at most
// `bucket_bytes`: `op` runs on each bucket, whose values are copied back.
template <class Op>
void in_buckets(const std::vector<at::Tensor>& tensors, std::int64_t bucket_bytes, Op&& op) {
  std::map<at::ScalarType, std::vector<at::Tensor>> by_type;
  for (const auto& t : tensors) {
    if (t.defined() && t.numel() > 0) by_type[t.scalar_type()].push_back(t);
  }
  for (auto& [type, list] : by_type) {
    std::size_t i = 0;
    while (i < list.size()) {
      std::vector<at::Tensor> bucket;
      std::int64_t bytes = 0;
      do {
        bucket.push_back(list[i]);
        bytes += list[i].numel() * list[i].element_size();
        ++i;
      } while (i < list.size() && bytes + list[i].numel() * list[i].element_size() <= bucket_bytes);
      std::vector<at::Tensor> flats;
      for (const auto& t : bucket) flats.push_back(t.reshape({-1}));
      std::vector<at::Tensor> flat = {at::cat(flats)};
      op(flat);
      std::int64_t offset = 0;
      for (auto& t : bucket) {
        const std::int64_t n = t.numel();
        t.copy_(flat[0].narrow(0, offset, n).view(t.sizes()));
        offset += n;
      }
    }
  }
}
}  // namespace

void ProcessGroup::allreduce_sum(const std::vector<at::Tensor>& tensors, std::int64_t bucket_bytes) {
  in_buckets(tensors, bucket_bytes, [&](std::vector<at::Tensor>& flat) {
    impl_->collective("all-reduce", [&] { return impl_->pg->allreduce(flat); });
  });
}

void ProcessGroup::broadcast_tensors(const std::vector<at::Tensor>& tensors, int root) {
  in_buckets(tensors, kBucketBytes, [&](std::vector<at::Tensor>& flat) {
    c10d::BroadcastOptions o;
    o.rootRank = root;
    impl_->collective("broadcast", [&] { return impl_->pg->broadcast(flat, o); });
  });
}

std::vector<std::int64_t> ProcessGroup::broadcast(std::vector<std::int64_t> values, int root) {
  std::vector<at::Tensor> t = {at::tensor(values, at::kLong)};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  impl_->collective("broadcast", [&] { return impl_->pg->broadcast(t, o); });
  const at::Tensor c = t[0].contiguous();
  return std::vector<std::int64_t>(c.data_ptr<std::int64_t>(), c.data_ptr<std::int64_t>() + c.numel());
}

struct GradientReducer::Impl {
  ProcessGroup::Impl& group;
  std::int64_t bucket_bytes = 0;
  std::vector<at::Tensor> params;  // every hooked parameter, by index
  struct Slot {
    int bucket = -1;  // -1: not trained now
    std::int64_t offset = 0;
  };
  struct Bucket {
    std::vector<std::size_t> members;  // parameter indices
    std::vector<at::Tensor> flat;      // one flat tensor, as c10d takes it
    std::size_t pending = 0;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<Slot> slots;
  std::vector<Bucket> buckets;
  std::vector<bool> arrived;
  std::vector<const c10::TensorImpl*> trained;  // the set the buckets are for

  Impl(ProcessGroup::Impl& g, std::int64_t bytes) : group(g), bucket_bytes(bytes) {}

  void launch(Bucket& b) { b.work = group.pg->allreduce(b.flat); }

  // The hook of parameter i: its gradient into its bucket; the bucket starts when full.
  void arrive(std::size_t i, const at::Tensor& grad) {
    const Slot& s = slots[i];
    if (s.bucket < 0 || arrived[i]) return;
    Bucket& b = buckets[static_cast<std::size_t>(s.bucket)];
    b.flat[0].narrow(0, s.offset, grad.numel()).copy_(grad.reshape({-1}));
    arrived[i] = true;
    if (--b.pending == 0) launch(b);
  }

  void reset() {
    for (auto& b : buckets) {
      b.pending = b.members.size();
      b.work.reset();
    }
    std::fill(arrived.begin(), arrived.end(), false);
  }

  void rebuild(const std::vector<at::Tensor>& now) {
    std::map<const c10::TensorImpl*, std::size_t> index;
    for (std::size_t i = 0; i < params.size(); ++i) index[params[i].unsafeGetTensorImpl()] = i;
    std::fill(slots.begin(), slots.end(), Slot{});
    buckets.clear();
    trained.clear();
    // Reverse order, one dtype per bucket, at most bucket_bytes (a larger parameter alone).
    std::map<at::ScalarType, int> open;
    std::vector<std::int64_t> used;
    for (auto it = now.rbegin(); it != now.rend(); ++it) {
      trained.push_back(it->unsafeGetTensorImpl());
      auto found = index.find(it->unsafeGetTensorImpl());
      if (found == index.end()) throw Error("internal: a trained parameter is not one of the model's");
      const std::size_t i = found->second;
      const std::int64_t bytes = it->numel() * it->element_size();
      auto o = open.find(it->scalar_type());
      if (o == open.end() || used[static_cast<std::size_t>(o->second)] + bytes > bucket_bytes) {
        buckets.emplace_back();
        used.push_back(0);
        open[it->scalar_type()] = static_cast<int>(buckets.size() - 1);
        o = open.find(it->scalar_type());
      }
      const auto b = static_cast<std::size_t>(o->second);
      slots[i] = {o->second, used[b] / static_cast<std::int64_t>(it->element_size())};
      buckets[b].members.push_back(i);
      used[b] += bytes;
    }
    for (std::size_t b = 0; b < buckets.size(); ++b) {
      const at::Tensor& first = params[buckets[b].members.front()];
      buckets[b].flat = {at::empty({used[b] / static_cast<std::int64_t>(first.element_size())}, first.options())};
    }
    reset();
  }
};

GradientReducer::GradientReducer(ProcessGroup& group, const std::vector<at::Tensor>& params, std::int64_t bucket_bytes)
    : impl_(std::make_shared<Impl>(*group.impl_, bucket_bytes)) {
  impl_->params = params;
  impl_->slots.resize(params.size());
  impl_->arrived.assign(params.size(), false);
  const std::weak_ptr<Impl> weak = impl_;
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!params[i].requires_grad()) continue;
    // A hook outlives the reducer on the model's parameters; it then does nothing.
    params[i].register_hook([weak, i](const at::Tensor& grad) {
      if (auto impl = weak.lock()) impl->arrive(i, grad);
    });
  }
}

GradientReducer::~GradientReducer() = default;

void GradientReducer::prepare(const std::vector<at::Tensor>& trained) {
  bool same = trained.size() == impl_->trained.size();
  for (std::size_t k = 0; same && k < trained.size(); ++k) {
    same = trained[trained.size() - 1 - k].unsafeGetTensorImpl() == impl_->trained[k];
  }
  if (same) {
    impl_->reset();
  } else {
    impl_->rebuild(trained);
  }
}

void GradientReducer::finish() {
  Impl& m = *impl_;
  for (auto& b : m.buckets) {
    if (b.work) continue;
    for (std::size_t i : b.members) {  // no gradient this step: zeros, as on a rank that had one
      if (!m.arrived[i]) b.flat[0].narrow(0, m.slots[i].offset, m.params[i].numel()).zero_();
    }
    m.launch(b);
  }
  for (auto& b : m.buckets) {
    m.group.collective("all-reduce", [&] { return b.work; });
    for (std::size_t i : b.members) {
      at::Tensor& p = m.params[i];
      const at::Tensor sum = b.flat[0].narrow(0, m.slots[i].offset, p.numel()).view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(sum);
      } else {
        p.mutable_grad() = sum.clone(p.suggest_memory_format());
      }
    }
  }
  m.reset();
}

std::int64_t GradientReducer::bytes_per_step() const {
  std::int64_t bytes = 0;
  for (const auto& b : impl_->buckets) bytes += b.flat[0].numel() * b.flat[0].element_size();
  return bytes;
}

#else  // no c10d in this build

bool distributed_built() { return false; }

struct ProcessGroup::Impl {};
ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessGroup::~ProcessGroup() = default;
std::unique_ptr<ProcessGroup> ProcessGroup::connect(const RankEnv&, const std::string&, at::Device, double) {
  throw Error(
      "distributed runs need c10d's Gloo backend, which this build lacks: install libgloo-dev "
      "(tools/setup.sh) and configure again");
}
int ProcessGroup::rank() const { return 0; }
int ProcessGroup::world() const { return 1; }
const std::string& ProcessGroup::backend() const {
  static const std::string none = "none";
  return none;
}
void ProcessGroup::allreduce_sum(const std::vector<at::Tensor>&, std::int64_t) {}
void ProcessGroup::broadcast_tensors(const std::vector<at::Tensor>&, int) {}
std::vector<std::int64_t> ProcessGroup::broadcast(std::vector<std::int64_t> values, int) { return values; }

struct GradientReducer::Impl {};
GradientReducer::GradientReducer(ProcessGroup&, const std::vector<at::Tensor>&, std::int64_t) {}
GradientReducer::~GradientReducer() = default;
void GradientReducer::prepare(const std::vector<at::Tensor>&) {}
void GradientReducer::finish() {}
std::int64_t GradientReducer::bytes_per_step() const { return 0; }

#endif

}  // namespace ld::core
