#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ld::test {

using Rgb = std::array<std::uint8_t, 3>;

/// How a fixture JPEG is stored.
enum class JpegKind { kColor, kGray, kCmyk };

/// Writes a `width` x `height` JPEG (quality 100, no chroma subsampling) with
/// libjpeg-turbo; `pixel(x, y)` gives each pixel's colour (grey uses the red
/// value; CMYK stores (r, g, b, 255) in Adobe's inverted convention, so it
/// decodes back to r, g, b).
void write_jpeg(const std::string& path, int width, int height, const std::function<Rgb(int, int)>& pixel,
                JpegKind kind = JpegKind::kColor);

/// A small imagenette2 tree: `classes` wnids with `train` and `val` images
/// each, every image one solid colour (fixture_color) of varied size and
/// aspect; the first training image of class 1 is greyscale, the second
/// of class 2 CMYK. Also writes noisy_imagenette.csv, whose noisy_labels_25
/// column moves every training image of class 0 to class 1.
struct ImagenetteFixture {
  int classes = 3;
  int train = 4;
  int val = 2;
};
void write_imagenette_fixture(const std::string& dir, const ImagenetteFixture& f = {});

/// The wnid folder name of class `c` (sorted order equals class order).
std::string fixture_wnid(int c);

/// The solid colour of image `k` of class `c` in `split` ("train" or "val").
Rgb fixture_color(const std::string& split, int c, int k);

}  // namespace ld::test
