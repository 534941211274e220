#pragma once
// CRC-32 (zlib's, the checksum of gzip and PNG) over any number of bytes:
// the one implementation of the checkpoint files and the disk cache's rows.
// Needs zlib (link ZLIB::ZLIB).

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <zlib.h>

namespace ld {

/// CRC-32 of `n` bytes at `data` (zlib's crc32 takes at most 4 GiB a call).
inline std::uint32_t crc32(const void* data, std::size_t n) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  while (n > 0) {
    const auto chunk = static_cast<uInt>(std::min<std::size_t>(n, std::size_t{1} << 30));
    crc = ::crc32(crc, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<std::uint32_t>(crc);
}

}  // namespace ld
