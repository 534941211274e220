// The imagenette dataset plugin against a JPEG tree written with libjpeg-turbo.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <ATen/ATen.h>

#include "jpeg_fixture.h"
#include "learndrop/registrar.h"
#include "test_env.h"

namespace ld::core {

namespace {

namespace fs = std::filesystem;

std::shared_ptr<Dataset> open(const std::string& root, std::map<std::string, std::string> set = {}) {
  static auto host = test::builtin_host();
  set["root"] = root;
  if (set.count("image_size") == 0) set["image_size"] = "16";
  return host->create_dataset("imagenette", test::plugin_options(*host, PluginKind::kDataset, "imagenette", set),
                              DatasetContext{});
}

using test::error_of;

// Largest difference between every pixel of `image` ([3, S, S], 0..1) and `rgb`.
float max_distance(const at::Tensor& image, const test::Rgb& rgb) {
  at::Tensor expected = at::tensor({rgb[0] / 255.0f, rgb[1] / 255.0f, rgb[2] / 255.0f}).view({3, 1, 1});
  return (image - expected).abs().max().item<float>();
}

// A 128x128 image with four coloured quadrants.
const test::Rgb kQuadrant[4] = {{250, 10, 10}, {10, 250, 10}, {10, 10, 250}, {240, 240, 20}};
test::Rgb quadrant(int x, int y) { return kQuadrant[(y >= 64 ? 2 : 0) + (x >= 64 ? 1 : 0)]; }

}  // namespace

TEST(Imagenette, RoundTripsLabelsAndPixelsOfEveryImage) {
  test::TempDir dir;
  test::ImagenetteFixture f;
  test::write_imagenette_fixture(dir.str(), f);
  // The root may be the imagenette2 folder or its parent.
  for (const std::string root : {dir.str(), dir.str() + "/imagenette2"}) {
    auto ds = open(root, {{"normalize", "false"}});
    ASSERT_EQ(ds->size(Split::kTrain), f.classes * f.train);
    ASSERT_EQ(ds->size(Split::kTest), f.classes * f.val);
    EXPECT_EQ(ds->num_classes(), f.classes);
    EXPECT_EQ(ds->sample_shape(), (std::vector<std::int64_t>{3, 16, 16}));
    for (const auto split : {Split::kTrain, Split::kTest}) {
      const std::string name = split == Split::kTrain ? "train" : "val";
      std::vector<std::int64_t> all(static_cast<std::size_t>(ds->size(split)));
      std::iota(all.begin(), all.end(), 0);
      Batch b = ds->get_batch(split, all, 0);
      for (std::int64_t i = 0; i < ds->size(split); ++i) {
        // Classes are interleaved: sample i is image i / classes of class i % classes.
        const int c = static_cast<int>(i % f.classes), k = static_cast<int>(i / f.classes);
        EXPECT_EQ(b.labels[i].item<std::int64_t>(), c) << name << " " << i;
        test::Rgb rgb = test::fixture_color(name, c, k);
        if (name == "train" && c == 1 && k == 0) rgb = {rgb[0], rgb[0], rgb[0]};  // stored as greyscale
        EXPECT_LT(max_distance(b.images[i], rgb), 3.0f / 255) << name << " sample " << i;
      }
    }
  }
}

// Issue 12, CLI finding 9: an empty train/<class> folder was accepted silently.
TEST(Imagenette, AnEmptyClassFolderIsNamed) {
  test::TempDir dir;
  test::write_imagenette_fixture(dir.str());
  const fs::path folder = dir.path() / "imagenette2" / "train" / test::fixture_wnid(1);
  for (const auto& f : fs::directory_iterator(folder)) fs::remove(f.path());
  const std::string e = error_of([&] { open(dir.str()); });
  EXPECT_NE(e.find(folder.string() + " has no JPEG images"), std::string::npos) << e;
}

// Issue 12, CLI finding 5: these trained silently.
TEST(Imagenette, TruncatedCorruptAndHugeJpegsAreRefusedNamingTheFile) {
  test::TempDir dir;
  test::write_imagenette_fixture(dir.str());
  auto ds = open(dir.str(), {{"augment", "none"}});
  // Train sample 0 is the first image of the first class (classes interleaved).
  const fs::path file = dir.path() / "imagenette2" / "train" / test::fixture_wnid(0) / "img_0.JPEG";
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  auto write = [&](const std::string& b) { std::ofstream(file, std::ios::binary | std::ios::trunc) << b; };
  // Walk the marker segments to the start of frame (FF C0..C2: length[2]
  // precision[1] height[2] width[2]) and the start of scan (FF DA).
  std::size_t sof = 0, sos = 0;
  for (std::size_t i = 2; i + 4 < bytes.size() && sos == 0;) {
    const auto marker = static_cast<unsigned char>(bytes[i + 1]);
    if (marker >= 0xC0 && marker <= 0xC2) sof = i;
    if (marker == 0xDA) sos = i;
    i += 2 + (static_cast<std::size_t>(static_cast<unsigned char>(bytes[i + 2])) << 8) +
         static_cast<unsigned char>(bytes[i + 3]);
  }
  ASSERT_GT(sof, 0u);
  ASSERT_GT(sos, sof);
  write(bytes.substr(0, sos + (bytes.size() - sos) / 2));  // half of the compressed data
  std::string e = error_of([&] { ds->get_batch(Split::kTrain, {0}, 0); });
  EXPECT_NE(e.find(file.string() + ": corrupt JPEG"), std::string::npos) << e;
  std::string huge = bytes;
  huge[sof + 5] = huge[sof + 7] = static_cast<char>(0xFF);
  huge[sof + 6] = huge[sof + 8] = static_cast<char>(0xDC);  // 65500 x 65500
  write(huge);
  e = error_of([&] { ds->get_batch(Split::kTrain, {0}, 0); });
  EXPECT_NE(e.find(file.string() + ": the JPEG header claims 65500x65500 pixels"), std::string::npos) << e;
  write(bytes);
  EXPECT_EQ(error_of([&] { ds->get_batch(Split::kTrain, {0}, 0); }), "(no error)");
}

TEST(Imagenette, ResizesWithDctScalingAndKeepsGeometry) {
  test::TempDir dir;
  test::write_imagenette_fixture(dir.str(), {2, 1, 1});
  // Replace one training image by a 128x128 four-quadrant image: at 16 px
  // it decodes at 1/8 scale, at 48 px at 1/2, at 128 px unscaled.
  test::write_jpeg((dir.path() / "imagenette2/train" / test::fixture_wnid(0) / "img_0.JPEG").string(), 128, 128,
                   quadrant);
  for (int size : {16, 48, 128}) {
    auto ds = open(dir.str(), {{"normalize", "false"}, {"image_size", std::to_string(size)}});
    at::Tensor x = ds->get_batch(Split::kTrain, {0}, 0).images[0];
    const int q = size / 2, margin = std::max(2, size / 8);
    for (int qi = 0; qi < 4; ++qi) {
      const int y0 = qi >= 2 ? q + margin : 0, x0 = qi % 2 ? q + margin : 0;
      at::Tensor block = x.slice(1, y0, y0 + q - margin).slice(2, x0, x0 + q - margin);
      EXPECT_LT(max_distance(block, kQuadrant[qi]), 6.0f / 255) << "size " << size << " quadrant " << qi;
    }
  }
}

TEST(Imagenette, NormalisesWithImageNetStatistics) {
  test::TempDir dir;
  test::write_imagenette_fixture(dir.str());
  at::Tensor raw = open(dir.str(), {{"normalize", "false"}})->get_batch(Split::kTrain, {0}, 0).images[0];
  at::Tensor norm = open(dir.str())->get_batch(Split::kTrain, {0}, 0).images[0];
  at::Tensor mean = at::tensor({0.485f, 0.456f, 0.406f}).view({3, 1, 1});
  at::Tensor std = at::tensor({0.229f, 0.224f, 0.225f}).view({3, 1, 1});
  EXPECT_TRUE(at::allclose(norm, (raw - mean) / std, 1e-4, 1e-4));
}

TEST(Imagenette, NoisyLabelsComeFromTheCsv) {
  test::TempDir dir;
  test::ImagenetteFixture f;
  test::write_imagenette_fixture(dir.str(), f);
  auto clean = open(dir.str());
  auto noisy = open(dir.str(), {{"noise", "25"}});
  // The fixture's noisy_labels_25 moves class 0's training images to class 1.
  for (std::int64_t i = 0; i < noisy->size(Split::kTrain); ++i) {
    std::int64_t c = clean->get_batch(Split::kTrain, {i}, 0).labels[0].item<std::int64_t>();
    EXPECT_EQ(noisy->get_batch(Split::kTrain, {i}, 0).labels[0].item<std::int64_t>(), c == 0 ? 1 : c);
  }
  // Validation labels stay clean.
  EXPECT_EQ(noisy->get_batch(Split::kTest, {0}, 0).labels[0].item<std::int64_t>(), 0);
  EXPECT_NE(error_of([&] {
              open(dir.str(), {{"noise", "10"}});
            }).find("expected one of 0, 1, 5, 25, 50"),
            std::string::npos);
  // A training image with no csv row.
  test::write_jpeg((dir.path() / "imagenette2/train" / test::fixture_wnid(0) / "extra.JPEG").string(), 32, 32,
                   [](int, int) {
                     return test::Rgb{1, 2, 3};
                   });
  std::string e = error_of([&] { open(dir.str(), {{"noise", "5"}}); });
  EXPECT_NE(e.find("noisy_imagenette.csv has no row for train/" + test::fixture_wnid(0) + "/extra.JPEG"),
            std::string::npos)
      << e;
  fs::remove(dir.path() / "imagenette2/noisy_imagenette.csv");
  e = error_of([&] { open(dir.str(), {{"noise", "5"}}); });
  EXPECT_NE(e.find("noisy_imagenette.csv, which cannot be opened"), std::string::npos) << e;
}

TEST(Imagenette, LimitsKeepClassesBalanced) {
  test::TempDir dir;
  test::write_imagenette_fixture(dir.str());
  auto ds = open(dir.str(), {{"train_limit", "6"}, {"test_limit", "3"}});
  ASSERT_EQ(ds->size(Split::kTrain), 6);
  ASSERT_EQ(ds->size(Split::kTest), 3);
  at::Tensor labels = ds->get_batch(Split::kTrain, {0, 1, 2, 3, 4, 5}, 0).labels;
  EXPECT_EQ(at::bincount(labels).min().item<std::int64_t>(), 2);
}

TEST(Imagenette, MalformedTreesAndFilesAreReported) {
  test::TempDir dir;
  EXPECT_NE(error_of([&] { open(dir.str()); }).find("has no train/ and val/ folders"), std::string::npos);
  test::write_imagenette_fixture(dir.str());
  // A val class with no training folder.
  fs::create_directories(dir.path() / "imagenette2/val/n09999999");
  std::string e = error_of([&] { open(dir.str()); });
  EXPECT_NE(e.find("n09999999 is a class with no train/n09999999 folder"), std::string::npos) << e;
  fs::remove(dir.path() / "imagenette2/val/n09999999");
  // A file that is not a JPEG is named when it is decoded.
  fs::path bad = dir.path() / "imagenette2/train" / test::fixture_wnid(0) / "img_0.JPEG";
  std::ofstream(bad, std::ios::trunc) << "this is not a JPEG";
  auto ds = open(dir.str());
  e = error_of([&] { ds->get_batch(Split::kTrain, {1, 0}, 0); });
  EXPECT_NE(e.find(bad.string() + ": not a readable JPEG"), std::string::npos) << e;
  e = error_of([&] { ds->get_batch(Split::kTrain, {99}, 0); });
  EXPECT_NE(e.find("index 99 out of range"), std::string::npos) << e;
}

TEST(Imagenette, FlipHappensAboutHalfTheTime) {
  test::TempDir dir;
  test::write_imagenette_fixture(dir.str(), {2, 1, 1});
  test::write_jpeg((dir.path() / "imagenette2/train" / test::fixture_wnid(0) / "img_0.JPEG").string(), 128, 128,
                   quadrant);
  auto plain = open(dir.str(), {{"normalize", "false"}});
  auto ds = open(dir.str(), {{"normalize", "false"}, {"augment", "flip"}});
  EXPECT_TRUE(ds->random_train_transform());
  at::Tensor original = plain->get_batch(Split::kTrain, {0}, 0).images[0];
  int flips = 0;
  const int draws = 300;
  for (int seed = 0; seed < draws; ++seed) {
    at::Tensor x = ds->get_batch(Split::kTrain, {0}, static_cast<std::uint64_t>(seed)).images[0];
    bool flipped = at::allclose(x, original.flip({2}), 0, 1e-5);
    EXPECT_TRUE(flipped || at::allclose(x, original, 0, 1e-5)) << "seed " << seed;
    flips += flipped;
  }
  EXPECT_GT(flips, draws * 0.4);
  EXPECT_LT(flips, draws * 0.6);
}

TEST(Imagenette, RandomResizedCropsVaryStayInsideAndRepeat) {
  test::TempDir dir;
  test::write_imagenette_fixture(dir.str(), {2, 1, 1});
  test::write_jpeg((dir.path() / "imagenette2/train" / test::fixture_wnid(0) / "img_0.JPEG").string(), 128, 128,
                   quadrant);
  auto ds = open(dir.str(), {{"normalize", "false"}, {"augment", "crop_flip"}, {"image_size", "32"}});
  std::set<std::vector<int>> fractions;
  for (int seed = 0; seed < 40; ++seed) {
    at::Tensor x = ds->get_batch(Split::kTrain, {0}, static_cast<std::uint64_t>(seed)).images[0];
    EXPECT_TRUE(x.equal(ds->get_batch(Split::kTrain, {0}, static_cast<std::uint64_t>(seed)).images[0]));
    // A crop of the image: every pixel lies between the colours of the source.
    EXPECT_GE(x.min().item<float>(), 10.0f / 255 - 3.0f / 255);
    EXPECT_LE(x.max().item<float>(), 250.0f / 255 + 3.0f / 255);
    // How much of each quadrant's red channel shows differs between crops.
    fractions.insert({static_cast<int>(x[0].gt(0.5).sum().item<std::int64_t>()),
                      static_cast<int>(x[1].gt(0.5).sum().item<std::int64_t>())});
  }
  EXPECT_GT(fractions.size(), 20u) << "random resized crops do not vary";
  // Evaluation images are never augmented.
  EXPECT_TRUE(ds->get_batch(Split::kTest, {0}, 1).images.equal(ds->get_batch(Split::kTest, {0}, 2).images));
}

}  // namespace ld::core
