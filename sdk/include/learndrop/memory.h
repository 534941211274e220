#pragma once
// Memory sizes for cache backends: what is available (RAM, GPU memory), the
// budgets of cache.ram_budget / cache.device_budget, sizes written with
// units, and the tier `cache.plugin: auto` gives a cut. Moved out of cache.h
// (issue 22), which holds the cache interface alone.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <dlfcn.h>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include <c10/core/Device.h>

#include "learndrop/error.h"

namespace ld {

/// Bytes of memory available to new allocations (MemAvailable of
/// /proc/meminfo), 0 if unknown: what a cache may size itself against.
inline std::int64_t available_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  std::int64_t kib = 0;
  while (in >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

/// A size written as a byte count or with a unit (512MiB, 8GiB, 2.5GB);
/// throws ld::Error naming `key` otherwise.
inline std::int64_t parse_size(const std::string& key, const std::string& text) {
  std::istringstream in(text);
  double value = 0;
  std::string unit;
  if (!(in >> value) || value < 0) throw Error(key + ": expected 'auto' or a size such as 4GiB, got '" + text + "'");
  in >> unit;
  const std::pair<const char*, double> units[] = {
      {"", 1},     {"B", 1},    {"KiB", 1024.0}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1024.0 * (1 << 30)},
      {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},     {"TB", 1e12}};
  for (const auto& [name, factor] : units) {
    if (unit != name) continue;
    const double bytes = value * factor;
    // Past 2^62 the conversion to int64 is undefined behaviour ("1e30TB").
    if (!std::isfinite(bytes) || bytes > 4.6e18) {
      throw Error(key + ": '" + text + "' is larger than any memory (at most 4 EB)");
    }
    return static_cast<std::int64_t>(bytes);
  }
  throw Error(key + ": unknown unit '" + unit + "' in '" + text + "' (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)");
}

/// Free memory in bytes of CUDA device `index`, 0 if unknown (a CPU-only
/// LibTorch, no GPU): cudaMemGetInfo from the CUDA runtime LibTorch loaded,
/// looked up at run time so that the SDK needs no CUDA headers. Memory held
/// by LibTorch's caching allocator counts as used.
inline std::int64_t available_device_memory(int index) {
  using GetDevice = int (*)(int*);
  using SetDevice = int (*)(int);
  using MemGetInfo = int (*)(std::size_t*, std::size_t*);
  auto get_device = reinterpret_cast<GetDevice>(dlsym(RTLD_DEFAULT, "cudaGetDevice"));
  auto set_device = reinterpret_cast<SetDevice>(dlsym(RTLD_DEFAULT, "cudaSetDevice"));
  auto mem_get_info = reinterpret_cast<MemGetInfo>(dlsym(RTLD_DEFAULT, "cudaMemGetInfo"));
  if (!get_device || !set_device || !mem_get_info) return 0;
  int old = 0;
  if (get_device(&old) != 0) return 0;
  if (old != index && set_device(index) != 0) return 0;
  std::size_t free = 0, total = 0;
  const int rc = mem_get_info(&free, &total);
  if (old != index) set_device(old);
  return rc == 0 ? static_cast<std::int64_t>(free) : 0;
}

/// cache.ram_budget: "auto" = half of the available memory, or a size.
inline std::int64_t ram_budget(const std::string& text) {
  return text == "auto" ? available_memory() / 2 : parse_size("cache.ram_budget", text);
}

/// cache.device_budget on a run on `device`: 0 on the CPU (RAM is the
/// device memory there); "auto" = half of the GPU memory free now, or a
/// size (validated on every device).
inline std::int64_t device_budget(const std::string& text, const at::Device& device) {
  const std::int64_t size = text == "auto" ? -1 : parse_size("cache.device_budget", text);
  if (!device.is_cuda()) return 0;
  return size >= 0 ? size : available_device_memory(device.index()) / 2;
}

/// The tier `cache.plugin: auto` gives `bytes` of rows on a run on `device`:
/// "device" while they fit `device_budget` (CUDA runs), "ram" while they fit
/// `ram_budget`, "disk" otherwise. One rule for the auto plugin and `ldrop cache plan`.
inline std::string auto_tier(std::int64_t bytes, const at::Device& device, std::int64_t device_budget,
                             std::int64_t ram_budget) {
  if (device.is_cuda() && bytes <= device_budget) return "device";
  return bytes <= ram_budget ? "ram" : "disk";
}

/// Whether `auto` keeps `bytes` of rows in RAM when its disk tier fails (a
/// full disk, an unusable cache.dir): when they take at most 4/5 of the
/// `available` memory. One rule for the auto plugin and `ldrop cache plan`.
inline bool ram_fallback_fits(std::int64_t bytes, std::int64_t available) { return bytes <= available / 5 * 4; }

/// The rows a RAM cache allocates to grow from `capacity` to hold `count`
/// (a stream's arrivals): at least half again what it had, so that a
/// stream's P arrivals copy its rows O(log P) times, not P. While it grows,
/// the old and the new allocation exist at once. One rule for the ram cache
/// and `ldrop cache plan`.
inline std::int64_t grown_capacity(std::int64_t capacity, std::int64_t count) {
  return count <= capacity ? capacity : std::max(count, capacity + capacity / 2);
}

}  // namespace ld
