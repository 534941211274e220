// The cifar10 dataset plugin against generated fixtures in the binary format.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "cifar_fixture.h"
#include "learndrop/registrar.h"
#include "test_env.h"

namespace ld::core {

namespace {

std::shared_ptr<Dataset> open(const std::string& root, std::map<std::string, std::string> set = {}) {
  static auto host = test::builtin_host();
  set["root"] = root;
  return host->create_dataset("cifar10", test::plugin_options(*host, PluginKind::kDataset, "cifar10", set),
                              DatasetContext{});
}

std::string error_of(const std::string& root, std::map<std::string, std::string> set = {}) {
  try {
    open(root, std::move(set));
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Raw pixel (0..255 as float / 255) of record i of `file`, un-normalised.
float pixel(const std::string& file, int i, int c, int y, int x) {
  return test::cifar_pixel(file, i, (c * 32 + y) * 32 + x) / 255.0f;
}

}  // namespace

class CifarSources : public ::testing::TestWithParam<bool> {};

TEST_P(CifarSources, RoundTripsPixelsAndLabelsFromFolderAndTarGz) {
  test::TempDir dir;
  test::write_cifar_fixture(dir.str());
  std::string root = dir.str();
  if (GetParam()) {
    root = dir.str() + "/cifar-10-binary.tar.gz";
    test::write_cifar_tar_gz(dir.str(), root);
    std::filesystem::remove_all(dir.path() / "cifar-10-batches-bin");
  }
  auto ds = open(root, {{"normalize", "false"}});
  ASSERT_EQ(ds->size(Split::kTrain), 40);
  ASSERT_EQ(ds->size(Split::kTest), 10);
  EXPECT_EQ(ds->sample_shape(), (std::vector<std::int64_t>{3, 32, 32}));
  // Sample 25 is record 5 of data_batch_2.bin.
  Batch b = ds->get_batch(Split::kTrain, {25, 0}, 0);
  EXPECT_EQ(b.labels[0].item<std::int64_t>(), test::cifar_label("data_batch_2.bin", 5));
  EXPECT_EQ(b.labels[1].item<std::int64_t>(), test::cifar_label("data_batch_1.bin", 0));
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < 32; y += 7) {
      for (int x = 0; x < 32; x += 5) {
        EXPECT_FLOAT_EQ(b.images[0][c][y][x].item<float>(), pixel("data_batch_2.bin", 5, c, y, x));
      }
    }
  }
  Batch t = ds->get_batch(Split::kTest, {9}, 0);
  EXPECT_EQ(t.labels[0].item<std::int64_t>(), test::cifar_label("test_batch.bin", 9));
  EXPECT_FLOAT_EQ(t.images[0][2][31][31].item<float>(), pixel("test_batch.bin", 9, 2, 31, 31));
}

INSTANTIATE_TEST_SUITE_P(FolderAndTarGz, CifarSources, ::testing::Values(false, true));

TEST(Cifar10, BatchesKeyAndLimits) {
  test::TempDir dir;
  test::write_cifar_fixture(dir.str());
  auto ds = open(dir.str(), {{"batches", "2"}, {"test_limit", "4"}});
  EXPECT_EQ(ds->size(Split::kTrain), 20);
  EXPECT_EQ(ds->size(Split::kTest), 4);
  EXPECT_EQ(ds->get_batch(Split::kTrain, {0}, 0).labels[0].item<std::int64_t>(),
            test::cifar_label("data_batch_2.bin", 0));
  EXPECT_NE(error_of(dir.str(), {{"batches", "1,6"}}).find("training batches 1-5"), std::string::npos);
  EXPECT_NE(error_of(dir.str(), {{"batches", "3"}}).find("has no data_batch_3.bin"), std::string::npos);
  // Issue 12, CLI finding 9: "1,1" loaded batch 1 twice.
  EXPECT_NE(error_of(dir.str(), {{"batches", "1,2,1"}}).find("batch 1 is listed twice"), std::string::npos);
}

TEST(Cifar10, NormalisesPerChannel) {
  test::TempDir dir;
  test::write_cifar_fixture(dir.str());
  auto ds = open(dir.str());
  float raw = pixel("data_batch_1.bin", 0, 1, 3, 4);
  EXPECT_NEAR(ds->get_batch(Split::kTrain, {0}, 0).images[0][1][3][4].item<float>(), (raw - 0.4822f) / 0.2435f, 1e-5);
}

TEST(Cifar10, TruncatedFileNamesFileAndOffset) {
  test::TempDir dir;
  test::write_cifar_fixture(dir.str());
  std::filesystem::resize_file(dir.path() / "cifar-10-batches-bin" / "test_batch.bin", 3073 * 3 + 100);
  std::string e = error_of(dir.str());
  EXPECT_NE(e.find("test_batch.bin is truncated"), std::string::npos) << e;
  EXPECT_NE(e.find("byte offset 9219"), std::string::npos) << e;
}

TEST(Cifar10, BadLabelNamesOffset) {
  test::TempDir dir;
  test::write_cifar_fixture(dir.str());
  {
    std::fstream f(dir.path() / "cifar-10-batches-bin" / "data_batch_1.bin",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3073 * 2);
    f.put(static_cast<char>(12));
  }
  std::string e = error_of(dir.str());
  EXPECT_NE(e.find("label 12 at byte offset 6146"), std::string::npos) << e;
}

TEST(Cifar10, CorruptTarGzIsReported) {
  test::TempDir dir;
  std::ofstream(dir.path() / "cifar-10-binary.tar.gz") << "not a tar file";
  std::string e = error_of(dir.str() + "/cifar-10-binary.tar.gz");
  EXPECT_NE(e.find("cifar-10-binary.tar.gz"), std::string::npos) << e;
}

TEST(Cifar10, FlipHappensAboutHalfTheTimeAndIsDeterministic) {
  test::TempDir dir;
  test::write_cifar_fixture(dir.str());
  auto ds = open(dir.str(), {{"normalize", "false"}, {"augment", "flip"}});
  EXPECT_TRUE(ds->random_train_transform());
  at::Tensor original = open(dir.str(), {{"normalize", "false"}})->get_batch(Split::kTrain, {3}, 0).images[0];
  int flips = 0;
  const int draws = 400;
  for (int seed = 0; seed < draws; ++seed) {
    at::Tensor x = ds->get_batch(Split::kTrain, {3}, static_cast<std::uint64_t>(seed)).images[0];
    bool flipped = x.equal(original.flip({2}));
    EXPECT_TRUE(flipped || x.equal(original)) << "seed " << seed;
    flips += flipped;
  }
  EXPECT_GT(flips, draws * 0.4);
  EXPECT_LT(flips, draws * 0.6);
  EXPECT_TRUE(ds->get_batch(Split::kTrain, {3, 7}, 42).images.equal(ds->get_batch(Split::kTrain, {3, 7}, 42).images));
  // The test split is never augmented.
  EXPECT_TRUE(ds->get_batch(Split::kTest, {1}, 5).images.equal(ds->get_batch(Split::kTest, {1}, 6).images));
}

TEST(Cifar10, CropOffsetsStayWithinThePadding) {
  test::TempDir dir;
  test::write_cifar_fixture(dir.str());
  auto ds = open(dir.str(), {{"normalize", "false"}, {"augment", "crop_flip"}});
  at::Tensor original = open(dir.str(), {{"normalize", "false"}})->get_batch(Split::kTrain, {0}, 0).images[0];
  at::Tensor padded = at::constant_pad_nd(original, {4, 4, 4, 4}, 0);
  std::set<int> offsets;
  for (int seed = 0; seed < 60; ++seed) {
    at::Tensor x = ds->get_batch(Split::kTrain, {0}, static_cast<std::uint64_t>(seed)).images[0];
    bool found = false;
    for (int dy = -4; dy <= 4 && !found; ++dy) {
      for (int dx = -4; dx <= 4 && !found; ++dx) {
        at::Tensor crop = padded.slice(1, 4 + dy, 36 + dy).slice(2, 4 + dx, 36 + dx);
        if (x.equal(crop) || x.equal(crop.flip({2}))) {
          found = true;
          offsets.insert(dy * 10 + dx);
        }
      }
    }
    EXPECT_TRUE(found) << "seed " << seed << ": not a crop of the 4-px padded image";
  }
  EXPECT_GT(offsets.size(), 20u) << "crop offsets do not vary";
}

TEST(Cifar10, AugmentationAfterADropComesFromCachedViewsAndIsReported) {
  // Through the trainer: an augmenting dataset with a drop after the first
  // epoch, in feature space (the default for a shift/flip dataset) or as K
  // cached views, and the log and summary say what happened.
  test::TempDir dir;
  test::write_cifar_fixture(dir.str());
  std::string cfg = (dir.path() / "augment.yaml").string();
  std::ofstream(cfg) << "model: {plugin: vgg, variant: vgg11_bn, width: 0.0625, classifier: compact}\n"
                        "dataset: {plugin: cifar10, root: " +
                            dir.str() +
                            ", augment: crop_flip}\n"
                            "train: {epochs: 2, batch_size: 8}\npolicy: {plugin: scripted, cuts: 2, drop_mode: cache, cost_guard: false}\n";
  const std::string env = "LEARNDROP_PLUGIN_PATH=" + test::test_plugin("scripted_policy") + " ";
  struct Case {
    std::string set, log;
    std::int64_t views;
    std::string after;
  };
  for (const Case& c :
       {Case{"cache.augment=auto", "maps at stride 4 shifted by up to 1 map pixels", 2,
             "feature: the untransformed sample and its mirror cached"},
        Case{"cache.augment=views --set cache.views=1", "every epoch trains on the same augmented draw", 1,
             "frozen: 1 cached view"},
        Case{"cache.views=3", "3 views per sample", 3, "3 cached views per sample, one drawn per epoch"},
        Case{"dataset.augment=none --set cache.views=3", "the views would be identical", 1, "none: the dataset"},
        // Issue 31, defect 7: a freeze-only drop was reported as cached views.
        Case{"policy.drop_mode=freeze", "freeze at epoch", 0, "real: freeze-only drops"}}) {
    SCOPED_TRACE(c.set);
    test::TempDir out;
    test::LdropResult r = test::run_ldrop("run " + cfg + " --set " + c.set + " --out " + out.str(), env);
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find(c.log), std::string::npos) << r.output;
    std::ifstream in(out.path() / "summary.json");
    nlohmann::json summary = nlohmann::json::parse(in);
    EXPECT_EQ(summary["dropped_stages"], 2);
    EXPECT_EQ(summary["cache_views"], c.views);
    EXPECT_EQ(summary["augmentation_after_drop"].get<std::string>().rfind(c.after, 0), 0u)
        << summary["augmentation_after_drop"];
  }
}

}  // namespace ld::core
