// The mnist dataset plugin against generated idx fixtures.
#include <gtest/gtest.h>

#include <fstream>

#include "idx_fixture.h"
#include "learndrop/core/config.h"
#include "learndrop/registrar.h"
#include "test_env.h"

namespace ld::core {

namespace {

std::shared_ptr<Dataset> open(const std::string& root, std::map<std::string, std::string> set = {}) {
  static auto host = test::builtin_host();
  set["root"] = root;
  return host->create_dataset("mnist", test::plugin_options(*host, PluginKind::kDataset, "mnist", set),
                              DatasetContext{});
}

std::string error_of(const std::string& root) {
  try {
    open(root);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

class MnistFormats : public ::testing::TestWithParam<bool> {};

TEST_P(MnistFormats, RoundTripsPixelsAndLabelsExactly) {
  test::TempDir dir;
  test::IdxFixture f;
  f.gzip = GetParam();
  test::write_idx_fixture(dir.str(), f);
  auto ds = open(dir.str(), {{"normalize", "false"}});
  ASSERT_EQ(ds->size(Split::kTrain), f.train);
  ASSERT_EQ(ds->size(Split::kTest), f.test);
  EXPECT_EQ(ds->num_classes(), f.classes);
  EXPECT_EQ(ds->sample_shape(), (std::vector<std::int64_t>{1, f.size, f.size}));
  Batch b = ds->get_batch(Split::kTest, {5, 0, 63}, 0);
  const int idx[] = {5, 0, 63};
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(b.labels[r].item<std::int64_t>(), test::fixture_label(f, "t10k", idx[r]));
    for (int y = 0; y < f.size; y += 3) {
      for (int x = 0; x < f.size; x += 5) {
        float expected = test::fixture_pixel(f, "t10k", idx[r], y, x) / 255.0f;
        EXPECT_FLOAT_EQ(b.images[r][0][y][x].item<float>(), expected);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(RawAndGzip, MnistFormats, ::testing::Values(false, true));

TEST(Mnist, LimitsAndNormalisation) {
  test::TempDir dir;
  test::write_idx_fixture(dir.str());
  auto ds = open(dir.str(), {{"train_limit", "100"}, {"test_limit", "10"}});
  EXPECT_EQ(ds->size(Split::kTrain), 100);
  EXPECT_EQ(ds->size(Split::kTest), 10);
  std::vector<std::int64_t> all(100);
  std::iota(all.begin(), all.end(), 0);
  at::Tensor x = ds->get_batch(Split::kTrain, all, 0).images;
  EXPECT_NEAR(x.mean().item<double>(), 0.0, 1e-4);
  EXPECT_NEAR(x.std().item<double>(), 1.0, 1e-3);
}

// Issue 12, CLI finding 9: a label byte of 200 built a 201-class model.
TEST(Mnist, ALabelFarPastTheOthersIsACorruptLabelFile) {
  test::TempDir dir;
  const test::IdxFixture f;
  test::write_idx_fixture(dir.str(), f);
  std::vector<std::uint8_t> labels;
  for (int i = 0; i < f.train; ++i) labels.push_back(static_cast<std::uint8_t>(test::fixture_label(f, "train", i)));
  labels[17] = 200;
  test::write_idx_file(dir.str() + "/train-labels-idx1-ubyte.gz", 0x0801, {static_cast<std::uint32_t>(f.train)},
                       labels, true);
  const std::string e = error_of(dir.str());
  EXPECT_NE(e.find("go up to 200"), std::string::npos) << e;
  EXPECT_NE(e.find("a label file is corrupt"), std::string::npos) << e;
  EXPECT_EQ(open(dir.str(), {{"train_limit", "3"}, {"test_limit", "1"}})->num_classes(), f.classes)
      << "limits that leave a few classes out are not an error";
}

TEST(Mnist, BadMagicNamesFileAndOffset) {
  test::TempDir dir;
  test::write_idx_fixture(dir.str(), test::IdxFixture{});
  test::write_idx_file(dir.str() + "/train-images-idx3-ubyte.gz", 0x0801, {2, 16, 16}, std::vector<std::uint8_t>(512),
                       true);
  std::string e = error_of(dir.str());
  EXPECT_NE(e.find("train-images-idx3-ubyte.gz: bad magic number at byte offset 0"), std::string::npos) << e;
  EXPECT_NE(e.find("expected 0x00000803"), std::string::npos) << e;
}

TEST(Mnist, TruncatedFileNamesOffsetAndSizes) {
  test::TempDir dir;
  test::IdxFixture f;
  f.gzip = false;
  test::write_idx_fixture(dir.str(), f);
  test::write_idx_file(dir.str() + "/t10k-images-idx3-ubyte", 0x0803, {64, 16, 16}, std::vector<std::uint8_t>(1000),
                       false);
  std::string e = error_of(dir.str());
  EXPECT_NE(e.find("t10k-images-idx3-ubyte is truncated"), std::string::npos) << e;
  EXPECT_NE(e.find("expected 16384 bytes of pixels at byte offset 16, found 1000"), std::string::npos) << e;
}

TEST(Mnist, SizeDisagreeingWithHeaderIsAnError) {
  test::TempDir dir;
  test::IdxFixture f;
  f.gzip = false;
  test::write_idx_fixture(dir.str(), f);
  test::write_idx_file(dir.str() + "/t10k-labels-idx1-ubyte", 0x0801, {64}, std::vector<std::uint8_t>(70), false);
  std::string e = error_of(dir.str());
  EXPECT_NE(e.find("t10k-labels-idx1-ubyte has more data than its header announces"), std::string::npos) << e;
  test::write_idx_file(dir.str() + "/t10k-labels-idx1-ubyte", 0x0801, {63}, std::vector<std::uint8_t>(63), false);
  e = error_of(dir.str());
  EXPECT_NE(e.find("announces 63 labels but"), std::string::npos) << e;
}

TEST(Mnist, RootDefaultsToLearndropData) {
  test::TempDir dir;
  test::write_idx_fixture(dir.str() + "/mnist");
  auto host = test::builtin_host();
  Options opts = test::plugin_options(*host, PluginKind::kDataset, "mnist");
  EXPECT_EQ(host->create_dataset("mnist", opts, DatasetContext{dir.str(), 0})->size(Split::kTrain), 256);
  try {
    host->create_dataset("mnist", opts, DatasetContext{});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dataset.root is not set and LEARNDROP_DATA is unset"), std::string::npos)
        << e.what();
  }
}

TEST(Mnist, MissingFilesAndFolderAreNamed) {
  test::TempDir dir;
  EXPECT_NE(error_of(dir.str()).find("has no train-images-idx3-ubyte or train-images-idx3-ubyte.gz"),
            std::string::npos);
  EXPECT_NE(error_of(dir.str() + "/nope").find("does not exist"), std::string::npos);
}

}  // namespace ld::core
