#include "jpeg_fixture.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <turbojpeg.h>

namespace ld::test {

void write_jpeg(const std::string& path, int width, int height, const std::function<Rgb(int, int)>& pixel,
                JpegKind kind) {
  const int channels = kind == JpegKind::kGray ? 1 : kind == JpegKind::kCmyk ? 4 : 3;
  std::vector<unsigned char> buf(static_cast<std::size_t>(width) * height * channels);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      Rgb p = pixel(x, y);
      unsigned char* d = &buf[(static_cast<std::size_t>(y) * width + x) * channels];
      if (kind == JpegKind::kGray) {
        d[0] = p[0];
      } else {
        d[0] = p[0];
        d[1] = p[1];
        d[2] = p[2];
        if (kind == JpegKind::kCmyk) d[3] = 255;
      }
    }
  }
  tjhandle tj = tjInitCompress();
  unsigned char* jpeg = nullptr;
  unsigned long size = 0;
  const int format = kind == JpegKind::kGray ? TJPF_GRAY : kind == JpegKind::kCmyk ? TJPF_CMYK : TJPF_RGB;
  const int subsamp = kind == JpegKind::kGray ? TJSAMP_GRAY : TJSAMP_444;
  if (tjCompress2(tj, buf.data(), width, 0, height, format, &jpeg, &size, subsamp, 100, TJFLAG_ACCURATEDCT) != 0) {
    std::string err = tjGetErrorStr2(tj);
    tjDestroy(tj);
    throw std::runtime_error("write_jpeg " + path + ": " + err);
  }
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(jpeg), static_cast<std::streamsize>(size));
  tjFree(jpeg);
  tjDestroy(tj);
}

std::string fixture_wnid(int c) { return "n0" + std::to_string(1000000 + c * 1111); }

Rgb fixture_color(const std::string& split, int c, int k) {
  const int s = split == "train" ? 0 : 1;
  return {static_cast<std::uint8_t>(20 + 70 * c), static_cast<std::uint8_t>(30 + 40 * k),
          static_cast<std::uint8_t>(60 + 100 * s + 10 * k)};
}

void write_imagenette_fixture(const std::string& dir, const ImagenetteFixture& f) {
  namespace fs = std::filesystem;
  fs::path root = fs::path(dir) / "imagenette2";
  std::ofstream csv(root.string() + ".csv.tmp");
  csv << "path,noisy_labels_0,noisy_labels_1,noisy_labels_5,noisy_labels_25,noisy_labels_50,is_valid\n";
  for (const std::string split : {"train", "val"}) {
    const int count = split == "train" ? f.train : f.val;
    for (int c = 0; c < f.classes; ++c) {
      for (int k = 0; k < count; ++k) {
        std::string rel = split + "/" + fixture_wnid(c) + "/img_" + std::to_string(k) + ".JPEG";
        JpegKind kind = JpegKind::kColor;
        if (split == "train" && c == 1 && k == 0) kind = JpegKind::kGray;
        if (split == "train" && c == 2 && k == 1) kind = JpegKind::kCmyk;
        Rgb color = fixture_color(split, c, k);
        if (kind == JpegKind::kGray) color = {color[0], color[0], color[0]};
        const int w = 48 + 16 * ((c + k) % 3), h = 48 + 16 * ((c + 2 * k) % 3);
        write_jpeg((root / rel).string(), w, h, [&](int, int) { return color; }, kind);
        std::string wnid = fixture_wnid(c), noisy = split == "train" && c == 0 ? fixture_wnid(1) : wnid;
        csv << rel << "," << wnid << "," << wnid << "," << wnid << "," << noisy << "," << wnid << ","
            << (split == "val" ? "True" : "False") << "\n";
      }
    }
  }
  csv.close();
  fs::rename(root.string() + ".csv.tmp", root / "noisy_imagenette.csv");
}

}  // namespace ld::test
