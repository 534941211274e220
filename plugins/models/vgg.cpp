// Model plugin `vgg`: VGG-11/13/16/19 with and without batch norm, one stage
// per conv layer (conv, bn, relu and the max-pool that follows it), the
// classifier as the head.

#include <cmath>
#include <map>

#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/adaptive.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include "learndrop/sdk.h"

namespace {

namespace nn = torch::nn;

// Channel counts per conv layer; 0 marks a max-pool (torchvision's "M").
const std::map<std::string, std::vector<int>> kLayouts = {
    {"vgg11", {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0}},
    {"vgg13", {64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0}},
    {"vgg16", {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0}},
    {"vgg19", {64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0}},
};

/// Options of the vgg plugin, read from its config section.
struct VggOptions {
  std::string variant;
  double width = 1.0;
  std::string classifier;
  double dropout = 0.5;
  std::string init;
};

// The keys, each with the member it sets (the manifest and the factory both use it).
const ld::OptionTable<VggOptions>& options_table() {
  static const auto table =
      ld::OptionTable<VggOptions>()
          .add(ld::ConfigKey("variant", ld::ValueType::kString, "vgg11_bn", "architecture")
                   .one_of({"vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"}),
               &VggOptions::variant)
          .add(ld::ConfigKey("width", ld::ValueType::kFloat, "1.0", "channel multiplier (1.0 = the published widths)")
                   .range(0.01, 16),
               &VggOptions::width)
          .add(ld::ConfigKey("classifier", ld::ValueType::kString, "full",
                             "full = torchvision's 7x7-pool + 4096-4096 head; compact = global pool + one hidden layer "
                             "(for small images)")
                   .one_of({"full", "compact"}),
               &VggOptions::classifier)
          .add(ld::ConfigKey("dropout", ld::ValueType::kFloat, "0.5", "dropout probability in the head").range(0, 1),
               &VggOptions::dropout)
          .add(ld::ConfigKey("init", ld::ValueType::kString, "torchvision",
                             "torchvision = torchvision's initialisation; default = LibTorch's layer defaults")
                   .one_of({"torchvision", "default"}),
               &VggOptions::init);
  return table;
}

std::int64_t scaled(double channels, double width) { return std::max<std::int64_t>(1, std::llround(channels * width)); }

// torchvision's classifier. When the features arrive as 1x1 maps (inputs of
// 32 px and less), the 7x7 average pool only replicates each value 49 times,
// so the first linear layer equals one on the un-replicated features with its
// weight summed over the 49 positions: the same function, 49x fewer
// multiply-accumulates in that layer, and gradients that flow to the same
// parameters. Registered as "layers" so parameter names match the
// SequentialStage layout (and torchvision's "classifier.N" by renaming).
class FullClassifierImpl : public nn::Module {
 public:
  explicit FullClassifierImpl(nn::Sequential layers) : layers(register_module("layers", std::move(layers))) {
    fc1_ = this->layers[2]->as<nn::Linear>();
  }
  torch::Tensor forward(torch::Tensor x) {
    if (x.dim() != 4 || x.size(2) != 1 || x.size(3) != 1) return layers->forward(std::move(x));
    const auto& w = fc1_->weight;
    torch::Tensor h = torch::linear(x.flatten(1), w.view({w.size(0), x.size(1), 49}).sum(2), fc1_->bias);
    for (auto it = layers->begin() + 3; it != layers->end(); ++it) h = it->forward(h);
    return h;
  }
  nn::Sequential layers;

