#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "learndrop/error.h"

namespace ld {

/// The bookkeeping of the FeatureCache write contract, for cache backends:
/// rows are written between `begin` (or `grow`) and `finish`, each once and
/// in range, and `finish` needs every row. A backend keeps one ledger and
/// calls it from the same-named methods (and `check` from `get`); each call
/// throws ld::Error, prefixed with the cache's name, on a misuse, and a put
/// that is refused marks none of its rows. The built-in caches and the
/// example backend (examples/cache-backend) use it.
///
/// Example:
/// ```
/// void MyCache::put(const std::vector<std::int64_t>& rows, const at::Tensor& batch) {
///   ledger_.claim(rows);  // throws before anything is written
///   ... write batch[k] to row rows[k] ...
/// }
/// ```
class RowLedger {
 public:
  /// `who` starts every error ("cache ram").
  explicit RowLedger(std::string who) : who_(std::move(who)) {}

  /// A new cache of `count` rows, none written yet.
  void begin(std::int64_t count) {
    if (count < 0) throw Error(who_ + ": begin with " + std::to_string(count) + " rows");
    count_ = count;
    written_.assign(static_cast<std::size_t>(count), false);
    begun_ = open_ = true;
  }

  /// A finished cache of `count` rows (one reopened from storage).
  void restore(std::int64_t count) {
    count_ = count;
    written_.clear();
    begun_ = true;
    open_ = false;
  }

  /// Throws as `grow(count)` would, changing nothing: a cache checks the
  /// contract before it allocates, and grows the ledger once it has.
  void check_grow(std::int64_t count) const {
    if (!begun_ || open_) throw Error(who_ + ": grow before finish");
    if (count <= count_) {
      throw Error(who_ + ": grow to " + std::to_string(count) + " rows, but it holds " + std::to_string(count_) +
                  " (a cache does not shrink)");
    }
  }

  /// After `finish`: the cache holds `count` rows from now on; the old ones
  /// stay written, the new ones are to be put before the next `finish`.
  void grow(std::int64_t count) {
    check_grow(count);
    written_.assign(static_cast<std::size_t>(count), false);
    std::fill(written_.begin(), written_.begin() + count_, true);
    count_ = count;
    open_ = true;
  }

  /// Before a put writes `rows`: the cache is open and every row is in range
  /// and not written before (nor twice in `rows`). Marks them written, or
  /// throws naming the first that is not and marks none.
  void claim(const std::vector<std::int64_t>& rows) {
    if (!open_) {
      throw Error(who_ + (begun_ ? ": put after finish (rows are written between begin or grow and finish)"
                                 : ": put before begin"));
    }
    for (std::size_t k = 0; k < rows.size(); ++k) {
      try {
        check(rows[k]);
        if (written_[static_cast<std::size_t>(rows[k])]) throw Error(who_ + ": row " + std::to_string(rows[k]) + " written twice");
      } catch (const Error&) {
        for (std::size_t j = 0; j < k; ++j) written_[static_cast<std::size_t>(rows[j])] = false;
        throw;
      }
      written_[static_cast<std::size_t>(rows[k])] = true;
    }
  }

  /// Every row written: the cache is complete and readable.
  void finish() {
    if (!open_) throw Error(who_ + (begun_ ? ": finish twice" : ": finish before begin"));
    const auto missing = std::count(written_.begin(), written_.end(), false);
    if (missing != 0) throw Error(who_ + ": finish with " + std::to_string(missing) + " rows never written");
    written_.clear();
    written_.shrink_to_fit();
    open_ = false;
  }

  /// `row` is one of the cache's rows; throws naming it otherwise.
  void check(std::int64_t row) const {
    if (row < 0 || row >= count_) {
      throw Error(who_ + ": row " + std::to_string(row) + " out of range [0, " + std::to_string(count_) + ")");
    }
  }

  std::int64_t count() const { return count_; }
  /// Between begin (or grow) and finish.
  bool open() const { return open_; }

 private:
  std::string who_;
  std::int64_t count_ = 0;
  std::vector<bool> written_;
  bool begun_ = false;
  bool open_ = false;
};

}  // namespace ld
