#include "learndrop/core/device.h"

#include <algorithm>
#include <cstdlib>
#include <dlfcn.h>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <tbb/parallel_for.h>
#include <torch/cuda.h>

#include "learndrop/error.h"
#include "run/torch_compat.h"

namespace ld::core {

bool is_device_setting(const std::string& setting) {
  static const std::regex pattern("auto|cpu|cuda(:[0-9]{1,3})?");
  return std::regex_match(setting, pattern);
}

at::Device resolve_device(const std::string& setting) {
  if (!is_device_setting(setting)) {
    throw Error("runtime.device: expected auto, cpu, cuda or cuda:N, got '" + setting + "'");
  }
  if (setting == "cpu") return at::Device(at::kCPU);
  const auto gpus = static_cast<std::int64_t>(torch::cuda::is_available() ? torch::cuda::device_count() : 0);
  if (setting == "auto") return gpus > 0 ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  const std::int64_t index = setting == "cuda" ? 0 : std::stoll(setting.substr(5));
  if (gpus == 0) {
    throw Error("runtime.device: '" + setting + "' but " +
                (at::Context::hasCUDA()
                     ? std::string("LibTorch sees no CUDA device (check the driver and CUDA_VISIBLE_DEVICES)")
                     : std::string("this LearnDrop is built against a LibTorch without CUDA (Debian's libtorch-dev "
                                   "is CPU-only; docs/gpu.md says how to build with a CUDA LibTorch)")) +
                "; use runtime.device: cpu or auto");
  }
  if (index >= gpus) {
    throw Error("runtime.device: '" + setting + "' but LibTorch sees " + std::to_string(gpus) + " CUDA device" +
                (gpus == 1 ? "" : "s") + " (cuda:0" + (gpus > 1 ? "..cuda:" + std::to_string(gpus - 1) : "") + ")");
  }
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

std::string device_text(at::Device device) {
  if (device.is_cpu()) return "cpu";
  return device.str() + (device.has_index() ? "" : ":0");
}

Precision parse_precision(const std::string& name) {
  if (name == "bf16") return Precision::kBf16;
  if (name == "fp16") return Precision::kFp16;
  if (name == "fp32") return Precision::kFp32;
  throw Error("train.precision: expected fp32, bf16 or fp16, got '" + name + "'");
}

std::string precision_text(Precision p) {
  switch (p) {
    case Precision::kBf16:
      return "bf16";
    case Precision::kFp16:
      return "fp16";
    default:
      return "fp32";
  }
}

at::ScalarType compute_dtype(Precision p) {
  switch (p) {
    case Precision::kBf16:
      return at::kBFloat16;
    case Precision::kFp16:
      return at::kHalf;
    default:
      return at::kFloat;
  }
}

std::string process_allocator() {
  // jemalloc's control interface, present only when jemalloc is the malloc.
  using Mallctl = int (*)(const char*, void*, std::size_t*, void*, std::size_t);
  auto* mallctl = reinterpret_cast<Mallctl>(dlsym(RTLD_DEFAULT, "mallctl"));
  if (mallctl == nullptr) return "system";
  const char* version = nullptr;
  std::size_t size = sizeof version;
  if (mallctl("version", static_cast<void*>(&version), &size, nullptr, 0) != 0 || version == nullptr) return "jemalloc";
  const std::string v = version;
  return "jemalloc " + v.substr(0, v.find('-'));
}

bool flags_have_native_bf16(const std::string& flags) {
  std::istringstream words(flags);
  std::string w;
  while (words >> w) {
    if (w == "avx512_bf16" || w == "amx_bf16") return true;
  }
  return false;
}

bool cpu_has_native_bf16() {
  // The test seam: both branches of the switch run on every CPU (tests set it).
  if (const char* forced = std::getenv("LEARNDROP_TEST_CPU_BF16"); forced != nullptr && *forced != '\0') {
    const std::string v = forced;
    if (v == "0" || v == "1") return v == "1";
    throw Error("LEARNDROP_TEST_CPU_BF16: expected 0 or 1, got '" + v + "'");
  }
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    const auto colon = line.find(':');
    return flags_have_native_bf16(colon == std::string::npos ? "" : line.substr(colon + 1));
  }
  return false;
}

std::string precision_refusal(at::Device device, Precision precision) {
  if (precision == Precision::kFp32 || device.is_cuda()) return "";
  if (precision == Precision::kFp16) {
    return "train.precision: fp16 needs a CUDA device (runtime.device is cpu): LibTorch's CPU autocast computes in "
           "bfloat16 only; use bf16 (on CPUs with native bfloat16) or fp32";
  }
  if (!cpu_has_native_bf16()) {
    return "train.precision: bf16 on this CPU would be slower than fp32: it has no native bfloat16 instructions "
           "(neither avx512_bf16 nor amx_bf16 in /proc/cpuinfo), so oneDNN emulates them; use fp32 "
           "(tools/bench/precision.sh measures both)";
  }
  return "";
}

AutocastGuard::AutocastGuard(at::Device device, Precision precision) {
  if (precision == Precision::kFp32) return;
  active_ = true;
  type_ = device.type();
  was_enabled_ = compat::autocast_enabled(type_);
  old_dtype_ = compat::autocast_dtype(type_);
  compat::set_autocast(type_, true, compute_dtype(precision));
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // Like torch.autocast's exit: the cast cache lives until the outermost
  // region ends.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  compat::set_autocast(type_, was_enabled_, old_dtype_);
}

GradScaler::GradScaler(bool enabled, double init_scale, std::int64_t growth_interval)
    : enabled_(enabled), scale_(enabled ? init_scale : 1.0), growth_interval_(growth_interval) {}

at::Tensor GradScaler::scale_loss(const at::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }

bool GradScaler::unscale(const std::vector<at::Tensor>& params) {
  if (!enabled_) return true;
  std::vector<at::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return true;
  at::_foreach_mul_(grads, 1.0 / scale_);
  // One flag per gradient on its device, summed once: a single synchronisation.
  std::vector<at::Tensor> bad;
  bad.reserve(grads.size());
  for (const auto& g : grads) bad.push_back(at::isfinite(g).logical_not().any());
  return at::stack(bad).any().item<bool>() == false;
}

void GradScaler::update(bool finite) {
  if (!enabled_) return;
  if (!finite) {
    scale_ *= 0.5;
    good_steps_ = 0;
    ++skipped_;
    return;
  }
  if (++good_steps_ >= growth_interval_) {
    scale_ *= 2.0;
    good_steps_ = 0;
  }
}

DeviceStager::DeviceStager(at::Device device, int slots, bool force_staging)
    : device_(device), staging_(device.is_cuda() || force_staging), cuda_(device.is_cuda()) {
  if (!staging_) return;
  ring_.resize(static_cast<std::size_t>(std::max(1, slots)));
  if (cuda_) {
    c10::impl::VirtualGuardImpl impl(at::kCUDA);
    side_ = impl.getStreamFromGlobalPool(device_, /*isHighPriority=*/false);
  }
}

DeviceStager::~DeviceStager() {
  // Pinned buffers must outlive the copies out of them.
  for (auto& slot : ring_) {
    if (slot.copied) wait_for_slot(slot);
  }
}

void DeviceStager::wait_for_slot(Slot& slot) {
  if (!slot.copied) return;
  if (!slot.copied->query()) {
    ++waits_;
    while (!slot.copied->query()) std::this_thread::yield();
  }
}

DeviceStager::Staged DeviceStager::stage(const std::vector<at::Tensor>& host) {
  Staged out;
  if (!staging_) {
    out.tensors = host;
    return out;
  }
  out.slot = static_cast<std::int64_t>(next_);
  Slot& slot = ring_[next_];
  next_ = (next_ + 1) % ring_.size();
  wait_for_slot(slot);
  slot.buffers.resize(host.size());
  for (std::size_t i = 0; i < host.size(); ++i) {
    const at::Tensor src = host[i].contiguous();
    at::Tensor& buf = slot.buffers[i];
    // Reallocated only when a batch needs more room (the last, smaller batch
    // of an epoch uses a view of the buffer).
    if (!buf.defined() || buf.scalar_type() != src.scalar_type() || buf.numel() < src.numel()) {
      buf = at::empty({std::max<std::int64_t>(src.numel(), 1)},
                      at::TensorOptions().dtype(src.scalar_type()).pinned_memory(cuda_));
    }
    const auto bytes = static_cast<std::size_t>(src.numel()) * src.element_size();
    const char* from = static_cast<const char*>(src.data_ptr());
    char* to = static_cast<char*>(buf.data_ptr());
    constexpr std::size_t kChunk = std::size_t{1} << 20;
    tbb::parallel_for(std::size_t{0}, (bytes + kChunk - 1) / kChunk, [&](std::size_t c) {
      const std::size_t begin = c * kChunk;
      std::memcpy(to + begin, from + begin, std::min(kChunk, bytes - begin));
    });
  }
  out.tensors.resize(host.size());
  if (!cuda_) {
    for (std::size_t i = 0; i < host.size(); ++i) {
      at::Tensor view = slot.buffers[i].narrow(0, 0, host[i].numel()).view(host[i].sizes());
      out.tensors[i] = view.clone();  // the "device" copy: never aliases the staging buffer
    }
    return out;
  }
  c10::impl::VirtualGuardImpl impl(at::kCUDA);
  const c10::Stream compute = impl.getStream(device_);
  // Device memory is allocated on the compute stream (it is freed there after
  // use); the side stream first waits for the compute stream's earlier work,
  // which may still use the memory the allocator hands out again.
  std::vector<at::Tensor> dst(host.size());
  for (std::size_t i = 0; i < host.size(); ++i) {
    dst[i] = at::empty(host[i].sizes(), at::TensorOptions().dtype(host[i].scalar_type()).device(device_));
  }
  c10::Event allocated(at::kCUDA);
  allocated.record(compute);
  allocated.block(*side_);
  {
    c10::StreamGuard on_side(*side_);
    for (std::size_t i = 0; i < host.size(); ++i) {
      dst[i].copy_(slot.buffers[i].narrow(0, 0, host[i].numel()).view(host[i].sizes()), /*non_blocking=*/true);
    }
  }
  slot.copied = std::make_unique<c10::Event>(at::kCUDA);
  slot.copied->record(*side_);
  out.ready = std::make_unique<c10::Event>(at::kCUDA);
  out.ready->record(*side_);
  out.tensors = std::move(dst);
  return out;
}

void DeviceStager::wait(const Staged& staged) {
  if (!staged.ready || staged.tensors.empty()) return;
  c10::impl::VirtualGuardImpl impl(at::kCUDA);
  staged.ready->block(impl.getStream(staged.tensors.front().device()));
}

}  // namespace ld::core
