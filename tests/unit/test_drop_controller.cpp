// The host's drop invariants (ARCHITECTURE.md), each as its own test, on a
// narrow VGG-11-BN from the real plugin and an in-memory dataset.
#include <gtest/gtest.h>

#include <atomic>
#include <numeric>

#include <torch/nn/functional/loss.h>

#include "learndrop/core/batch_feed.h"
#include "learndrop/core/config.h"
#include "learndrop/core/drop_controller.h"
#include "learndrop/core/flops.h"
#include "loop/optimizer.h"
#include "learndrop/registrar.h"
#include "drop_helpers.h"
#include "test_env.h"

namespace ld::core {

namespace {

// Random images; counts how often the host reads raw training samples.
class CountingDataset : public Dataset {
 public:
  CountingDataset(std::int64_t n, std::int64_t size) {
    at::manual_seed(11);
    images_ = at::randn({n, 1, size, size});
    labels_ = at::randint(0, 4, {n}, at::kLong);
  }
  std::int64_t size(Split) const override { return images_.size(0); }
  std::int64_t num_classes() const override { return 4; }
  std::vector<std::int64_t> sample_shape() const override { return {1, images_.size(2), images_.size(3)}; }
  Batch get_batch(Split, const std::vector<std::int64_t>& idx, std::uint64_t) const override {
    ++reads;
    at::Tensor i = at::tensor(idx, at::kLong);
    return {images_.index_select(0, i), labels_.index_select(0, i)};
  }
  mutable std::atomic<int> reads{0};
  at::Tensor images_, labels_;
};

struct Fixture {
  std::unique_ptr<PluginHost> host = test::builtin_host();
  CountingDataset data{48, 16};
  std::shared_ptr<StagedModel> model;
  ModelProfile profile;
  std::unique_ptr<DropController> controller;

  explicit Fixture(std::int64_t build_batch = 256, const std::string& plugin = "vgg",
                   const std::map<std::string, std::string>& model_keys = {
                       {"variant", "vgg11_bn"}, {"width", "0.0625"}, {"classifier", "compact"}}) {
    at::manual_seed(5);
    model = host->create_model(plugin, test::plugin_options(*host, PluginKind::kModel, plugin, model_keys),
                               ModelContext{1, 16, 16, 4});
    for (auto& p : model->parameters()) {
      if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
    }
    profile = profile_model(*model, data.sample_shape());
    DropSettings settings;
    settings.build_batch = build_batch;
    settings.seed = 1;
    controller = std::make_unique<DropController>(
        *model, data, [this] { return host->create_cache("ram", Options(), CacheContext{}); }, profile.stage_flops,
        profile.stage_output_shapes, settings);
  }

  std::vector<std::int64_t> all() const {
    std::vector<std::int64_t> idx(static_cast<std::size_t>(data.size(Split::kTrain)));
    std::iota(idx.begin(), idx.end(), 0);
    return idx;
  }

  at::Tensor images() const { return data.images_.contiguous(at::MemoryFormat::ChannelsLast); }

  // Advances through `cuts` (ascending) and checks, in eval mode, that the
  // cached features at each cut give exactly the full model's logits.
  void expect_equivalence_at(const std::vector<std::size_t>& cuts) {
    model->eval();
    at::NoGradGuard no_grad;
    at::Tensor full = model->forward(images(), 0);
    for (std::size_t k : cuts) {
      test::drop_to(*controller, k);
      at::Tensor logits = model->forward(test::inputs(*controller, all(), 0), k);
      EXPECT_TRUE(logits.equal(full)) << "cut " << k << ": max difference "
                                      << (logits - full).abs().max().item<float>();
    }
  }

  std::vector<std::size_t> every_cut() const {
    std::vector<std::size_t> cuts(model->num_stages());
    std::iota(cuts.begin(), cuts.end(), 1);
    return cuts;
  }

  // A few SGD steps at the current cut, with batch norm in training mode.
  void train_steps(StagedOptimizer& opt, int steps) {
    model->train();
    controller->keep_dropped_in_eval();
    for (int s = 0; s < steps; ++s) {
      std::vector<std::int64_t> idx = all();
      at::Tensor x = test::inputs(*controller, idx, 0);
      at::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x, controller->frozen_cut()), data.labels_);
      opt.zero_grad();
      loss.backward();
      opt.step();
    }
  }
};

TrainSettings sgd() {
  TrainSettings t;
  t.epochs = 1;
  t.optimizer = "sgd";
  t.lr = 0.1;
  t.momentum = 0.9;
  t.weight_decay = 1e-3;
  t.lr_schedule = "constant";
  return t;
}

}  // namespace

TEST(DropInvariants, CachedFeaturesGiveTheFullModelsLogitsAtEveryCut) {
  Fixture f;
  f.expect_equivalence_at(f.every_cut());
}

