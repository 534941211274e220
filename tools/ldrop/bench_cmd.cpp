#include <chrono>
#include <cstdio>

#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "commands.h"
#include "learndrop/core/flops.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/registrar.h"

namespace ld::cli {

namespace {

// Seconds per SGD step of `model` trained from `cut` (stages before it in
// eval mode without gradients, as after a drop) on a random batch of the
// cut's input shape.
double step_seconds(StagedModel& model, const std::vector<std::int64_t>& input_shape, std::size_t cut,
                    std::int64_t batch, std::int64_t classes, std::int64_t steps) {
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
  std::vector<std::int64_t> shape = {batch};
  shape.insert(shape.end(), input_shape.begin(), input_shape.end());
  at::Tensor x = at::randn(shape);
  if (x.dim() == 4) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor y = at::randint(0, classes, {batch}, at::kLong);
  auto step = [&] {
    at::Tensor loss = torch::nn::functional::cross_entropy(model.forward(x, cut), y);
    sgd.zero_grad();
    loss.backward();
    sgd.step();
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up: oneDNN primitive creation, allocator
  auto start = std::chrono::steady_clock::now();
  for (std::int64_t i = 0; i < steps; ++i) step();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
         static_cast<double>(steps);
}

}  // namespace

int model_bench(const core::PluginHost& host, const ModelSummaryArgs& a, std::int64_t batch, std::int64_t steps,
                int threads, bool cuts) {
  at::set_num_threads(threads);
  torch::manual_seed(0);
  auto model = create_summary_model(host, a);
  for (auto& p : model->parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
  const std::vector<std::int64_t> input = {a.in_channels, a.input_size, a.input_size};
  const double full = step_seconds(*model, input, 0, batch, a.num_classes, steps);
  std::printf("%s: %lld training steps of batch %lld at %lldx%lldx%lld, %d threads: %.1f images/s (%.3f s/step)\n",
              a.variant.c_str(), static_cast<long long>(steps), static_cast<long long>(batch),
              static_cast<long long>(a.in_channels), static_cast<long long>(a.input_size),
              static_cast<long long>(a.input_size), threads, static_cast<double>(batch) / full, full);
  if (!cuts) return 0;
  const core::ModelProfile profile = core::profile_model(*model, input);
  const double flops = static_cast<double>(profile.flops_from(0));
  std::printf("\n%4s  %-12s %14s %12s %12s %10s\n", "cut", "first trained", "fwd FLOPs left", "s/step", "images/s",
              "speedup");
  for (std::size_t cut = 0; cut < model->num_stages(); ++cut) {
    const double t = cut == 0 ? full
                              : step_seconds(*model, profile.stage_output_shapes[cut - 1], cut, batch,
                                             a.num_classes, steps);
    std::printf("%4zu  %-12s %13.1f%% %12.4f %12.1f %9.2fx\n", cut, model->stage_name(cut).c_str(),
                100.0 * static_cast<double>(profile.flops_from(cut)) / flops, t, static_cast<double>(batch) / t,
                full / t);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace ld::cli
