// Fuzz target: JPEG decoding of the imagenette plugin (libjpeg-turbo with DCT
// scaling, the decoded-size bound, resize and crop).
// Input: one JPEG file, placed as the one training image of a one-class
// imagenette2 tree whose validation image is valid. Byte 0 of the input is
// kept in the file; the image size and augmentation come from the file size.
#include "dataset_fuzz.h"
#include "jpeg_fixture.h"

using namespace ld;
namespace fs = std::filesystem;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const fs::path root = fuzz::scratch() / "imagenette2";
  const std::string wnid = test::fixture_wnid(0);
  test::write_jpeg((root / "val" / wnid / "valid.JPEG").string(), 20, 14,
                   [](int x, int y) { return test::Rgb{static_cast<std::uint8_t>(9 * x), static_cast<std::uint8_t>(13 * y), 77}; });
  fuzz::maybe_write_seeds([](const fs::path& dir) {
    auto pixel = [](int x, int y) {
      return test::Rgb{static_cast<std::uint8_t>(x * 7), static_cast<std::uint8_t>(y * 5), static_cast<std::uint8_t>(x ^ y)};
    };
    test::write_jpeg((dir / "color.jpg").string(), 24, 16, pixel);
    test::write_jpeg((dir / "gray.jpg").string(), 9, 31, pixel, test::JpegKind::kGray);
    test::write_jpeg((dir / "cmyk.jpg").string(), 16, 16, pixel, test::JpegKind::kCmyk);
    test::write_jpeg((dir / "wide.jpg").string(), 64, 8, pixel);
  });
  fuzz::host();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const fs::path root = fuzz::scratch() / "imagenette2";
  fuzz::write_file(root / "train" / test::fixture_wnid(0) / "fuzz.JPEG", data, size);
  const std::string image_size = size % 2 ? "16" : "8";
  const std::string augment = size % 3 == 0 ? "crop_flip" : "none";
  fuzz::expect_clean([&] {
    auto ds = fuzz::host().create_dataset(
        "imagenette",
        fuzz::plugin_options(PluginKind::kDataset, "imagenette",
                             {{"root", root.string()}, {"image_size", image_size}, {"augment", augment}}),
        DatasetContext{});
    fuzz::read_everything(*ds);
  });
  return 0;
}
