#include "idx_fixture.h"

#include <filesystem>
#include <stdexcept>

#include <zlib.h>

namespace ld::test {

namespace {

std::uint32_t hash(std::uint32_t a, std::uint32_t b, std::uint32_t c, std::uint32_t d) {
  std::uint32_t h = 2166136261u;
  for (std::uint32_t v : {a, b, c, d}) {
    h ^= v;
    h *= 16777619u;
    h ^= h >> 13;
  }
  return h;
}

std::uint32_t split_id(const std::string& split) { return split == "train" ? 1 : 2; }

}  // namespace

int fixture_label(const IdxFixture& f, const std::string& split, int i) {
  return static_cast<int>(hash(f.seed, split_id(split), static_cast<std::uint32_t>(i), 7) % f.classes);
}

std::uint8_t fixture_pixel(const IdxFixture& f, const std::string& split, int i, int y, int x) {
  int label = fixture_label(f, split, i);
  int half = f.size / 2;
  int by = (label / 2) % 2, bx = label % 2;
  bool lit = (y / half == by) && (x / half == bx);
  std::uint32_t noise =
      hash(f.seed, split_id(split), static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(y * f.size + x)) % 96;
  return static_cast<std::uint8_t>((lit ? 150 : 0) + noise);
}

void write_idx_file(const std::string& path, std::uint32_t magic, const std::vector<std::uint32_t>& dims,
                    const std::vector<std::uint8_t>& payload, bool gzip) {
  std::vector<std::uint8_t> bytes;
  auto put32 = [&](std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<std::uint8_t>(v >> s));
  };
  put32(magic);
  for (auto d : dims) put32(d);
  bytes.insert(bytes.end(), payload.begin(), payload.end());
  gzFile out = gzopen(path.c_str(), gzip ? "wb6" : "wbT");  // T: write without compression
  if (out == nullptr) throw std::runtime_error("cannot write " + path);
  if (!bytes.empty() &&
      gzwrite(out, bytes.data(), static_cast<unsigned>(bytes.size())) != static_cast<int>(bytes.size())) {
    gzclose(out);
    throw std::runtime_error("cannot write " + path);
  }
  gzclose(out);
}

void write_idx_fixture(const std::string& dir, const IdxFixture& f) {
  std::filesystem::create_directories(dir);
  const std::string ext = f.gzip ? ".gz" : "";
  for (const std::string split : {"train", "t10k"}) {
    int n = split == "train" ? f.train : f.test;
    std::vector<std::uint8_t> pixels, labels;
    for (int i = 0; i < n; ++i) {
      labels.push_back(static_cast<std::uint8_t>(fixture_label(f, split, i)));
      for (int y = 0; y < f.size; ++y)
        for (int x = 0; x < f.size; ++x) pixels.push_back(fixture_pixel(f, split, i, y, x));
    }
    auto s = static_cast<std::uint32_t>(f.size);
    write_idx_file(dir + "/" + split + "-images-idx3-ubyte" + ext, 0x803, {static_cast<std::uint32_t>(n), s, s}, pixels,
                   f.gzip);
    write_idx_file(dir + "/" + split + "-labels-idx1-ubyte" + ext, 0x801, {static_cast<std::uint32_t>(n)}, labels,
                   f.gzip);
  }
}

}  // namespace ld::test
