#include "ram_cache.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include <sys/mman.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "learndrop/error.h"
#include "learndrop/memory.h"

namespace ldcache {

std::string shape_text(const ld::CacheLayout& layout) {
  std::string s = "[";
  for (std::size_t i = 0; i < layout.shape.size(); ++i) s += (i ? "," : "") + std::to_string(layout.shape[i]);
  return s + "] x " + std::to_string(layout.count);
}

std::string bytes_text(double bytes) { return ld::format_bytes(bytes); }

namespace {
// Touches every page of a fresh buffer, from every TBB worker, before the
// build writes it. A build writes its cache once, in batch order, from one
// thread: on the virtual machines this project runs on each first touch of
// a page is a fault the hypervisor serves, and the cut-3 cache of ResNet-18
// (1.2 GiB) took 2.2-2.3 s to write that way, half the build, while the
// forward pass took 1.7 s. Backed by 2 MiB pages (MADV_HUGEPAGE: the
// kernel here allows them where asked) and faulted from both cores, the
// same memory is ready in about half that (tools/bench/build.sh,
// docs/results.md#builds-at-training-speed).
void prefault(at::Tensor& buffer) {
  char* base = static_cast<char*>(buffer.data_ptr());
  const std::size_t bytes = static_cast<std::size_t>(buffer.numel()) * static_cast<std::size_t>(buffer.element_size());
  if (bytes == 0) return;
  const std::size_t huge = std::size_t{2} << 20;
  const auto first = (reinterpret_cast<std::uintptr_t>(base) + huge - 1) / huge * huge;
  const auto last = (reinterpret_cast<std::uintptr_t>(base) + bytes) / huge * huge;
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);  // a hint: errors ignored
  const std::size_t page = static_cast<std::size_t>(std::max(4096L, sysconf(_SC_PAGESIZE)));
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, (bytes + huge - 1) / huge),
                    [&](const tbb::blocked_range<std::size_t>& r) {
                      for (std::size_t c = r.begin(); c < r.end(); ++c) {
                        const std::size_t end = std::min(bytes, (c + 1) * huge);
                        for (std::size_t o = c * huge; o < end; o += page) base[o] = 0;
                      }
                    });
}

at::Tensor allocate(const ld::CacheLayout& layout, std::int64_t rows) {
  std::vector<std::int64_t> sizes = {rows};
  sizes.insert(sizes.end(), layout.shape.begin(), layout.shape.end());
  at::Tensor buffer;
  try {
    buffer = at::empty(sizes, at::TensorOptions().dtype(layout.dtype));
  } catch (const std::exception& e) {
    throw ld::Error("cache ram: cannot allocate " + bytes_text(static_cast<double>(rows * layout.row_bytes())) +
                    " for " + std::to_string(rows) + " rows at cut " + std::to_string(layout.cut) + ": " + e.what());
  }
  prefault(buffer);
  return buffer;
}
}  // namespace

void RamCache::begin(const ld::CacheLayout& layout) {
  layout_ = layout;
  buffer_ = allocate(layout, layout.count);
  capacity_ = layout.count;
  row_bytes_ = static_cast<std::size_t>(layout.row_bytes());
  ledger_.begin(layout.count);
}

bool RamCache::grow(std::int64_t count) {
  ledger_.check_grow(count);  // the contract first
  // Allocated before anything changes: a failed allocation leaves the cache as it was.
  if (count > capacity_) {
    const std::int64_t capacity = ld::grown_capacity(capacity_, count);
    at::Tensor bigger = allocate(layout_, capacity);
    std::memcpy(bigger.data_ptr(), buffer_.data_ptr(), static_cast<std::size_t>(layout_.count) * row_bytes_);
    buffer_ = std::move(bigger);
    capacity_ = capacity;
  }
  ledger_.grow(count);
  layout_.count = count;
  return true;
}

void RamCache::put(const std::vector<std::int64_t>& rows, const at::Tensor& batch) {
  if (batch.size(0) != static_cast<std::int64_t>(rows.size())) {
    throw ld::Error("cache ram: put of " + std::to_string(rows.size()) + " rows with a batch of " +
                    std::to_string(batch.size(0)));
  }
  at::Tensor data = batch.to(at::kCPU).to(buffer_.scalar_type()).contiguous();
  if (static_cast<std::size_t>(data.numel() / std::max<std::int64_t>(data.size(0), 1)) * data.element_size() !=
      row_bytes_) {
    throw ld::Error("cache ram: put of a batch whose rows do not match the cache shape");
  }
  ledger_.claim(rows);
  const char* src = static_cast<const char*>(data.data_ptr());
  char* dst = static_cast<char*>(buffer_.data_ptr());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    std::memcpy(dst + static_cast<std::size_t>(rows[r]) * row_bytes_, src + r * row_bytes_, row_bytes_);
  }
}

void RamCache::finish() { ledger_.finish(); }

at::Tensor RamCache::get(const std::vector<std::int64_t>& rows) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::int64_t> sizes = {static_cast<std::int64_t>(rows.size())};
  sizes.insert(sizes.end(), layout_.shape.begin(), layout_.shape.end());
  at::Tensor out = at::empty(sizes, at::TensorOptions().dtype(layout_.dtype));
  for (auto i : rows) ledger_.check(i);
  const char* src = static_cast<const char*>(buffer_.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, rows.size(), 16), [&](const tbb::blocked_range<std::size_t>& r) {
    for (std::size_t k = r.begin(); k < r.end(); ++k) {
      std::memcpy(dst + k * row_bytes_, src + static_cast<std::size_t>(rows[k]) * row_bytes_, row_bytes_);
    }
  });
  {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    stats_.bytes_read += static_cast<std::int64_t>(rows.size() * row_bytes_);
    stats_.read_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return out;
}

ld::CacheStats RamCache::stats() const {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  return stats_;
}

std::int64_t RamCache::bytes() const { return buffer_.defined() ? buffer_.numel() * buffer_.element_size() : 0; }


std::string RamCache::describe() const {
  return "ram, cut " + std::to_string(layout_.cut) + ", " + std::string(c10::toString(layout_.dtype)) + " " +
         shape_text(layout_);
}

}  // namespace ldcache
