#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ld::test {

/// A small learnable image set in MNIST's idx format: each class lights up
/// its own block of the image, plus deterministic noise.
struct IdxFixture {
  int train = 256;
  int test = 64;
  int size = 16;  ///< Images are size x size, one channel.
  int classes = 4;
  bool gzip = true;
  std::uint32_t seed = 1;
};

/// Writes {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] into `dir`.
void write_idx_fixture(const std::string& dir, const IdxFixture& f = {});

/// Writes one idx file from raw bytes (magic, dims, payload) for malformed-input tests.
void write_idx_file(const std::string& path, std::uint32_t magic, const std::vector<std::uint32_t>& dims,
                    const std::vector<std::uint8_t>& payload, bool gzip);

/// The pixel of sample `i` of `split` ("train" or "t10k") at (y, x), and its
/// label, exactly as written by write_idx_fixture.
std::uint8_t fixture_pixel(const IdxFixture& f, const std::string& split, int i, int y, int x);
int fixture_label(const IdxFixture& f, const std::string& split, int i);

}  // namespace ld::test
