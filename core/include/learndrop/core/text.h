#pragma once

#include "learndrop/format.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ld::core {

/// Edit distance between two strings (insertions, deletions, substitutions).
std::size_t edit_distance(const std::string& a, const std::string& b);

/// The candidate closest to `word`, or "" when none is plausibly a typo of it.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

/// "; did you mean 'x'?" or "" (for error messages).
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

/// Joins with ", ", each item quoted: 'a', 'b'.
std::string quoted_list(const std::vector<std::string>& items);

/// The first line of `text`: an exception message without the C++ backtrace
/// LibTorch (c10) appends to its own.
std::string first_line(const std::string& text);

/// `text` for an error message: itself when short, else its first 60
/// characters, "...", and its length (a 10 MB value is not echoed whole).
std::string clipped(const std::string& text);

/// 1.23 GFLOP, 456 MFLOP ... (decimal units).
std::string format_flops(double flops);

/// 1.50 MiB, 20.00 KiB ... (binary units; the SDK's, which plugins use too).
using ld::format_bytes;

/// 1:05:03 or 4:07 (h:mm:ss / m:ss).
std::string format_duration(double seconds);

/// 64-bit FNV-1a hash as 16 hex digits (stable across runs and platforms).
std::string fnv1a_hex(const std::string& data);

/// Incremental 64-bit FNV-1a: add() bytes in pieces, hex() gives what
/// fnv1a_hex gives for their concatenation.
class Fnv1a64 {
 public:
  void add(const void* data, std::size_t n);
  std::string hex() const;

 private:
  std::uint64_t h_ = 0xcbf29ce484222325ULL;  // offset basis
};

}  // namespace ld::core
