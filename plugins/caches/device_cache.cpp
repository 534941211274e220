#include "device_cache.h"

#include <algorithm>
#include <chrono>

#include <ATen/ATen.h>

#include "learndrop/error.h"
#include "ram_cache.h"

namespace ldcache {

at::Tensor DeviceCache::allocate(std::int64_t rows) const {
  std::vector<std::int64_t> sizes = {rows};
  sizes.insert(sizes.end(), layout_.shape.begin(), layout_.shape.end());
  try {
    return at::empty(sizes, at::TensorOptions().dtype(layout_.dtype).device(device_));
  } catch (const std::exception& e) {
    throw ld::Error("cache device: cannot allocate " + bytes_text(static_cast<double>(rows * layout_.row_bytes())) +
                    " on " + device_.str() + " for " + std::to_string(rows) + " rows at cut " +
                    std::to_string(layout_.cut) + " (use cache.plugin: auto, which falls back to RAM and disk): " +
                    e.what());
  }
}

void DeviceCache::begin(const ld::CacheLayout& layout) {
  layout_ = layout;
  buffer_ = allocate(layout.count);
  capacity_ = layout.count;
  ledger_.begin(layout.count);
}

bool DeviceCache::grow(std::int64_t count) {
  ledger_.check_grow(count);  // the contract first
  // Allocated before anything changes: a failed allocation leaves the cache as it was.
  if (count > capacity_) {
    const std::int64_t capacity = std::max(count, capacity_ + capacity_ / 2);
    at::Tensor bigger = allocate(capacity);
    bigger.narrow(0, 0, layout_.count).copy_(buffer_.narrow(0, 0, layout_.count));
    buffer_ = std::move(bigger);
    capacity_ = capacity;
  }
  ledger_.grow(count);
  layout_.count = count;
  return true;
}

at::Tensor DeviceCache::index(const std::vector<std::int64_t>& rows) const {
  for (auto i : rows) ledger_.check(i);
  return at::tensor(rows, at::kLong).to(device_);
}

void DeviceCache::put(const std::vector<std::int64_t>& rows, const at::Tensor& batch) {
  if (batch.size(0) != static_cast<std::int64_t>(rows.size())) {
    throw ld::Error("cache device: put of " + std::to_string(rows.size()) + " rows with a batch of " +
                    std::to_string(batch.size(0)));
  }
  at::Tensor data = batch.to(device_).to(layout_.dtype);
  if (data.numel() != static_cast<std::int64_t>(rows.size()) * layout_.row_elements()) {
    throw ld::Error("cache device: put of a batch whose rows do not match the cache shape");
  }
  ledger_.claim(rows);  // in range, each once (also within this call), between begin and finish
  std::vector<std::int64_t> sizes = {static_cast<std::int64_t>(rows.size())};
  sizes.insert(sizes.end(), layout_.shape.begin(), layout_.shape.end());
  buffer_.index_copy_(0, index(rows), data.reshape(sizes));
}

void DeviceCache::finish() { ledger_.finish(); }

at::Tensor DeviceCache::get(const std::vector<std::int64_t>& rows) {
  const auto start = std::chrono::steady_clock::now();
  at::Tensor out = buffer_.index_select(0, index(rows));
  std::lock_guard<std::mutex> lock(stats_mutex_);
  stats_.bytes_read += static_cast<std::int64_t>(rows.size()) * layout_.row_bytes();
  // Time of the launch, not of the gather: the host does not wait for the GPU here.
  stats_.read_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

ld::CacheStats DeviceCache::stats() const {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  return stats_;
}

std::int64_t DeviceCache::bytes() const { return buffer_.defined() ? buffer_.numel() * buffer_.element_size() : 0; }

std::string DeviceCache::describe() const {
  return "device " + device_.str() + ", cut " + std::to_string(layout_.cut) + ", " +
         std::string(c10::toString(layout_.dtype)) + " " + shape_text(layout_);
}

}  // namespace ldcache
