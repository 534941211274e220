// Model plugin `resnet`: ResNet-18/34 (basic blocks) and ResNet-50/101/152
// (bottlenecks) as in torchvision. The stem is one stage, every residual
// block is one stage, average pooling + fc is the head. Module names follow
// torchvision's inside each stage, so torchvision state dicts load with a
// plain renaming.

#include <cmath>
#include <map>

#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/adaptive.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include "learndrop/sdk.h"

namespace {

namespace nn = torch::nn;

struct Layout {
  bool bottleneck;
  std::vector<int> blocks;
};

const std::map<std::string, Layout> kLayouts = {
    {"resnet18", {false, {2, 2, 2, 2}}},  {"resnet34", {false, {3, 4, 6, 3}}},  {"resnet50", {true, {3, 4, 6, 3}}},
    {"resnet101", {true, {3, 4, 23, 3}}}, {"resnet152", {true, {3, 8, 36, 3}}},
};

struct ResNetOptions {
  std::string variant;
  std::string stem;
  double width = 1.0;
  std::string init;
};

// The keys, each with the member it sets (the manifest and the factory both use it).
const ld::OptionTable<ResNetOptions>& options_table() {
  static const auto table =
      ld::OptionTable<ResNetOptions>()
          .add(ld::ConfigKey("variant", ld::ValueType::kString, "resnet18", "architecture")
                   .one_of({"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}),
               &ResNetOptions::variant)
          .add(ld::ConfigKey("stem", ld::ValueType::kString, "imagenet",
                             "imagenet = 7x7/2 conv + max-pool; cifar = 3x3/1 conv, no pool (for 28-32 px inputs)")
                   .one_of({"imagenet", "cifar"}),
               &ResNetOptions::stem)
          .add(ld::ConfigKey("width", ld::ValueType::kFloat, "1.0", "channel multiplier (1.0 = the published widths)")
                   .range(0.01, 16),
               &ResNetOptions::width)
          .add(ld::ConfigKey("init", ld::ValueType::kString, "torchvision",
                             "torchvision = torchvision's initialisation; default = LibTorch's layer defaults")
                   .one_of({"torchvision", "default"}),
               &ResNetOptions::init);
  return table;
}

std::int64_t scaled(double channels, double width) { return std::max<std::int64_t>(1, std::llround(channels * width)); }

nn::Conv2d conv(std::int64_t in, std::int64_t out, std::int64_t k, std::int64_t stride, std::int64_t pad) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(false));
}

// conv1 + bn1 + relu (+ 3x3/2 max-pool for the ImageNet stem).
class StemImpl : public nn::Module {
 public:
  StemImpl(std::int64_t in, std::int64_t out, bool imagenet)
      : conv1(register_module("conv1", imagenet ? conv(in, out, 7, 2, 3) : conv(in, out, 3, 1, 1))),
        bn1(register_module("bn1", nn::BatchNorm2d(out))),
        pool_(imagenet) {}
  torch::Tensor forward(torch::Tensor x) {
    x = bn1(conv1(x)).relu_();
    return pool_ ? torch::max_pool2d(x, 3, 2, 1) : x;
  }
  nn::Conv2d conv1;
  nn::BatchNorm2d bn1;

