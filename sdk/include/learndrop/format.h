#pragma once
// Small helpers the host and plugins share, so that a size or a checksum
// reads and computes the same everywhere (issue 22: both were written twice).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace ld {

/// Bytes in binary units: "512 B", "3.91 KiB", "1.50 GiB".
inline std::string format_bytes(double bytes) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (std::fabs(bytes) >= 1024.0 && unit + 1 < 5) {
    bytes /= 1024.0;
    ++unit;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, unit == 0 ? "%.0f %s" : "%.2f %s", bytes, units[unit]);
  return buf;
}

}  // namespace ld
