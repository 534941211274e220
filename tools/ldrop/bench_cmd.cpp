#include <chrono>
#include <cstdio>

#include <ATen/ATen.h>
#include <torch/cuda.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "commands.h"
#include "learndrop/core/device.h"
#include "learndrop/core/drop_controller.h"
#include "learndrop/core/drop_cost.h"
#include "learndrop/core/flops.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/error.h"
#include "learndrop/registrar.h"

namespace ld::cli {

namespace {

void synchronize(at::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

// Seconds per SGD step of `model` trained from `cut` (stages before it in
// eval mode without gradients, as after a drop) on a random batch of the
// cut's input shape, on `s.device` in `s.precision`. At a cut > 0 the batch
// is stored like a cache row (storage layout, the cache type): in device
// memory (tier "device") or in host memory, copied through the pinned
// staging ring each step (tier "host", what the ram and disk tiers feed).
double step_seconds(StagedModel& model, const std::vector<std::int64_t>& input_shape, std::size_t cut,
                    std::int64_t classes, const ModelBenchSettings& s, at::Device device,
                    core::Precision precision) {
  std::vector<at::Tensor> trained;
  model.train();
  for (std::size_t i = 0; i < model.num_stages(); ++i) {
    if (i < cut) model.stage_module(i)->eval();
    for (auto& p : model.stage_module(i)->parameters()) {
      p.set_requires_grad(i >= cut);
      if (i >= cut) trained.push_back(p);
    }
  }
  for (auto& p : model.head_module()->parameters()) trained.push_back(p);
  torch::optim::SGD sgd(trained, torch::optim::SGDOptions(0.01).momentum(0.9));
  std::vector<std::int64_t> shape = {s.batch};
  shape.insert(shape.end(), input_shape.begin(), input_shape.end());
  at::Tensor x = at::randn(shape);
  if (x.dim() == 4) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor y = at::randint(0, classes, {s.batch}, at::kLong).to(device);
  // The cached form of the batch: storage layout and type.
  const at::Tensor stored = cut > 0 ? core::to_storage_layout(x).to(core::compute_dtype(precision)) : at::Tensor();
  const bool host_tier = cut > 0 && s.tier == "host";
  const at::Tensor on_device = cut == 0 ? x.to(device) : host_tier ? at::Tensor() : stored.to(device);
  core::DeviceStager stager(device, 3);
  auto input = [&]() -> at::Tensor {
    if (cut == 0) return on_device;
    at::Tensor batch = on_device;
    if (host_tier) {
      core::DeviceStager::Staged staged = stager.stage({stored});
      core::DeviceStager::wait(staged);
      batch = staged.tensors.at(0);
    }
    return core::from_storage_layout(batch, input_shape).to(at::kFloat);
  };
  auto step = [&] {
    at::Tensor loss;
    {
      core::AutocastGuard autocast(device, precision);
      loss = torch::nn::functional::cross_entropy(model.forward(input(), cut), y);
    }
    sgd.zero_grad();
    loss.backward();
    sgd.step();
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up: oneDNN/cuDNN algorithm choice, allocator
  synchronize(device);
  auto start = std::chrono::steady_clock::now();
  for (std::int64_t i = 0; i < s.steps; ++i) step();
  synchronize(device);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
         static_cast<double>(s.steps);
}

// Seconds of a cache build's forward pass per batch of `batch` images:
// stages [0, cut) in eval mode without gradients, as DropController builds.
double build_seconds(StagedModel& model, const std::vector<std::int64_t>& input_shape, std::size_t cut,
                     std::int64_t batch, std::int64_t steps, at::Device device, core::Precision precision) {
  model.eval();
  std::vector<std::int64_t> shape = {batch};
  shape.insert(shape.end(), input_shape.begin(), input_shape.end());
  at::Tensor x = at::randn(shape);
  if (x.dim() == 4) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  x = x.to(device);
  at::NoGradGuard no_grad;
  auto pass = [&] {
    core::AutocastGuard autocast(device, precision);
    at::Tensor h = x;
    for (std::size_t i = 0; i < cut; ++i) h = model.forward_stage(i, h);
    return h;
  };
  for (int i = 0; i < 2; ++i) pass();
  synchronize(device);
  auto start = std::chrono::steady_clock::now();
  for (std::int64_t i = 0; i < steps; ++i) pass();
  synchronize(device);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
         static_cast<double>(steps);
}

}  // namespace

int model_bench(const core::PluginHost& host, const ModelSummaryArgs& a, const ModelBenchSettings& s) {
  at::set_num_threads(s.threads);
  torch::manual_seed(0);
  const at::Device device = core::resolve_device(s.device);
  const core::Precision precision = core::parse_precision(s.precision);
  if (const std::string why = core::precision_refusal(device, precision); !why.empty()) throw Error(why);
  if (s.tier != "device" && s.tier != "host") throw Error("--tier: expected device or host, got '" + s.tier + "'");
  auto model = create_summary_model(host, a);
  for (auto& p : model->parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
  const std::vector<std::int64_t> input = {a.in_channels, a.input_size, a.input_size};
  const core::ModelProfile profile = core::profile_model(*model, input);
  model->to(device);
  const double full = step_seconds(*model, input, 0, a.num_classes, s, device, precision);
  std::printf(
      "%s: %lld training steps of batch %lld at %lldx%lldx%lld on %s (%s), %d threads: %.1f images/s (%.5f s/step)\n",
      a.variant.c_str(), static_cast<long long>(s.steps), static_cast<long long>(s.batch),
      static_cast<long long>(a.in_channels), static_cast<long long>(a.input_size), static_cast<long long>(a.input_size),
      core::device_text(device).c_str(), core::precision_text(precision).c_str(), s.threads,
      static_cast<double>(s.batch) / full, full);
  std::vector<std::size_t> cuts = s.cuts;
  if (s.all_cuts) {
    cuts.clear();
    for (std::size_t cut = 1; cut < model->num_stages(); ++cut) cuts.push_back(cut);
  }
  if (cuts.empty()) return 0;
  const double flops = static_cast<double>(profile.flops_from(0));
  // The host's cost model (drop_cost.h) predicts each cut's speedup from
  // FLOPs and bytes; the build column is the forward-only pass a cache build
  // runs (DropSettings::build_batch_for or --build-batch, eval, no gradients) against a training step's rate
  // (3x forward FLOPs per image: forward and backward), over the whole model
  // ("vs step") and over the same stages ("vs prefix": their 3x forward
  // FLOPs per image over the time they take in a step, the full step's
  // time less the step's from the cut). Shallow stages with few channels
  // run fewer FLOP/s than the model's average in a step too; "vs prefix"
  // compares like with like (noisy where the prefix is a small share).
  // The cache a run would make here: one view, rows in the compute type.
  core::CachePlan plan;
  plan.dtype = core::compute_dtype(precision);
  const core::DropCost cost(profile, input, plan);
  const double train_rate = 3.0 * flops * static_cast<double>(s.batch) / full;
  std::printf("\ntraining step: %.1f GFLOP/s (3x forward FLOPs per image)\n", train_rate / 1e9);
  std::printf("\n%4s  %-12s %14s %12s %12s %10s %10s %14s %10s %10s  %s\n", "cut", "first trained", "fwd FLOPs left",
              "s/step", "images/s", "speedup", "predicted", "build GFLOP/s", "vs step", "vs prefix", "cached batch");
  std::printf("%4d  %-12s %13.1f%% %12.5f %12.1f %9.2fx %9.2fx %14s %10s %10s  -\n", 0, model->stage_name(0).c_str(),
              100.0, full, static_cast<double>(s.batch) / full, 1.0, 1.0, "-", "-", "-");
  for (std::size_t cut : cuts) {
    if (cut < 1 || cut >= model->num_stages()) {
      throw Error("--cut " + std::to_string(cut) + ": expected 1.." + std::to_string(model->num_stages() - 1) + " for " +
                  a.variant + " (" + std::to_string(model->num_stages()) + " stages)");
    }
    const double t = step_seconds(*model, profile.stage_output_shapes[cut - 1], cut, a.num_classes, s, device,
                                  precision);
    const std::int64_t build_batch =
        s.build_batch > 0 ? s.build_batch : core::DropSettings::build_batch_for(s.batch, device.is_cuda());  // as a run builds
    const double b = build_seconds(*model, input, cut, build_batch, std::max<std::int64_t>(8, s.steps), device, precision);
    const double prefix_flops = static_cast<double>(profile.stage_range_flops(0, cut));
    const double build_rate = prefix_flops * static_cast<double>(build_batch) / b;
    char vs_prefix[32] = "-";
    if (full > t) {
      const double prefix_rate = 3.0 * prefix_flops * static_cast<double>(s.batch) / (full - t);
      std::snprintf(vs_prefix, sizeof vs_prefix, "%.2fx", build_rate / prefix_rate);
    }
    std::printf("%4zu  %-12s %13.1f%% %12.5f %12.1f %9.2fx %9.2fx %14.1f %9.2fx %10s  %s %s\n", cut,
                model->stage_name(cut).c_str(), 100.0 * static_cast<double>(profile.flops_from(cut)) / flops, t,
                static_cast<double>(s.batch) / t, full / t, cost.step_work(0, 0) / cost.step_work(cut, cut),
                build_rate / 1e9, build_rate / train_rate, vs_prefix, s.tier.c_str(),
                c10::toString(core::compute_dtype(precision)));
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace ld::cli
