#pragma once

#include <cstdint>
#include <vector>

namespace ld::core {

/// Mixes two 64-bit values into a well-spread seed.
std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b);

/// The epoch's sample order: a Fisher-Yates shuffle seeded from the run
/// seed and the epoch (identical on every run with the same seed).
std::vector<std::int64_t> epoch_order(std::int64_t n, std::uint64_t seed, std::int64_t epoch);

}  // namespace ld::core
