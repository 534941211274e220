#include <chrono>
#include <cstdio>
#include <numeric>

#include <ATen/Parallel.h>
#include <tbb/global_control.h>
#include <tbb/task_arena.h>

#include "commands.h"
#include "learndrop/core/class_subset.h"
#include "learndrop/core/config.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/seeds.h"
#include "learndrop/registrar.h"

namespace ld::cli {

int data_bench(const core::PluginHost& host, const core::RunConfig& cfg, int threads, std::int64_t samples) {
  using Clock = std::chrono::steady_clock;
  at::set_num_threads(threads);
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
  tbb::task_arena arena(threads);
  auto start = Clock::now();
  auto dataset = core::open_dataset(cfg, host);
  const double open_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const std::int64_t n = dataset->size(Split::kTrain);
  const std::int64_t batch = std::min(cfg.train.batch_size, n);
  const std::int64_t total = samples > 0 ? samples : n;
  const auto order = core::epoch_order(n, cfg.seed, 0);
  auto batch_at = [&](std::int64_t b) {
    std::vector<std::int64_t> idx;
    for (std::int64_t k = 0; k < batch; ++k) idx.push_back(order[static_cast<std::size_t>((b * batch + k) % n)]);
    return arena.execute([&] {
      return dataset->get_batch(Split::kTrain, idx, core::mix_seed(cfg.seed, static_cast<std::uint64_t>(b)));
    });
  };
  batch_at(0);  // warm-up: thread pools, file cache
  const std::int64_t batches = std::max<std::int64_t>(1, (total + batch - 1) / batch);
  start = Clock::now();
  for (std::int64_t b = 0; b < batches; ++b) batch_at(b + 1);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const auto shape = dataset->sample_shape();
  std::printf("%s: %lld batches of %lld at %lldx%lldx%lld, %d threads: %.1f samples/s (opened in %.2f s; %s)\n",
              cfg.dataset.plugin.c_str(), static_cast<long long>(batches), static_cast<long long>(batch),
              static_cast<long long>(shape[0]), static_cast<long long>(shape[1]), static_cast<long long>(shape[2]),
              threads, static_cast<double>(batches * batch) / seconds, open_seconds, dataset->describe().c_str());
  return 0;
}

}  // namespace ld::cli
