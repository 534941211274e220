#include <gtest/gtest.h>

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include "learndrop/core/flops.h"
#include "learndrop/model.h"

namespace ld::core {

namespace {
namespace nn = torch::nn;

// conv 1->2 (3x3, pad 1) on 4x4, conv 2->4 (3x3, stride 2, groups 2) -> 2x2, head linear 16->3.
class HandNet : public StagedModel {
 public:
  HandNet() {
    add_stage("a", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 2, 3).padding(1))));
    add_stage("b", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(2, 4, 3).stride(2).padding(1).groups(2)), nn::ReLU()));
    set_head(nn::Sequential(nn::Flatten(), nn::Linear(16, 3)));
  }
};
}  // namespace

TEST(Flops, MatchHandComputedValues) {
  HandNet net;
  ModelProfile p = profile_model(net, {1, 4, 4});
  // a: 4x4 outputs x 2 channels x (1 x 3 x 3) MACs = 288 MACs = 576 FLOPs.
  // b: 2x2 outputs x 4 channels x (2/2 x 3 x 3) MACs = 144 MACs = 288 FLOPs.
  // head: 16 x 3 MACs = 48 MACs = 96 FLOPs.
  ASSERT_EQ(p.stage_flops.size(), 2u);
  EXPECT_EQ(p.stage_flops[0], 576);
  EXPECT_EQ(p.stage_flops[1], 288);
  EXPECT_EQ(p.head_flops, 96);
  EXPECT_EQ(p.flops_from(0), 960);
  EXPECT_EQ(p.flops_from(1), 384);
  EXPECT_EQ(p.flops_from(2), 96);
  EXPECT_EQ(p.stage_range_flops(0, 2), 864);
  EXPECT_EQ(p.stage_output_shapes[0], (std::vector<std::int64_t>{2, 4, 4}));
  EXPECT_EQ(p.stage_output_shapes[1], (std::vector<std::int64_t>{4, 2, 2}));
}

TEST(Flops, CountsScaleWithBatchAndIgnoreElementwise) {
  nn::Linear fc(10, 5);
  at::Tensor x = at::randn({7, 10});
  EXPECT_EQ(count_forward_flops([&] { fc->forward(x); }), 2 * 7 * 10 * 5);
  EXPECT_EQ(count_forward_flops([&] { at::relu(x).add(1.0); }), 0);
  at::Tensor a = at::randn({3, 4}), b = at::randn({4, 6});
  EXPECT_EQ(count_forward_flops([&] { at::mm(a, b); }), 2 * 3 * 4 * 6);
}

TEST(Flops, ProfileRestoresTrainingMode) {
  HandNet net;
  net.train();
  net.stage_module(0)->eval();
  profile_model(net, {1, 4, 4});
  EXPECT_FALSE(net.stage_module(0)->is_training());
  EXPECT_TRUE(net.stage_module(1)->is_training());
}

}  // namespace ld::core
