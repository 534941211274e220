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
  written_.assign(static_cast<std::size_t>(layout.count), false);
}

bool DeviceCache::grow(std::int64_t count) {
  if (!buffer_.defined() || !written_.empty()) throw ld::Error("cache device: grow before finish");
  if (count <= layout_.count) {
    throw ld::Error("cache device: grow to " + std::to_string(count) + " rows, but it holds " +
                    std::to_string(layout_.count));
  }
  if (count > capacity_) {
    const std::int64_t capacity = std::max(count, capacity_ + capacity_ / 2);
    at::Tensor bigger = allocate(capacity);
    bigger.narrow(0, 0, layout_.count).copy_(buffer_.narrow(0, 0, layout_.count));
    buffer_ = std::move(bigger);
    capacity_ = capacity;
  }
  written_.assign(static_cast<std::size_t>(count), false);
  std::fill(written_.begin(), written_.begin() + layout_.count, true);
  layout_.count = count;
  return true;
}

at::Tensor DeviceCache::index(const std::vector<std::int64_t>& rows) const {
  for (auto i : rows) {
    if (i < 0 || i >= layout_.count) {
      throw ld::Error("cache device: row " + std::to_string(i) + " out of range [0, " + std::to_string(layout_.count) +
                      ")");
    }
  }
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
  if (written_.empty()) throw ld::Error("cache device: put after finish (rows are written between begin or grow and finish)");
  std::vector<bool> in_batch(static_cast<std::size_t>(layout_.count), false);
  for (auto i : rows) {
    if (i >= 0 && i < layout_.count && (written_[static_cast<std::size_t>(i)] || in_batch[static_cast<std::size_t>(i)])) {
      throw ld::Error("cache device: row " + std::to_string(i) + " written twice");
    }
    if (i >= 0 && i < layout_.count) in_batch[static_cast<std::size_t>(i)] = true;
  }
  std::vector<std::int64_t> sizes = {static_cast<std::int64_t>(rows.size())};
  sizes.insert(sizes.end(), layout_.shape.begin(), layout_.shape.end());
  buffer_.index_copy_(0, index(rows), data.reshape(sizes));
  for (auto i : rows) written_[static_cast<std::size_t>(i)] = true;
}

void DeviceCache::finish() {
  auto missing = std::count(written_.begin(), written_.end(), false);
  if (missing != 0) throw ld::Error("cache device: finish with " + std::to_string(missing) + " rows never written");
  written_.clear();
  written_.shrink_to_fit();
}

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
