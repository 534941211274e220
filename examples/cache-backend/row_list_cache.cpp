// An example cache backend written against the LearnDrop SDK alone:
// `row-list` keeps every cached row as its own tensor in RAM. It is slower
// than the built-in `ram` cache (one allocation per row, no parallel gather)
// and exists to show the contract a backend keeps:
//
// - begin / put / finish (and grow, for a stream's new rows), enforced by
//   ld::RowLedger: each row once, in range, between begin and finish;
// - get and readers return rows in the storage type, on the cache's device;
// - bytes() and stats() report what it holds and reads (stats() may be
//   called while a reader's thread reads: it takes a lock).
//
// Its conformance test (conformance_test.cpp) runs the SDK's suite on it.

#include <chrono>
#include <mutex>

#include <ATen/ATen.h>
#include <learndrop/sdk.h>

#include "row_list_cache.h"

namespace example {

void RowListCache::begin(const ld::CacheLayout& layout) {
  layout_ = layout;
  rows_.assign(static_cast<std::size_t>(layout.count), at::Tensor());
  ledger_.begin(layout.count);
}

void RowListCache::put(const std::vector<std::int64_t>& rows, const at::Tensor& batch) {
  if (batch.size(0) != static_cast<std::int64_t>(rows.size())) {
    throw ld::Error("cache row-list: put of " + std::to_string(rows.size()) + " rows with a batch of " +
                    std::to_string(batch.size(0)));
  }
  if (batch.numel() != static_cast<std::int64_t>(rows.size()) * layout_.row_elements()) {
    throw ld::Error("cache row-list: put of a batch whose rows do not match the cache shape");
  }
  ledger_.claim(rows);  // throws before anything is written
  const at::Tensor data = batch.to(at::kCPU).to(layout_.dtype).contiguous();
  for (std::size_t k = 0; k < rows.size(); ++k) {
    rows_[static_cast<std::size_t>(rows[k])] = data[static_cast<std::int64_t>(k)].reshape(layout_.shape).clone();
  }
}

void RowListCache::finish() { ledger_.finish(); }

bool RowListCache::grow(std::int64_t count) {
  ledger_.grow(count);  // after finish, larger than before
  rows_.resize(static_cast<std::size_t>(count));
  layout_.count = count;
  return true;  // in place: the old rows stay where they are
}

at::Tensor RowListCache::get(const std::vector<std::int64_t>& rows) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<at::Tensor> picked;
  picked.reserve(rows.size());
  for (auto r : rows) {
    ledger_.check(r);
    picked.push_back(rows_[static_cast<std::size_t>(r)]);
  }
  at::Tensor out = picked.empty() ? at::empty({0}, layout_.dtype) : at::stack(picked);
  std::lock_guard<std::mutex> lock(stats_mutex_);
  stats_.bytes_read += static_cast<std::int64_t>(rows.size()) * layout_.row_bytes();
  stats_.read_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

std::int64_t RowListCache::bytes() const { return ledger_.count() * layout_.row_bytes(); }

std::string RowListCache::describe() const {
  return "row-list, cut " + std::to_string(layout_.cut) + ", " + std::to_string(ledger_.count()) + " rows";
}

ld::CacheStats RowListCache::stats() const {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  return stats_;
}

}  // namespace example
