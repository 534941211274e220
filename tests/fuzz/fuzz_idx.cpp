// Fuzz target: the idx reader of the mnist plugin, raw and gzip.
// Input: byte 0 chooses the file (bits 0-1: train images, train labels, test
// images, test labels) and the format (bit 2: .gz); the rest is that file's
// content. The other three files are a valid small fixture in the same format.
#include <array>

#include "dataset_fuzz.h"
#include "idx_fixture.h"

using namespace ld;
namespace fs = std::filesystem;

namespace {

const std::array<const char*, 4> kNames = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

test::IdxFixture fixture(bool gzip) {
  test::IdxFixture f;
  f.train = 24;
  f.test = 8;
  f.size = 8;
  f.classes = 4;
  f.gzip = gzip;
  return f;
}

// The fixture's four files, per format.
std::array<std::array<std::string, 4>, 2> originals;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  for (int gz = 0; gz < 2; ++gz) {
    const fs::path dir = fuzz::scratch() / ("fixture" + std::to_string(gz));
    test::write_idx_fixture(dir.string(), fixture(gz == 1));
    for (std::size_t i = 0; i < kNames.size(); ++i) {
      originals[gz][i] = fuzz::read_file(dir / (std::string(kNames[i]) + (gz ? ".gz" : "")));
    }
  }
  fuzz::maybe_write_seeds([](const fs::path& dir) {
    for (int gz = 0; gz < 2; ++gz) {
      for (std::size_t i = 0; i < kNames.size(); ++i) {
        std::string seed(1, static_cast<char>(i | (gz << 2)));
        fuzz::write_file(dir / (std::string(kNames[i]) + (gz ? ".gz" : "")), seed + originals[gz][i]);
      }
    }
  });
  fuzz::host();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t which = data[0] & 3;
  const int gz = (data[0] >> 2) & 1;
  const fs::path root = fuzz::scratch() / "idx";
  fs::remove_all(root);
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    const fs::path file = root / (std::string(kNames[i]) + (gz ? ".gz" : ""));
    if (i == which) {
      fuzz::write_file(file, data + 1, size - 1);
    } else {
      fuzz::write_file(file, originals[gz][i]);
    }
  }
  fuzz::expect_clean([&] {
    auto ds = fuzz::host().create_dataset(
        "mnist", fuzz::plugin_options(PluginKind::kDataset, "mnist", {{"root", root.string()}}), DatasetContext{});
    fuzz::read_everything(*ds);
  });
  return 0;
}
