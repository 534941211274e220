// dataset.classes: a data set restricted to some classes, relabelled in the
// listed order; and the class-incremental order of a stream.
#include <gtest/gtest.h>

#include <fstream>

#include <ATen/ATen.h>

#include "cifar_fixture.h"
#include "learndrop/core/class_subset.h"
#include "learndrop/core/config.h"
#include "learndrop/registrar.h"
#include "test_env.h"

namespace ld::core {

namespace {

std::shared_ptr<Dataset> cifar(const std::string& root, std::map<std::string, std::string> set = {}) {
  static auto host = test::builtin_host();
  set["root"] = root;
  return host->create_dataset("cifar10", test::plugin_options(*host, PluginKind::kDataset, "cifar10", set),
                              DatasetContext{});
}

class ClassSubsetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_cifar_fixture(dir_.str(), {60, 1, 40});
    inner_ = cifar(dir_.str(), {{"augment", "crop_flip"}});
  }
  test::TempDir dir_;
  std::shared_ptr<Dataset> inner_;
};

}  // namespace

TEST_F(ClassSubsetTest, KeepsTheListedClassesInOrderRelabelledByPosition) {
  const std::vector<std::int64_t> classes = {7, 2, 5};
  ClassSubset sub(inner_, classes);
  EXPECT_EQ(sub.num_classes(), 3);
  for (Split split : {Split::kTrain, Split::kTest}) {
    const std::vector<std::int64_t> all = inner_->labels(split);
    std::vector<std::int64_t> kept, expected;
    for (std::size_t i = 0; i < all.size(); ++i) {
      auto it = std::find(classes.begin(), classes.end(), all[i]);
      if (it == classes.end()) continue;
      kept.push_back(static_cast<std::int64_t>(i));
      expected.push_back(it - classes.begin());
    }
    ASSERT_FALSE(kept.empty()) << "the fixture has none of the classes";
    EXPECT_EQ(sub.size(split), static_cast<std::int64_t>(kept.size()));
    EXPECT_EQ(sub.labels(split), expected);
    // Sample for sample the inner data set's images (augmentation included), relabelled.
    std::vector<std::int64_t> idx(kept.size());
    std::iota(idx.begin(), idx.end(), 0);
    const Batch a = sub.get_batch(split, idx, 99), b = inner_->get_batch(split, kept, 99);
    EXPECT_TRUE(a.images.equal(b.images));
    EXPECT_EQ(std::vector<std::int64_t>(a.labels.data_ptr<std::int64_t>(),
                                        a.labels.data_ptr<std::int64_t>() + a.labels.numel()),
              expected);
  }
  const std::vector<std::int64_t> first = {0};
  const std::vector<std::int64_t> inner_first = {sub.size(Split::kTrain) > 0 ? [&] {
    const auto all = inner_->labels(Split::kTrain);
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (all[i] == 7 || all[i] == 2 || all[i] == 5) return static_cast<std::int64_t>(i);
    }
    return std::int64_t{-1};
  }() : -1};
  EXPECT_TRUE(sub.get_untransformed(first, true).images.equal(inner_->get_untransformed(inner_first, true).images));
  ShiftFlip a, b;
  EXPECT_EQ(sub.shift_flip(a), inner_->shift_flip(b));
  EXPECT_EQ(a.max_shift, b.max_shift);
  const std::vector<std::string> names = inner_->class_names();
  ASSERT_EQ(names.size(), 10u);
  EXPECT_EQ(sub.class_names(), (std::vector<std::string>{names[7], names[2], names[5]}));
  EXPECT_NE(sub.describe().find("classes 7 " + names[7] + ", 2 " + names[2]), std::string::npos) << sub.describe();
}

TEST_F(ClassSubsetTest, BadListsAreRefusedNamingTheKey) {
  EXPECT_NE(test::error_of([&] { ClassSubset(inner_, {3, 10}); }).find("dataset.classes: class 10 is not a label"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { ClassSubset(inner_, {}); }).find("empty list"), std::string::npos);
  EXPECT_NE(test::error_of([&] { parse_class_list("5,x", "cfg.yaml:3: dataset.classes"); })
                .find("cfg.yaml:3: dataset.classes: expected a list of class labels"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { parse_class_list("5,-1", "k"); }).find("'-1' is not a label"), std::string::npos);
  EXPECT_NE(test::error_of([&] { parse_class_list("5, 6, 5", "k"); }).find("class 5 is listed twice"),
            std::string::npos);
  EXPECT_EQ(parse_class_list(" 5, 6 ,7", "k"), (std::vector<std::int64_t>{5, 6, 7}));
  EXPECT_TRUE(parse_class_list("", "k").empty());
}

TEST(ClassIncrementalOrder, GroupsSamplesByClassInLabelOrderShuffledWithinEach) {
  const std::vector<std::int64_t> labels = {2, 0, 1, 0, 2, 1, 0, 2, 1, 1};
  const std::vector<std::int64_t> order = class_incremental_order(labels, 7);
  ASSERT_EQ(order.size(), labels.size());
  std::vector<std::int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 0; i < sorted.size(); ++i) EXPECT_EQ(sorted[i], static_cast<std::int64_t>(i));
  for (std::size_t i = 1; i < order.size(); ++i) {
    EXPECT_LE(labels[static_cast<std::size_t>(order[i - 1])], labels[static_cast<std::size_t>(order[i])]);
  }
  EXPECT_EQ(class_incremental_order(labels, 7), order) << "not deterministic";
  // Across seeds, some seed puts class 1's samples in another order.
  bool differs = false;
  for (std::uint64_t seed = 0; seed < 8 && !differs; ++seed) differs = class_incremental_order(labels, seed) != order;
  EXPECT_TRUE(differs);
}

TEST(ClassSubsetConfig, AListIsWrittenAsTextAndOnlyASetListEntersTheHash) {
  auto host = test::builtin_host();
  const std::string base = "dataset:\n  plugin: cifar10\n  root: /nonexistent\n";
  const RunConfig plain = resolve_config(parse_config(base, "a.yaml"), *host);
  EXPECT_TRUE(plain.dataset_classes.empty());
  EXPECT_EQ(plain.identity_yaml().find("classes"), std::string::npos)
      << "an older config without dataset.classes would change its hash";
  EXPECT_NE(plain.effective_yaml().find("classes"), std::string::npos);
  const RunConfig listed = resolve_config(parse_config(base + "  classes: [5, 6, 7]\n", "b.yaml"), *host);
  EXPECT_EQ(listed.dataset_classes, (std::vector<std::int64_t>{5, 6, 7}));
  EXPECT_EQ(listed.dataset_classes_setting, "5,6,7");
  EXPECT_NE(listed.hash(), plain.hash());
  ConfigTree t = parse_config(base, "c.yaml");
  apply_override(t, "dataset.classes=[5, 6, 7]");
  EXPECT_EQ(resolve_config(t, *host).hash(), listed.hash()) << "--set with a YAML list";
  ConfigTree u = parse_config(base, "d.yaml");
  apply_override(u, "dataset.classes=5,6,7");
  EXPECT_EQ(resolve_config(u, *host).hash(), listed.hash()) << "--set with a comma list";
  EXPECT_NE(test::error_of([&] { resolve_config(parse_config(base + "  classes: [5, a]\n", "e.yaml"), *host); })
                .find("e.yaml:4: dataset.classes: expected a list of class labels"),
            std::string::npos);
}

}  // namespace ld::core
