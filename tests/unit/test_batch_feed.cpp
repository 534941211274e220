// The batch pipeline (BatchFeed) and cached augmented views, on the cifar10
// plugin with crop_flip augmentation and a narrow VGG-11-BN.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <numeric>
#include <set>

#include <ATen/ATen.h>
#include <tbb/global_control.h>

#include "cifar_fixture.h"
#include "learndrop/core/batch_feed.h"
#include "learndrop/core/drop_controller.h"
#include "learndrop/core/flops.h"
#include "learndrop/core/seeds.h"
#include "learndrop/registrar.h"
#include "drop_helpers.h"
#include "test_env.h"

namespace ld::core {

namespace {

struct AugmentedRun {
  test::TempDir dir;
  std::unique_ptr<PluginHost> host = test::builtin_host();
  std::shared_ptr<Dataset> data;
  std::shared_ptr<StagedModel> model;
  ModelProfile profile;
  std::unique_ptr<DropController> controller;

  explicit AugmentedRun(std::int64_t views, const std::string& augment = "crop_flip") {
    test::write_cifar_fixture(dir.str());
    data = host->create_dataset(
        "cifar10",
        test::plugin_options(*host, PluginKind::kDataset, "cifar10", {{"root", dir.str()}, {"augment", augment}}),
        DatasetContext{});
    at::manual_seed(3);
    model = host->create_model(
        "vgg",
        test::plugin_options(*host, PluginKind::kModel, "vgg",
                             {{"variant", "vgg11_bn"}, {"width", "0.0625"}, {"classifier", "compact"}}),
        ModelContext{3, 32, 32, 10});
    for (auto& p : model->parameters()) {
      if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
    }
    model->eval();
    profile = profile_model(*model, data->sample_shape());
    DropSettings settings;
    settings.build_batch = 16;
    settings.seed = 9;
    settings.views = views;
    controller = std::make_unique<DropController>(
        *model, *data, [this] { return host->create_cache("ram", Options(), CacheContext{}); }, profile.stage_flops,
        profile.stage_output_shapes, settings);
  }

  std::int64_t n() const { return data->size(Split::kTrain); }

  // Every batch of an epoch fed with `settings`.
  std::vector<std::pair<at::Tensor, at::Tensor>> epoch(const FeedSettings& settings,
                                                       const std::vector<std::int64_t>& order,
                                                       std::uint64_t epoch_seed, int threads = 1) {
    // Before a drop, the dataset source the controller makes, decoded by
    // `threads` loader threads; after it, the controller's cache source.
    std::unique_ptr<BatchSource> source;
    if (controller->cache_cut() == 0) {
      source = std::make_unique<DatasetSource>(*data, threads, std::vector<std::int64_t>{});
    } else {
      source = controller->source();
    }
    BatchFeed feed(std::move(source), settings);
    const auto steps = static_cast<std::int64_t>(order.size()) / settings.batch_size;
    feed.start(order, 0, steps, epoch_seed);
    std::vector<std::pair<at::Tensor, at::Tensor>> out;
    at::Tensor x, y;
    while (feed.next(x, y)) out.emplace_back(x.clone(), y.clone());
    return out;
  }
};

void expect_same_batches(const std::vector<std::pair<at::Tensor, at::Tensor>>& a,
                         const std::vector<std::pair<at::Tensor, at::Tensor>>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(a[i].first.equal(b[i].first)) << what << ": images of batch " << i << " differ";
    EXPECT_TRUE(a[i].second.equal(b[i].second)) << what << ": labels of batch " << i << " differ";
  }
}

// A dataset that fails on one sample, to see the error reach the training thread.
class FailingDataset : public Dataset {
 public:
  std::int64_t size(Split) const override { return 64; }
  std::int64_t num_classes() const override { return 2; }
  std::vector<std::int64_t> sample_shape() const override { return {1, 4, 4}; }
  Batch get_batch(Split, const std::vector<std::int64_t>& idx, std::uint64_t) const override {
    for (auto i : idx) {
      if (i == 37) throw Error("sample 37 is corrupt");
    }
    return {at::zeros({static_cast<std::int64_t>(idx.size()), 1, 4, 4}),
            at::zeros({static_cast<std::int64_t>(idx.size())}, at::kLong)};
  }
};

}  // namespace