 private:
  bool pool_;
};
TORCH_MODULE(Stem);

// A residual block: basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1).
class BlockImpl : public nn::Module {
 public:
  BlockImpl(bool bottleneck, std::int64_t in, std::int64_t planes, std::int64_t stride) : bottleneck_(bottleneck) {
    std::int64_t out = bottleneck ? planes * 4 : planes;
    if (bottleneck) {
      conv1 = register_module("conv1", conv(in, planes, 1, 1, 0));
      bn1 = register_module("bn1", nn::BatchNorm2d(planes));
      conv2 = register_module("conv2", conv(planes, planes, 3, stride, 1));
      bn2 = register_module("bn2", nn::BatchNorm2d(planes));
      conv3 = register_module("conv3", conv(planes, out, 1, 1, 0));
      bn3 = register_module("bn3", nn::BatchNorm2d(out));
    } else {
      conv1 = register_module("conv1", conv(in, planes, 3, stride, 1));
      bn1 = register_module("bn1", nn::BatchNorm2d(planes));
      conv2 = register_module("conv2", conv(planes, planes, 3, 1, 1));
      bn2 = register_module("bn2", nn::BatchNorm2d(planes));
    }
    if (stride != 1 || in != out) {
      // LibTorch 1.13's channels-last backward of a strided 1x1 convolution
      // corrupts the heap for fewer than 8 input channels (seen with 2 and 4;
      // tools/checks/check_conv1x1_bug.py reproduces it in PyTorch). For such narrow
      // blocks the shortcut subsamples first and convolves with stride 1:
      // the same function, parameters and multiply-accumulates.
      subsample_ = stride != 1 && in < 8;
      downsample = register_module("downsample",
                                   nn::Sequential(conv(in, out, 1, subsample_ ? 1 : stride, 0), nn::BatchNorm2d(out)));
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor identity = x;
    if (downsample) {
      identity = downsample->forward(subsample_ ? x.slice(2, 0, c10::nullopt, 2).slice(3, 0, c10::nullopt, 2) : x);
    }
    // In-place ReLUs and residual add, as torchvision does.
    torch::Tensor y = bn1(conv1(x)).relu_();
    if (bottleneck_) {
      y = bn2(conv2(y)).relu_();
      y = bn3(conv3(y));
    } else {
      y = bn2(conv2(y));
    }
    return y.add_(identity).relu_();
  }
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  nn::Sequential downsample{nullptr};

 private:
  bool bottleneck_;
  bool subsample_ = false;
};
TORCH_MODULE(Block);

class HeadImpl : public nn::Module {
 public:
  HeadImpl(std::int64_t in, std::int64_t classes) : fc(register_module("fc", nn::Linear(in, classes))) {}
  torch::Tensor forward(torch::Tensor x) { return fc(torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1)); }
  nn::Linear fc;
};
TORCH_MODULE(Head);

class ResNet : public ld::StagedModel {
 public:
  ResNet(const ResNetOptions& o, const ld::ModelContext& ctx) {
    set_label(o.variant);
    const Layout& layout = kLayouts.at(o.variant);
    std::int64_t in = scaled(64, o.width);
    add_stage("stem", Stem(ctx.in_channels, in, o.stem == "imagenet"));
    torchvision_names_.push_back("");
    for (std::size_t layer = 0; layer < layout.blocks.size(); ++layer) {
      std::int64_t planes = scaled(64 << layer, o.width);
      for (int b = 0; b < layout.blocks[layer]; ++b) {
        std::int64_t stride = (layer > 0 && b == 0) ? 2 : 1;
        std::string name = "layer" + std::to_string(layer + 1) + "." + std::to_string(b);
        add_stage(name, Block(layout.bottleneck, in, planes, stride));
        torchvision_names_.push_back(name + ".");
        in = layout.bottleneck ? planes * 4 : planes;
      }
    }
    set_head(Head(in, ctx.num_classes));
    if (o.init == "torchvision") init_torchvision();
  }

 public:
  std::string torchvision_name(const std::string& name) const override { return rename(name); }

 private:
  // "stage0.conv1.weight" -> "conv1.weight", "stage3.bn2.bias" -> "layer1.2.bn2.bias", "head.fc.bias" -> "fc.bias".
  std::string rename(const std::string& name) const {
    if (name.rfind("head.", 0) == 0) return name.substr(5);
    std::size_t dot = name.find('.');
    std::size_t stage = std::stoul(name.substr(5, dot - 5));
    return torchvision_names_.at(stage) + name.substr(dot + 1);
  }

  // torchvision's ResNet initialisation: Kaiming-normal (fan out) convs, unit
  // batch norm; the fc keeps LibTorch's default (same as PyTorch's).
  void init_torchvision() {
    torch::NoGradGuard no_grad;
    for (auto& m : modules(false)) {
      if (auto* c = m->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
      } else if (auto* bn = m->as<nn::BatchNorm2d>()) {
        nn::init::ones_(bn->weight);
        nn::init::zeros_(bn->bias);
      }
    }
  }

  std::vector<std::string> torchvision_names_;
};

ld::Manifest manifest() {
  ld::Manifest m;
  m.kind = ld::PluginKind::kModel;
  m.name = "resnet";
  m.version = "1.0.0";
  m.description = "ResNet-18/34/50/101/152; the stem and every residual block are stages";
  m.keys = options_table().keys();
  return m;
}

void register_plugins(ld::Registrar& r) {
  r.add_model(manifest(), [](const ld::Options& o, const ld::ModelContext& ctx) {
    return std::make_unique<ResNet>(options_table().read(o), ctx);
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