 private:
  nn::LinearImpl* fc1_ = nullptr;
};
TORCH_MODULE(FullClassifier);

class Vgg : public ld::StagedModel {
 public:
  Vgg(const VggOptions& o, const ld::ModelContext& ctx) {
    set_label(o.variant);
    bool bn = o.variant.size() > 3 && o.variant.substr(o.variant.size() - 3) == "_bn";
    const std::vector<int>& layout = kLayouts.at(bn ? o.variant.substr(0, o.variant.size() - 3) : o.variant);
    std::int64_t in = ctx.in_channels, h = ctx.height, w = ctx.width;
    int conv_index = 0;
    int feature_index = 0;  // index of the layer in torchvision's `features`
    for (std::size_t i = 0; i < layout.size(); ++i) {
      if (layout[i] == 0) {
        ++feature_index;
        continue;
      }
      feature_base_.push_back(feature_index);
      feature_index += bn ? 3 : 2;
      std::int64_t out = scaled(layout[i], o.width);
      nn::Sequential stage;
      stage->push_back(nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1)));
      if (bn) stage->push_back(nn::BatchNorm2d(out));
      stage->push_back(nn::ReLU(nn::ReLUOptions(true)));
      // A pool that would shrink a side below one pixel is left out (inputs
      // smaller than 32 px, e.g. MNIST's 28, reach 1 px before the last pool).
      if (i + 1 < layout.size() && layout[i + 1] == 0 && h >= 2 && w >= 2) {
        stage->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
        h /= 2;
        w /= 2;
      }
      add_stage("conv" + std::to_string(++conv_index), stage);
      in = out;
    }
    nn::Sequential head;
    if (o.classifier == "full") {
      // torchvision's classifier: 7x7 average pool, 4096-4096 hidden layers.
      std::int64_t hidden = scaled(4096, o.width);
      head->push_back(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({7, 7})));
      head->push_back(nn::Flatten());
      head->push_back(nn::Linear(in * 49, hidden));
      head->push_back(nn::ReLU(nn::ReLUOptions(true)));
      head->push_back(nn::Dropout(o.dropout));
      head->push_back(nn::Linear(hidden, hidden));
      head->push_back(nn::ReLU(nn::ReLUOptions(true)));
      head->push_back(nn::Dropout(o.dropout));
      head->push_back(nn::Linear(hidden, ctx.num_classes));
    } else {
      // Compact classifier for small images: global average pool, one hidden layer.
      head->push_back(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({1, 1})));
      head->push_back(nn::Flatten());
      head->push_back(nn::Linear(in, in));
      head->push_back(nn::ReLU(nn::ReLUOptions(true)));
      head->push_back(nn::Dropout(o.dropout));
      head->push_back(nn::Linear(in, ctx.num_classes));
    }
    if (o.classifier == "full") {
      set_head(FullClassifier(head));
    } else {
      set_head(head);
    }
    if (o.init == "torchvision") init_torchvision();
  }

 public:
  std::string torchvision_name(const std::string& name) const override { return rename(name); }

 private:
  // "stage3.layers.1.weight" -> "features.<index>.weight", "head.layers.5.bias" -> "classifier.3.bias".
  std::string rename(const std::string& name) const {
    std::size_t dot = name.find('.');
    std::size_t layer_dot = name.find('.', dot + 8);  // after "layers."
    int layer = std::stoi(name.substr(dot + 8, layer_dot - dot - 8));
    std::string rest = name.substr(layer_dot);
    if (name.rfind("head.", 0) == 0) return "classifier." + std::to_string(layer - 2) + rest;
    std::size_t stage = std::stoul(name.substr(5, dot - 5));
    return "features." + std::to_string(feature_base_.at(stage) + layer) + rest;
  }

  // torchvision's VGG initialisation: Kaiming-normal (fan out) convolutions,
  // unit batch norm, N(0, 0.01) linear layers, zero biases.
  void init_torchvision() {
    torch::NoGradGuard no_grad;
    for (auto& m : modules(false)) {
      if (auto* conv = m->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
        nn::init::zeros_(conv->bias);
      } else if (auto* bn = m->as<nn::BatchNorm2d>()) {
        nn::init::ones_(bn->weight);
        nn::init::zeros_(bn->bias);
      } else if (auto* fc = m->as<nn::Linear>()) {
        nn::init::normal_(fc->weight, 0.0, 0.01);
        nn::init::zeros_(fc->bias);
      }
    }
  }

  std::vector<int> feature_base_;
};

ld::Manifest manifest() {
  ld::Manifest m;
  m.kind = ld::PluginKind::kModel;
  m.name = "vgg";
  m.version = "1.0.0";
  m.description = "VGG-11/13/16/19 (optionally with batch norm); one stage per conv layer";
  m.keys = options_table().keys();
  return m;
}

void register_plugins(ld::Registrar& r) {
  r.add_model(manifest(), [](const ld::Options& o, const ld::ModelContext& ctx) {
    return std::make_unique<Vgg>(options_table().read(o), ctx);
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