TEST(BatchFeed, BatchesAreIdenticalForAnyThreadCountAndPrefetchDepth) {
  AugmentedRun s(1);
  const auto order = epoch_order(s.n(), 9, 0);
  const auto reference = s.epoch(FeedSettings{8, 0}, order, 77);
  ASSERT_EQ(reference.size(), 5u);
  for (int threads : {1, 2}) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
    for (std::int64_t prefetch : {1, 2, 6}) {
      expect_same_batches(reference, s.epoch(FeedSettings{8, prefetch}, order, 77, threads),
                          std::to_string(threads) + " threads, prefetch " + std::to_string(prefetch));
    }
  }
  // The same order with another epoch seed augments differently.
  auto other = s.epoch(FeedSettings{8, 2}, order, 78, 2);
  EXPECT_FALSE(other[0].first.equal(reference[0].first));
  EXPECT_TRUE(other[0].second.equal(reference[0].second));
}

TEST(BatchFeed, FeedsTheCachedViewsAfterADropAtAnyDepth) {
  AugmentedRun s(3);
  test::drop_to(*s.controller, 2);
  const auto order = epoch_order(s.n(), 9, 1);
  const auto reference = s.epoch(FeedSettings{8, 0}, order, 5);
  expect_same_batches(reference, s.epoch(FeedSettings{8, 3}, order, 5, 2), "prefetch 3");
  for (std::size_t b = 0; b < reference.size(); ++b) {
    std::vector<std::int64_t> idx(order.begin() + static_cast<std::ptrdiff_t>(b * 8),
                                  order.begin() + static_cast<std::ptrdiff_t>(b * 8 + 8));
    EXPECT_TRUE(reference[b].first.equal(test::inputs(*s.controller, idx, 5))) << "batch " << b;
  }
}

TEST(BatchFeed, AnErrorWhilePreparingABatchReachesTheTrainingThreadInOrder) {
  auto host = test::builtin_host();
  FailingDataset data;
  DropController controller(
      *host->create_model("vgg", test::plugin_options(*host, PluginKind::kModel, "vgg", {{"width", "0.0625"}}),
                          ModelContext{1, 4, 4, 2}),
      data, [] { return std::shared_ptr<FeatureCache>(); }, {}, {}, DropSettings{});
  std::vector<std::int64_t> order(64);
  std::iota(order.begin(), order.end(), 0);
  for (std::int64_t prefetch : {0, 2}) {
    BatchFeed feed(controller.source(), FeedSettings{8, prefetch});
    feed.start(order, 0, 8, 1);
    at::Tensor x, y;
    for (int step = 0; step < 4; ++step) EXPECT_TRUE(feed.next(x, y)) << "step " << step;
    try {
      feed.next(x, y);  // batch 4 holds sample 37
      ADD_FAILURE() << "no error for the corrupt sample";
    } catch (const Error& e) {
      EXPECT_STREQ(e.what(), "sample 37 is corrupt");
    }
    EXPECT_FALSE(feed.next(x, y));
  }
}

TEST(CacheViews, EachViewIsOneDrawOfTheTrainingTransform) {
  AugmentedRun s(4);
  test::drop_to(*s.controller, 1);
  std::vector<std::int64_t> idx = {0, 5, 17, 39};
  std::vector<at::Tensor> views;
  for (std::int64_t v = 0; v < 4; ++v) {
    std::vector<std::int64_t> rows;
    for (auto i : idx) rows.push_back(s.controller->row(i, v));
    at::Tensor stored = s.controller->cached_rows(rows);
    // The stored view is stage 0 applied to the dataset's transform drawn with view_seed(v).
    at::NoGradGuard no_grad;
    at::Tensor images = s.data->get_batch(Split::kTrain, idx, s.controller->view_seed(v))
                            .images.contiguous(at::MemoryFormat::ChannelsLast);
    EXPECT_TRUE(at::allclose(stored, s.model->forward_stage(0, images), 1e-5, 1e-6)) << "view " << v;
    views.push_back(stored);
  }
  for (std::size_t k = 0; k < idx.size(); ++k) {
    for (std::size_t a = 0; a < 4; ++a) {
      for (std::size_t b = a + 1; b < 4; ++b) {
        EXPECT_FALSE(views[a][static_cast<std::int64_t>(k)].equal(views[b][static_cast<std::int64_t>(k)]))
            << "sample " << idx[k] << ": views " << a << " and " << b << " are identical";
      }
    }
  }
}

