#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/sequential.h>

#include "learndrop/error.h"
#include "learndrop/export.h"

namespace ld {

/// A stage made of a `torch::nn::Sequential` (whose templated `forward`
/// cannot be stored as a stage directly).
class LEARNDROP_VISIBLE SequentialStageImpl : public torch::nn::Module {
 public:
  explicit SequentialStageImpl(torch::nn::Sequential layers) : layers(register_module("layers", layers)) {}
  torch::Tensor forward(torch::Tensor x) { return layers->forward(std::move(x)); }
  torch::nn::Sequential layers;
};
TORCH_MODULE(SequentialStage);

/// What a model plugin learns about its input when it is created.
struct ModelContext {
  std::int64_t in_channels = 3;
  std::int64_t height = 32;
  std::int64_t width = 32;
  std::int64_t num_classes = 10;

  /// The context for samples of `shape` [C, H, W] (Dataset::sample_shape)
  /// in `classes` classes; throws ld::Error when `shape` is not [C, H, W].
  static ModelContext of(const std::vector<std::int64_t>& shape, std::int64_t classes) {
    if (shape.size() != 3) throw Error("a model's input shape is [C, H, W], got " + std::to_string(shape.size()) + " dimensions");
    ModelContext c;
    c.in_channels = shape[0];
    c.height = shape[1];
    c.width = shape[2];
    c.num_classes = classes;
    return c;
  }
};

/// A network as an ordered list of droppable *stages* followed by a *head*.
///
/// A stage is the unit Learn&Drop can freeze and remove from training: one
/// conv(+bn+relu(+pool)) layer of a VGG, one residual block of a ResNet. The
/// host only ever drops a prefix `stages[0..k)`; `forward(x, k)` then runs
/// `stages[k..n)` and the head on the cached output of stage `k-1`.
///
/// Plugins build the network in their constructor with `add_stage` and
/// `set_head`; they never decide about dropping.
///
/// Example:
/// ```
/// class TinyNet : public ld::StagedModel {
///  public:
///   TinyNet() {
///     add_stage("conv1", torch::nn::Sequential(torch::nn::Conv2d(1, 8, 3), torch::nn::ReLU()));
///     set_head(torch::nn::Sequential(torch::nn::Flatten(), torch::nn::Linear(8 * 26 * 26, 10)));
///   }
/// };
/// ```
class LEARNDROP_VISIBLE StagedModel : public torch::nn::Module {
 public:
  ~StagedModel() override = default;

  std::size_t num_stages() const { return stages_.size(); }

  /// What runs call this model in logs and summary.json, e.g. "vgg11_bn" or
  /// "resnet50"; empty means the plugin's name.
  const std::string& label() const { return label_; }

  /// Human-readable name of stage `i`, e.g. "conv3" or "layer2.1".
  const std::string& stage_name(std::size_t i) const { return stage_names_.at(i); }

  /// Runs stage `i` alone.
  torch::Tensor forward_stage(std::size_t i, torch::Tensor x) { return stages_.at(i).forward(std::move(x)); }

  /// Runs the head (classifier) alone.
  torch::Tensor forward_head(torch::Tensor x) { return head_.forward(std::move(x)); }

  /// Runs stages `from_stage..n-1` and the head.
  torch::Tensor forward(torch::Tensor x, std::size_t from_stage = 0) {
    if (from_stage > stages_.size()) {
      throw Error("forward: from_stage " + std::to_string(from_stage) + " is past the last stage (" +
                  std::to_string(stages_.size()) + " stages)");
    }
    for (std::size_t i = from_stage; i < stages_.size(); ++i) x = stages_[i].forward(std::move(x));
    return head_.forward(std::move(x));
  }

  /// The module of stage `i` (for train/eval switching and its parameters).
  std::shared_ptr<torch::nn::Module> stage_module(std::size_t i) const { return stages_.at(i).ptr(); }

  /// The module of the head.
  std::shared_ptr<torch::nn::Module> head_module() const { return head_.ptr(); }

  /// The name that parameter or buffer `name` (ours, e.g.
  /// "stage3.layers.1.weight") has in torchvision's module of the same
  /// architecture ("features.8.weight"), for `ldrop export --format
  /// torchvision`: the inverse of what `model.weights` reads. "" when the
  /// model follows no torchvision architecture.
  virtual std::string torchvision_name(const std::string& name) const {
    (void)name;
    return "";
  }

 protected:
  /// Appends a stage; `name` is for people, the module is registered as "stage<i>".
  template <typename ModuleHolder>
  void add_stage(std::string name, ModuleHolder module) {
    register_module("stage" + std::to_string(stages_.size()), module.ptr());
    stages_.emplace_back(std::move(module));
    stage_names_.push_back(std::move(name));
  }

  /// Appends a stage made of a sequence of layers.
  void add_stage(std::string name, torch::nn::Sequential layers) {
    add_stage(std::move(name), SequentialStage(std::move(layers)));
  }

  /// Sets the head; registered as "head".
  template <typename ModuleHolder>
  void set_head(ModuleHolder module) {
    register_module("head", module.ptr());
    head_ = torch::nn::AnyModule(std::move(module));
  }

  /// Sets a head made of a sequence of layers.
  void set_head(torch::nn::Sequential layers) { set_head(SequentialStage(std::move(layers))); }

  /// Sets label() (a plugin with variants names the variant built).
  void set_label(std::string label) { label_ = std::move(label); }

 private:
  std::vector<torch::nn::AnyModule> stages_;
  std::vector<std::string> stage_names_;
  torch::nn::AnyModule head_;
  std::string label_;
};

}  // namespace ld
