#include "learndrop/core/flops.h"

#include <cstring>

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <torch/nn/module.h>

#include "learndrop/error.h"
#include "learndrop/model.h"

namespace ld::core {

namespace {

thread_local std::int64_t t_macs = 0;
thread_local int t_depth = 0;  // > 0 inside a counted operator (its inner calls are not counted again)

std::int64_t numel(const c10::IValue& v) { return v.isTensor() ? v.toTensor().numel() : 0; }

// Multiply-accumulates of one operator call, from its inputs.
std::int64_t macs_of(const char* name, const at::RecordFunction& fn) {
  auto in = fn.inputs();
  if (std::strcmp(name, "aten::convolution") == 0 && in.size() >= 9) {
    const at::Tensor& x = in[0].toTensor();
    const at::Tensor& w = in[1].toTensor();
    bool transposed = in[6].toBool();
    std::int64_t per_output = w.numel() / w.size(0);  // in/groups x kernel (non-transposed)
    if (transposed) return x.numel() * per_output;    // every input element feeds out/groups x kernel
    auto stride = in[3].toIntVector();
    auto padding = in[4].toIntVector();
    auto dilation = in[5].toIntVector();
    std::int64_t out = x.size(0) * w.size(0);
    for (std::size_t d = 0; d + 2 < static_cast<std::size_t>(x.dim()); ++d) {
      std::int64_t k = w.size(static_cast<std::int64_t>(d) + 2);
      std::int64_t s = stride.size() == 1 ? stride[0] : stride[d];
      std::int64_t p = padding.size() == 1 ? padding[0] : padding[d];
      std::int64_t dl = dilation.size() == 1 ? dilation[0] : dilation[d];
      out *= (x.size(static_cast<std::int64_t>(d) + 2) + 2 * p - dl * (k - 1) - 1) / s + 1;
    }
    return out * per_output;
  }
  if (std::strcmp(name, "aten::linear") == 0 && in.size() >= 2) {
    return numel(in[0]) * in[1].toTensor().size(0);
  }
  if ((std::strcmp(name, "aten::addmm") == 0) && in.size() >= 3) {
    const at::Tensor& a = in[1].toTensor();
    return a.numel() * in[2].toTensor().size(-1);
  }
  if ((std::strcmp(name, "aten::mm") == 0 || std::strcmp(name, "aten::bmm") == 0 ||
       std::strcmp(name, "aten::matmul") == 0) &&
      in.size() >= 2) {
    const at::Tensor& a = in[0].toTensor();
    return a.numel() * in[1].toTensor().size(-1);
  }
  return -1;  // not a counted operator
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  const char* name = fn.name();
  if (t_depth > 0) {
    ++t_depth;
    return nullptr;
  }
  std::int64_t macs = macs_of(name, fn);
  if (macs >= 0) {
    t_macs += macs;
    ++t_depth;
  }
  return nullptr;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext*) {
  // Mirrors on_start: depth only moves inside or at a counted operator.
  if (t_depth == 0) return;
  if (t_depth == 1) {
    const char* name = fn.name();
    bool counted = std::strcmp(name, "aten::convolution") == 0 || std::strcmp(name, "aten::linear") == 0 ||
                   std::strcmp(name, "aten::addmm") == 0 || std::strcmp(name, "aten::mm") == 0 ||
                   std::strcmp(name, "aten::bmm") == 0 || std::strcmp(name, "aten::matmul") == 0;
    if (!counted) return;
  }
  --t_depth;
}

}  // namespace

std::int64_t count_forward_flops(const std::function<void()>& fn) {
  at::RecordFunctionGuard enable(true);
  auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(&on_start, &on_end).needsInputs(true).scopes({at::RecordScope::FUNCTION}));
  t_macs = 0;
  t_depth = 0;
  try {
    fn();
  } catch (...) {
    at::removeCallback(handle);
    throw;
  }
  at::removeCallback(handle);
  return 2 * t_macs;
}

std::int64_t ModelProfile::flops_from(std::size_t from) const {
  return stage_range_flops(from, stage_flops.size()) + head_flops;
}

std::int64_t ModelProfile::stage_range_flops(std::size_t from, std::size_t to) const {
  std::int64_t total = 0;
  for (std::size_t i = from; i < to && i < stage_flops.size(); ++i) total += stage_flops[i];
  return total;
}

ModelProfile profile_model(StagedModel& model, const std::vector<std::int64_t>& sample_shape) {
  // Remember every module's mode: dropped stages must stay in eval mode.
  const bool model_training = model.is_training();
  std::vector<std::pair<std::shared_ptr<torch::nn::Module>, bool>> modes;  // pre-order: parents first
  for (const auto& m : model.modules(/*include_self=*/false)) modes.emplace_back(m, m->is_training());
  model.eval();
  at::NoGradGuard no_grad;
  ModelProfile profile;
  std::vector<std::int64_t> shape = {1};
  shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
  at::Tensor x = at::zeros(shape);
  if (x.dim() == 4) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  for (std::size_t i = 0; i < model.num_stages(); ++i) {
    at::Tensor y;
    profile.stage_flops.push_back(count_forward_flops([&] { y = model.forward_stage(i, x); }));
    auto sizes = y.sizes().vec();
    profile.stage_output_shapes.emplace_back(sizes.begin() + 1, sizes.end());
    x = y;
  }
  profile.head_flops = count_forward_flops([&] { model.forward_head(x); });
  model.train(model_training);
  for (auto& [m, training] : modes) m->train(training);
  return profile;
}

}  // namespace ld::core
