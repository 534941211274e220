// Fuzz target: the disk cache's file reader (header checks, row CRCs, the
// prefetching reader).
// A disk cache of 6 rows of 4x4 floats is built once; each input replaces the
// content of its file (same inode, so the open cache reads it), then every row
// is read with get and through a reader. Checked: the rows come back or the
// read is refused with ld::Error; a file equal to the original reads back the
// original rows.
#include <numeric>

#include <ATen/ATen.h>

#include "fuzz_support.h"
#include "learndrop/cache.h"

using namespace ld;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<FeatureCache> cache;
fs::path file;
std::string original;
at::Tensor rows_written;
const std::vector<std::int64_t> kAll = {0, 1, 2, 3, 4, 5};

void build() {
  const fs::path dir = fuzz::scratch() / "disk";
  fs::create_directories(dir);
  CacheContext ctx;
  ctx.run_dir = dir.string();
  ctx.dir = dir.string();  // the host's cache.dir (cache interface 2)
  cache = fuzz::host().create_cache("disk", fuzz::plugin_options(PluginKind::kCache, "disk", {}), ctx);
  CacheLayout layout;
  layout.cut = 2;
  layout.count = static_cast<std::int64_t>(kAll.size());
  layout.shape = {4, 4};
  layout.dtype = at::kFloat;
  layout.key = "0123456789abcdef";
  cache->begin(layout);
  rows_written = at::arange(6 * 16, at::kFloat).view({6, 4, 4});
  cache->put(kAll, rows_written);
  cache->finish();
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".bin") file = entry.path();
  }
  fuzz::check(!file.empty(), "the disk cache wrote no .bin file");
  original = fuzz::read_file(file);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  build();
  fuzz::maybe_write_seeds([](const fs::path& dir) {
    fuzz::write_file(dir / "valid.bin", original);
    std::string flipped = original;
    flipped[4096 + 3 * 64 + 5] ^= 0x10;  // one bit of row 3
    fuzz::write_file(dir / "row3_flipped.bin", flipped);
    std::string header = original;
    header[40] ^= 0x01;  // inside the header
    fuzz::write_file(dir / "header_flipped.bin", header);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::write_file(file, data, size);  // truncates and rewrites the same inode
  const bool same = size == original.size() && std::equal(data, data + size, original.begin(),
                                                          [](std::uint8_t a, char b) { return a == static_cast<std::uint8_t>(b); });
  bool read_back = false;
  fuzz::expect_clean([&] {
    at::Tensor got = cache->get(kAll);
    fuzz::check(got.sizes() == rows_written.sizes(), "get returned another shape");
    if (same) fuzz::check(got.equal(rows_written), "the original file read back other rows");
    read_back = true;
  });
  fuzz::check(!same || read_back, "the original file was refused");
  fuzz::expect_clean([&] {
    auto reader = cache->reader({5, 0, 3, 1, 4, 2}, 4);
    at::Tensor a = reader->next();
    at::Tensor b = reader->next();
    fuzz::check(a.size(0) == 4 && b.size(0) == 2, "a reader returned batches of other sizes");
  });
  return 0;
}