TEST(DropInvariants, CachedFeaturesGiveTheFullModelsLogitsAtEveryCutOfAResNet) {
  for (const char* variant : {"resnet18", "resnet50"}) {
    SCOPED_TRACE(variant);
    Fixture f(/*build_batch=*/256, "resnet", {{"variant", variant}, {"width", "0.0625"}, {"stem", "cifar"}});
    f.expect_equivalence_at(f.every_cut());
  }
}

TEST(DropInvariants, EquivalenceHoldsWhenTheCacheIsBuiltInSmallBatches) {
  Fixture f(/*build_batch=*/7);
  f.expect_equivalence_at({2, 5, 8});
}

TEST(DropInvariants, DroppedStagesAreFrozenBitForBit) {
  Fixture f;
  StagedOptimizer opt(*f.model, sgd());
  f.train_steps(opt, 2);
  test::drop_to(*f.controller, 3);
  opt.drop_stages_before(3);
  std::vector<at::Tensor> before;
  for (std::size_t i = 0; i < 3; ++i) {
    for (const auto& t : f.model->stage_module(i)->parameters()) before.push_back(t.clone());
    for (const auto& t : f.model->stage_module(i)->buffers()) before.push_back(t.clone());
  }
  at::Tensor trained_before = f.model->stage_module(3)->parameters()[0].clone();
  f.train_steps(opt, 3);

  std::size_t j = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_FALSE(f.model->stage_module(i)->is_training()) << "stage " << i << " left eval mode";
    for (const auto& t : f.model->stage_module(i)->parameters()) {
      EXPECT_FALSE(t.requires_grad());
      EXPECT_TRUE(t.equal(before[j++])) << "stage " << i << " parameter changed";
    }
    for (const auto& t : f.model->stage_module(i)->buffers()) {
      EXPECT_TRUE(t.equal(before[j++])) << "stage " << i << " buffer (batch-norm statistics) changed";
    }
  }
  EXPECT_FALSE(f.model->stage_module(3)->parameters()[0].equal(trained_before)) << "stage 3 should still train";
  EXPECT_TRUE(f.model->stage_module(3)->is_training());
}

TEST(DropInvariants, DroppedStagesLeaveTheOptimizer) {
  Fixture f;
  StagedOptimizer opt(*f.model, sgd());
  std::size_t all_params = opt.parameters().size();
  test::drop_to(*f.controller, 2);
  opt.drop_stages_before(2);
  std::size_t dropped = f.model->stage_module(0)->parameters().size() + f.model->stage_module(1)->parameters().size();
  EXPECT_EQ(opt.parameters().size(), all_params - dropped);
  for (const auto& p : opt.parameters()) {
    for (std::size_t i = 0; i < 2; ++i) {
      for (const auto& q : f.model->stage_module(i)->parameters()) {
        EXPECT_NE(p.unsafeGetTensorImpl(), q.unsafeGetTensorImpl());
      }
    }
  }
}

TEST(DropInvariants, DroppedStagesTakeTheirOptimizerStateWithThem) {
  // The momentum buffers of dropped stages must go with them (memory, and a
  // stale buffer must never be applied). Found through the version-specific
  // key of the optimizer's state map (torch_compat.h): a wrong key would
  // erase nothing and leave every entry in place.
  Fixture f;
  StagedOptimizer opt(*f.model, sgd());
  f.train_steps(opt, 2);
  const std::size_t all_params = opt.parameters().size();
  ASSERT_EQ(opt.state_entries(), all_params) << "momentum SGD keeps one buffer per parameter after a step";
  test::drop_to(*f.controller, 3);
  opt.drop_stages_before(3);
  EXPECT_EQ(opt.state_entries(), opt.parameters().size());
  EXPECT_LT(opt.state_entries(), all_params);
  f.train_steps(opt, 1);
  EXPECT_EQ(opt.state_entries(), opt.parameters().size()) << "no state is recreated for frozen stages";
}

TEST(DropInvariants, NewCutIsBuiltFromThePreviousCacheThroughNewStagesOnly) {
  Fixture f(/*build_batch=*/16);
  DropReport first = test::drop_to(*f.controller, 2);
  EXPECT_EQ(f.data.reads.load(), 3);  // 48 samples in batches of 16, read once
  EXPECT_EQ(first.flops, 48 * f.profile.stage_range_flops(0, 2));
  DropReport second = test::drop_to(*f.controller, 5);
  EXPECT_EQ(f.data.reads.load(), 3) << "the new cut read raw samples again";
  EXPECT_EQ(second.flops, 48 * f.profile.stage_range_flops(2, 5));
  EXPECT_EQ(second.from_cut, 2u);
  EXPECT_EQ(f.controller->frozen_cut(), 5u);
  const auto& shape = f.profile.stage_output_shapes[4];
  EXPECT_EQ(second.cache_bytes, 48 * shape[0] * shape[1] * shape[2] * 4);
}

