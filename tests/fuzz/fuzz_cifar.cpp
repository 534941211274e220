// Fuzz target: the CIFAR-10 binary reader of the cifar10 plugin.
// Input: byte 0 chooses the file (bit 0: data_batch_1.bin or test_batch.bin);
// the rest is its content. The other file is a valid small fixture.
#include "cifar_fixture.h"
#include "dataset_fuzz.h"

using namespace ld;
namespace fs = std::filesystem;

namespace {
const char* kNames[2] = {"data_batch_1.bin", "test_batch.bin"};
std::string originals[2];
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const fs::path dir = fuzz::scratch() / "fixture";
  test::CifarFixture f;
  f.per_batch = 12;
  f.batches = 1;
  f.test = 6;
  test::write_cifar_fixture(dir.string(), f);
  for (int i = 0; i < 2; ++i) originals[i] = fuzz::read_file(dir / "cifar-10-batches-bin" / kNames[i]);
  fuzz::maybe_write_seeds([](const fs::path& out) {
    for (int i = 0; i < 2; ++i) fuzz::write_file(out / kNames[i], std::string(1, static_cast<char>(i)) + originals[i]);
  });
  fuzz::host();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const int which = data[0] & 1;
  const fs::path root = fuzz::scratch() / "cifar" / "cifar-10-batches-bin";
  for (int i = 0; i < 2; ++i) {
    if (i == which) {
      fuzz::write_file(root / kNames[i], data + 1, size - 1);
    } else {
      fuzz::write_file(root / kNames[i], originals[i]);
    }
  }
  const bool augment = (data[0] >> 1) & 1;
  fuzz::expect_clean([&] {
    auto ds = fuzz::host().create_dataset(
        "cifar10",
        fuzz::plugin_options(PluginKind::kDataset, "cifar10",
                             {{"root", root.string()}, {"batches", "1"}, {"augment", augment ? "crop_flip" : "none"}}),
        DatasetContext{});
    fuzz::read_everything(*ds);
  });
  return 0;
}
