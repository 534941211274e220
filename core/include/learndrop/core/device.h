#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/Event.h>
#include <c10/core/Stream.h>

namespace ld::core {

/// Whether `setting` is a valid runtime.device: auto | cpu | cuda | cuda:N.
bool is_device_setting(const std::string& setting);

/// Resolves runtime.device: auto = the first CUDA device if LibTorch sees
/// one, else the CPU. Throws ld::Error naming runtime.device when the device
/// is not there (a CPU-only LibTorch, no GPU, an index past the last GPU).
at::Device resolve_device(const std::string& setting);

/// "cpu" or "cuda:N".
std::string device_text(at::Device device);

/// The malloc this process runs with: "jemalloc <version>" when jemalloc is
/// linked (the executables' default, core/src/alloc/malloc_conf.cpp), else
/// "system". Training is several times slower where freed pages go back to
/// the kernel at every step (docs/results.md#builds-at-training-speed).
std::string process_allocator();

/// train.precision.
enum class Precision { kFp32, kBf16, kFp16 };

/// Parses fp32 | bf16 | fp16 (validated by the config before).
Precision parse_precision(const std::string& name);
std::string precision_text(Precision p);

/// The type autocast computes convolutions and matrix products in (float
/// for fp32) and the default storage type of cached feature maps.
at::ScalarType compute_dtype(Precision p);

/// Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16 in
/// /proc/cpuinfo): only then does bf16 on the CPU pay off (docs/gpu.md).
/// The environment variable LEARNDROP_TEST_CPU_BF16 (0 or 1) overrides the
/// answer, so that tests run both branches of the switch on every CPU.
bool cpu_has_native_bf16();

/// Whether the words of a /proc/cpuinfo `flags` line (after the colon) name
/// native bfloat16 instructions (avx512_bf16 or amx_bf16).
bool flags_have_native_bf16(const std::string& flags);

/// Why `precision` cannot train on `device`, or "" when it can: fp16 needs
/// CUDA (LibTorch's CPU autocast is bfloat16 only); bf16 on the CPU needs
/// native bfloat16 instructions, without them it is slower than fp32.
std::string precision_refusal(at::Device device, Precision precision);

/// Enables autocast for `device`'s type in `precision` for its lifetime
/// (nothing for fp32), like PyTorch's `torch.autocast`; thread-local.
class AutocastGuard {
 public:
  AutocastGuard(at::Device device, Precision precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  at::DeviceType type_ = at::kCPU;
  bool was_enabled_ = false;
  at::ScalarType old_dtype_ = at::kFloat;
};

/// Dynamic loss scaling for fp16 (what torch.cuda.amp.GradScaler does):
/// the loss is multiplied by `scale` before backward; `unscale` divides the
/// gradients back and tells whether any is inf/NaN; `update` skips nothing
/// itself but halves the scale after an overflow and doubles it after
/// `growth_interval` clean steps. Device-generic (plain ATen ops).
class GradScaler {
 public:
  explicit GradScaler(bool enabled, double init_scale = 65536.0, std::int64_t growth_interval = 2000);

  bool enabled() const { return enabled_; }
  double scale() const { return scale_; }

  /// `loss` * scale (the loss itself when disabled).
  at::Tensor scale_loss(const at::Tensor& loss) const;

  /// Divides the defined gradients of `params` by the scale; true when all
  /// are finite (the step may be taken). One device synchronisation.
  bool unscale(const std::vector<at::Tensor>& params);

  /// After a step: `finite` = what unscale returned.
  void update(bool finite);

  /// Steps skipped because of inf/NaN gradients.
  std::int64_t skipped_steps() const { return skipped_; }

  /// What a checkpoint keeps of the scaler.
  struct State {
    double scale = 1.0;
    std::int64_t good_steps = 0, skipped = 0;
  };
  State state() const { return {scale_, good_steps_, skipped_}; }
  void restore(const State& s) {
    scale_ = s.scale;
    good_steps_ = s.good_steps;
    skipped_ = s.skipped;
  }

 private:
  bool enabled_;
  double scale_;
  std::int64_t growth_interval_;
  std::int64_t good_steps_ = 0;
  std::int64_t skipped_ = 0;
};

/// Copies host batches to the training device through a ring of reusable
/// staging buffers: the batch is copied (TBB-parallel) into the next free
/// buffer — pinned memory on CUDA — and from there to the device on a side
/// stream, so that the copy of the next batch overlaps the compute on this
/// one. A buffer is refilled only after the event of its previous copy has
/// completed. On the CPU nothing is copied: `stage` returns the tensors.
///
/// `stage` is called from one (producer) thread; `wait` from the thread
/// that uses the tensors, before using them.
class DeviceStager {
 public:
  struct Staged {
    std::vector<at::Tensor> tensors;  ///< On the device (or the inputs on the CPU).
    std::unique_ptr<c10::Event> ready;  ///< Recorded after the copy on the side stream.
    std::int64_t slot = -1;           ///< Ring slot used (-1: none).
  };

  /// `slots` staging buffers (at least 2 for overlap). `force_staging` runs
  /// the ring on the CPU too (tests): buffers are plain memory, copies
  /// synchronous.
  DeviceStager(at::Device device, int slots, bool force_staging = false);
  ~DeviceStager();
  DeviceStager(const DeviceStager&) = delete;
  DeviceStager& operator=(const DeviceStager&) = delete;

  /// Starts copying `host` (CPU tensors) to the device; returns at once.
  Staged stage(const std::vector<at::Tensor>& host);

  /// Makes the current stream of the calling thread wait for the copy.
  static void wait(const Staged& staged);

  at::Device device() const { return device_; }
  bool copies() const { return staging_; }
  int slots() const { return static_cast<int>(ring_.size()); }
  /// The staging buffers of slot `s` (tests: they are reused, not reallocated).
  const std::vector<at::Tensor>& buffers(int s) const { return ring_.at(static_cast<std::size_t>(s)).buffers; }
  /// Times `stage` found its slot's previous copy still running and waited.
  std::int64_t waits() const { return waits_; }

 private:
  struct Slot {
    std::vector<at::Tensor> buffers;
    std::unique_ptr<c10::Event> copied;  ///< The last copy out of this slot.
  };
  void wait_for_slot(Slot& slot);

  at::Device device_;
  bool staging_ = false;
  bool cuda_ = false;
  std::vector<Slot> ring_;
  std::size_t next_ = 0;
  std::optional<c10::Stream> side_;
  std::int64_t waits_ = 0;
};

}  // namespace ld::core