TEST(DropInvariants, OnlyForwardMovesOfTheCutAreAccepted) {
  Fixture f;
  test::drop_to(*f.controller, 2);
  const std::uint64_t generation = f.controller->generation();
  // The same cut or a lower one is no drop; a lower one is named as kept.
  DropOutcome same = f.controller->apply(Decision{2, ""});
  EXPECT_FALSE(same.drop.has_value());
  EXPECT_EQ(same.note, "");
  DropOutcome lower = f.controller->apply(Decision{1, ""});
  EXPECT_FALSE(lower.drop.has_value());
  EXPECT_EQ(lower.cut, 2u);
  EXPECT_EQ(lower.note, "cut 1 asked for, below the current cut 2; drops are monotone, keeping 2");
  EXPECT_EQ(f.controller->generation(), generation) << "no cache was built";
  // A cut past the last stage is clamped to the last.
  const std::size_t stages = f.model->num_stages();
  DropOutcome past = f.controller->apply(Decision{stages + 3, ""});
  ASSERT_TRUE(past.drop.has_value());
  EXPECT_EQ(past.drop->to_cut, stages);
  EXPECT_EQ(past.note, "cut " + std::to_string(stages + 3) + " asked for, but the model has " + std::to_string(stages) +
                           " stages; clamped");
  EXPECT_EQ(f.controller->frozen_cut(), stages);
}

// The drop transaction with a training attached: the optimizer loses the
// frozen stages, the model keeps its mode, and the feed, resumed with the
// source the drop returns, goes on from the new cache at the batch it would
// have given next.
TEST(DropInvariants, ApplyTrimsTheOptimizerAndHandsTheFeedTheCache) {
  Fixture f;
  f.model->train();
  TrainSettings train;
  StagedOptimizer optimizer(*f.model, train);
  const std::size_t params_before = optimizer.parameters().size();
  std::vector<std::int64_t> order(static_cast<std::size_t>(f.data.size(Split::kTrain)));
  std::iota(order.begin(), order.end(), 0);
  BatchFeed feed(f.controller->source(), FeedSettings{4, 2});
  const auto steps = static_cast<std::int64_t>(order.size()) / 4;
  feed.start(order, 0, steps, 3);
  at::Tensor x, y;
  ASSERT_TRUE(feed.next(x, y));
  ASSERT_TRUE(feed.next(x, y));
  feed.stop();
  DropOutcome out = f.controller->apply(Decision{2, "test"}, &optimizer);
  ASSERT_TRUE(out.drop.has_value());
  ASSERT_NE(out.source, nullptr) << "a drop returns the source for the rest of the epoch";
  feed.resume(std::move(out.source));
  EXPECT_LT(optimizer.parameters().size(), params_before);
  for (std::size_t i = 0; i < 2; ++i) {
    for (const auto& p : f.model->stage_module(i)->parameters()) {
      for (const auto& q : optimizer.parameters()) EXPECT_FALSE(p.is_same(q)) << "a frozen parameter is still trained";
    }
    EXPECT_FALSE(f.model->stage_module(i)->is_training()) << "stage " << i;
  }
  EXPECT_TRUE(f.model->stage_module(2)->is_training());
  // The rest of the epoch comes from the cache: cut-2 features of batches 2, 3, ...
  std::int64_t fed = 0;
  while (feed.next(x, y)) {
    const std::int64_t step = 2 + fed++;
    std::vector<std::int64_t> idx(order.begin() + step * 4, order.begin() + step * 4 + 4);
    std::vector<std::int64_t> rows(idx);
    EXPECT_TRUE(x.equal(f.controller->cached_rows(rows))) << "batch " << step;
    EXPECT_TRUE(y.equal(f.controller->train_labels().index_select(0, at::tensor(idx, at::kLong))));
  }
  EXPECT_EQ(fed, steps - 2);
}

TEST(DropInvariants, LabelsFollowTheCachedSamples) {
  Fixture f;
  test::drop_to(*f.controller, 1);
  EXPECT_TRUE(f.controller->train_labels().equal(f.data.labels_));
}

TEST(StorageLayout, RoundTripIsExactAndChannelsLast) {
  at::Tensor x = at::randn({3, 5, 4, 2}).contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor stored = to_storage_layout(x);
  EXPECT_TRUE(stored.is_contiguous());
  EXPECT_EQ(stored.sizes(), (at::IntArrayRef{3, 4, 2, 5}));
  at::Tensor back = from_storage_layout(stored, {5, 4, 2});
  EXPECT_TRUE(back.equal(x));
  EXPECT_TRUE(back.is_contiguous(at::MemoryFormat::ChannelsLast));
}

}  // namespace ld::core