TEST(CacheViews, OneViewPerSampleIsDrawnEachEpochAndAllAreUsed) {
  AugmentedRun s(4);
  test::drop_to(*s.controller, 1);
  const std::int64_t n = s.n();
  std::vector<std::int64_t> all(static_cast<std::size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  std::map<std::int64_t, int> drawn;
  std::vector<std::set<std::int64_t>> per_sample(static_cast<std::size_t>(n));
  for (std::uint64_t epoch = 0; epoch < 12; ++epoch) {
    at::Tensor fed = test::inputs(*s.controller, all, epoch);
    std::vector<std::int64_t> rows;
    for (auto i : all) {
      std::int64_t v = s.controller->view_of(epoch, i);
      ASSERT_GE(v, 0);
      ASSERT_LT(v, 4);
      ++drawn[v];
      per_sample[static_cast<std::size_t>(i)].insert(v);
      rows.push_back(s.controller->row(i, v));
    }
    EXPECT_TRUE(fed.equal(s.controller->cached_rows(rows))) << "epoch " << epoch;
  }
  // 480 draws over 4 views: each view about a quarter of the time, and most
  // samples see at least three of their views in 12 epochs.
  for (std::int64_t v = 0; v < 4; ++v) EXPECT_GT(drawn[v], 80) << "view " << v;
  std::size_t varied = 0;
  for (const auto& seen : per_sample) varied += seen.size() >= 3;
  EXPECT_GT(varied, per_sample.size() * 3 / 4);
}

TEST(CacheViews, AViewCacheHoldsKRowsPerSampleAndCarriesThemToTheNextCut) {
  AugmentedRun s(3);
  DropReport first = test::drop_to(*s.controller, 1);
  const auto& shape1 = s.profile.stage_output_shapes[0];
  EXPECT_EQ(first.cache_bytes, 3 * s.n() * shape1[0] * shape1[1] * shape1[2] * 4);
  EXPECT_EQ(first.flops, 3 * s.n() * s.profile.stage_range_flops(0, 1));
  at::Tensor before = test::inputs(*s.controller, {3, 4}, 21);
  test::drop_to(*s.controller, 3);
  // The new cut's features of the drawn views are the old cut's through the new stages.
  at::NoGradGuard no_grad;
  at::Tensor x = before;
  for (std::size_t st = 1; st < 3; ++st) x = s.model->forward_stage(st, x);
  EXPECT_TRUE(at::allclose(test::inputs(*s.controller, {3, 4}, 21), x, 1e-5, 1e-6));
}

namespace {
// A cache that records whether any of its readers outlived it: the cache and
// its readers share an `alive` flag the cache clears when it is destroyed.
std::atomic<int> readers_after_cache{0};

class LifetimeCache final : public FeatureCache {
 public:
  ~LifetimeCache() override { *alive_ = false; }
  void begin(const CacheLayout& layout) override {
    std::vector<std::int64_t> sizes = {layout.count};
    sizes.insert(sizes.end(), layout.shape.begin(), layout.shape.end());
    rows_ = at::zeros(sizes, at::TensorOptions().dtype(layout.dtype));
  }
  void put(const std::vector<std::int64_t>& rows, const at::Tensor& batch) override {
    rows_.index_copy_(0, at::tensor(rows, at::kLong), batch.to(rows_.scalar_type()));
  }
  void finish() override {}
  at::Tensor get(const std::vector<std::int64_t>& rows) override {
    return rows_.index_select(0, at::tensor(rows, at::kLong));
  }
  std::unique_ptr<BatchReader> reader(std::vector<std::int64_t> order, std::int64_t batch_size) override {
    class Reader final : public BatchReader {
     public:
      Reader(LifetimeCache& cache, std::vector<std::int64_t> order, std::int64_t batch)
          : cache_(cache), alive_(cache.alive_), order_(std::move(order)), batch_(batch) {}
      // Like the disk reader's: the destructor still uses the cache.
      ~Reader() override {
        if (!*alive_) ++readers_after_cache;
        else cache_.rows_.sum();
      }
      at::Tensor next() override {
        if (!*alive_) ++readers_after_cache;
        if (pos_ >= order_.size()) return {};
        const std::size_t end = std::min(order_.size(), pos_ + static_cast<std::size_t>(batch_));
        std::vector<std::int64_t> rows(order_.begin() + static_cast<std::ptrdiff_t>(pos_),
                                       order_.begin() + static_cast<std::ptrdiff_t>(end));
        pos_ = end;
        return cache_.get(rows);
      }

     private:
      LifetimeCache& cache_;
      std::shared_ptr<std::atomic<bool>> alive_;
      std::vector<std::int64_t> order_;
      std::int64_t batch_;
      std::size_t pos_ = 0;
    };
    return std::make_unique<Reader>(*this, std::move(order), batch_size);
  }
  std::int64_t bytes() const override { return rows_.numel() * rows_.element_size(); }

 private:
  std::shared_ptr<std::atomic<bool>> alive_ = std::make_shared<std::atomic<bool>>(true);
  at::Tensor rows_;
};
}  // namespace

// Issue 22: a source holds what it reads (the cache, the labels, the
// epoch's draw of views), not the controller; the controller gone, it feeds
// the same batches.
TEST(BatchFeed, ACacheSourceFeedsTheSameBatchesWithoutItsController) {
  AugmentedRun s(3);
  test::drop_to(*s.controller, 2);
  const auto order = epoch_order(s.n(), 9, 2);
  const auto reference = s.epoch(FeedSettings{8, 2}, order, 11);
  ASSERT_FALSE(reference.empty());
  BatchFeed feed(s.controller->source(), FeedSettings{8, 2});
  s.controller.reset();
  feed.start(order, 0, static_cast<std::int64_t>(reference.size()), 11);
  std::vector<std::pair<at::Tensor, at::Tensor>> after;
  at::Tensor x, y;
  while (feed.next(x, y)) after.emplace_back(x.clone(), y.clone());
  expect_same_batches(reference, after, "without the controller");
}

// Issue 12, defect 1: a drop replaced the controller's cache while the feed's
// reader from it (and its producer thread) still existed; the reader's
// destructor then used a destroyed cache. Readers now share ownership.
TEST(BatchFeedLifetime, AReaderNeverOutlivesItsCacheAcrossADrop) {
  AugmentedRun s(1, "none");
  s.controller = std::make_unique<DropController>(
      *s.model, *s.data, [] { return std::make_shared<LifetimeCache>(); }, s.profile.stage_flops,
      s.profile.stage_output_shapes, DropSettings{});
  readers_after_cache = 0;
  test::drop_to(*s.controller, 1);
  std::vector<std::int64_t> order(static_cast<std::size_t>(s.n()));
  std::iota(order.begin(), order.end(), 0);
  BatchFeed feed(s.controller->source(), FeedSettings{4, 2});
  feed.start(order, 0, s.n() / 4, 5);
  at::Tensor x, y;
  ASSERT_TRUE(feed.next(x, y));
  // A drop without the feed attached (apply would stop it first): the
  // controller releases the cut-1 cache while the feed's reader still reads it.
  test::drop_to(*s.controller, 2);
  feed.start(order, 1, s.n() / 4, 5);  // destroys the old reader
  int batches = 0;
  while (feed.next(x, y)) ++batches;
  EXPECT_EQ(batches, s.n() / 4 - 1);
  EXPECT_EQ(readers_after_cache.load(), 0) << "a reader used its cache after the cache was destroyed";
  // stop() releases the reader: nothing is fed until the next start.
  feed.start(order, 0, s.n() / 4, 5);
  feed.stop();
  EXPECT_FALSE(feed.next(x, y));
}

}  // namespace ld::core
