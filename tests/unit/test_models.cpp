// The model zoo against torchvision's published architectures: parameter
// counts and forward multiply-accumulates at 224x224 with 1000 classes are
// external facts (torchvision 0.14, the same numbers as its model cards).
#include <gtest/gtest.h>

#include <torch/csrc/autograd/autograd.h>

#include "learndrop/core/flops.h"
#include "learndrop/registrar.h"
#include "test_env.h"

namespace ld::core {

namespace {

std::shared_ptr<StagedModel> make(const std::string& variant, const std::map<std::string, std::string>& extra = {},
                                  ModelContext ctx = ModelContext{3, 224, 224, 1000}) {
  static auto host = test::builtin_host();
  std::string plugin = variant.rfind("resnet", 0) == 0 ? "resnet" : "vgg";
  std::map<std::string, std::string> keys = extra;
  keys["variant"] = variant;
  return host->create_model(plugin, test::plugin_options(*host, PluginKind::kModel, plugin, keys), ctx);
}

std::int64_t params(const StagedModel& m) {
  std::int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

}  // namespace

TEST(ModelZoo, ParameterCountsEqualTorchvision) {
  const std::map<std::string, std::int64_t> torchvision = {
      {"resnet18", 11689512},  {"resnet34", 21797672}, {"resnet50", 25557032},  {"resnet101", 44549160},
      {"resnet152", 60192808}, {"vgg11", 132863336},   {"vgg11_bn", 132868840}, {"vgg13", 133047848},
      {"vgg13_bn", 133053736}, {"vgg16", 138357544},   {"vgg16_bn", 138365992}, {"vgg19", 143667240},
      {"vgg19_bn", 143678248},
  };
  for (const auto& [variant, expected] : torchvision) {
    EXPECT_EQ(params(*make(variant)), expected) << variant;
  }
}

TEST(ModelZoo, ForwardMacsAt224EqualTorchvision) {
  const std::map<std::string, std::int64_t> macs = {
      {"resnet18", 1814073344}, {"resnet50", 4089184256}, {"resnet152", 11513626624},
      {"vgg11", 7609090048},    {"vgg16", 15470264320},
  };
  for (const auto& [variant, expected] : macs) {
    ModelProfile p = profile_model(*make(variant), {3, 224, 224});
    EXPECT_EQ(p.flops_from(0), 2 * expected) << variant;
  }
}

TEST(ModelZoo, StageCounts) {
  EXPECT_EQ(make("resnet152")->num_stages(), 51u);  // stem + 3 + 8 + 36 + 3 blocks
  EXPECT_EQ(make("resnet18")->num_stages(), 9u);
  EXPECT_EQ(make("resnet50")->num_stages(), 17u);
  EXPECT_EQ(make("vgg16_bn")->num_stages(), 13u);  // one per conv layer
  EXPECT_EQ(make("vgg11")->num_stages(), 8u);
  EXPECT_EQ(make("resnet152")->stage_name(50), "layer4.2");
}

TEST(ModelZoo, CifarStemKeepsResolution) {
  auto m = make("resnet18", {{"stem", "cifar"}, {"width", "0.25"}}, ModelContext{3, 32, 32, 10});
  ModelProfile p = profile_model(*m, {3, 32, 32});
  EXPECT_EQ(p.stage_output_shapes[0], (std::vector<std::int64_t>{16, 32, 32}));
  EXPECT_EQ(p.stage_output_shapes.back(), (std::vector<std::int64_t>{128, 4, 4}));
  auto imagenet = make("resnet18", {{"width", "0.25"}}, ModelContext{3, 224, 224, 10});
  EXPECT_EQ(profile_model(*imagenet, {3, 224, 224}).stage_output_shapes[0], (std::vector<std::int64_t>{16, 56, 56}));
}

TEST(ModelZoo, InputChannelsAndClassesComeFromTheDataset) {
  auto m = make("vgg11_bn", {{"width", "0.125"}, {"classifier", "compact"}}, ModelContext{1, 28, 28, 7});
  m->eval();
  at::Tensor y = m->forward(at::randn({2, 1, 28, 28}), 0);
  EXPECT_EQ(y.sizes(), (at::IntArrayRef{2, 7}));
}

TEST(ModelZoo, VggClassifierOnOnePixelFeaturesEqualsTorchvisionsReplication) {
  auto m = make("vgg11_bn", {{"width", "0.125"}, {"dropout", "0"}}, ModelContext{3, 32, 32, 10});
  auto params = m->named_parameters();
  at::Tensor f = at::randn({4, 64, 1, 1}, at::TensorOptions().requires_grad(true));
  // torchvision: replicate to 7x7, flatten, three linear layers.
  auto reference = [&](const at::Tensor& x) {
    at::Tensor h = at::adaptive_avg_pool2d(x, {7, 7}).flatten(1);
    h = at::relu(at::linear(h, params["head.layers.2.weight"], params["head.layers.2.bias"]));
    h = at::relu(at::linear(h, params["head.layers.5.weight"], params["head.layers.5.bias"]));
    return at::linear(h, params["head.layers.8.weight"], params["head.layers.8.bias"]);
  };
  at::Tensor expected = reference(f);
  at::Tensor got = m->forward_head(f);
  EXPECT_TRUE(at::allclose(got, expected, 1e-5, 1e-6)) << (got - expected).abs().max().item<float>();
  // The same gradients reach the first layer's full 49-position weight.
  at::Tensor w = params["head.layers.2.weight"];
  at::Tensor g_ref = torch::autograd::grad({expected.sum()}, {w})[0];
  at::Tensor g_got = torch::autograd::grad({got.sum()}, {w})[0];
  EXPECT_TRUE(at::allclose(g_got, g_ref, 1e-4, 1e-6)) << (g_got - g_ref).abs().max().item<float>();
}

}  // namespace ld::core
