#include <chrono>
#include <cstdio>

#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "commands.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/registrar.h"

namespace ld::cli {

int model_bench(const core::PluginHost& host, const ModelSummaryArgs& a, std::int64_t batch, std::int64_t steps,
                int threads) {
  at::set_num_threads(threads);
  torch::manual_seed(0);
  auto model = create_summary_model(host, a);
  for (auto& p : model->parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
  model->train();
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  at::Tensor x =
      at::randn({batch, a.in_channels, a.input_size, a.input_size}).contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor y = at::randint(0, a.num_classes, {batch}, at::kLong);
  auto step = [&] {
    at::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x, 0), y);
    sgd.zero_grad();
    loss.backward();
    sgd.step();
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up: oneDNN primitive creation, allocator
  auto start = std::chrono::steady_clock::now();
  for (std::int64_t i = 0; i < steps; ++i) step();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: %lld training steps of batch %lld at %lldx%lldx%lld, %d threads: %.1f images/s (%.3f s/step)\n",
              a.variant.c_str(), static_cast<long long>(steps), static_cast<long long>(batch),
              static_cast<long long>(a.in_channels), static_cast<long long>(a.input_size),
              static_cast<long long>(a.input_size), threads, static_cast<double>(batch * steps) / seconds,
              seconds / static_cast<double>(steps));
  return 0;
}

}  // namespace ld::cli
