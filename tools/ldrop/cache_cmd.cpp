#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include <sys/statvfs.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <tbb/global_control.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "learndrop/core/class_subset.h"
#include "learndrop/core/batch_feed.h"
#include "learndrop/core/cache_plan.h"
#include "learndrop/core/config.h"
#include "learndrop/core/device.h"
#include "learndrop/core/flops.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/seeds.h"
#include "learndrop/core/text.h"
#include "learndrop/memory.h"
#include "learndrop/registrar.h"

namespace ld::cli {

namespace {

// `dir`, or its nearest existing parent: where a run would create it.
std::filesystem::path nearest_existing(std::filesystem::path dir) {
  while (!dir.empty() && !std::filesystem::exists(dir)) dir = dir.parent_path();
  return dir.empty() ? std::filesystem::path(".") : dir;
}

// Free bytes on the file system holding `dir` (or its nearest existing parent).
std::int64_t free_space(const std::filesystem::path& dir) {
  struct statvfs s {};
  if (statvfs(nearest_existing(dir).c_str(), &s) != 0) return 0;
  return static_cast<std::int64_t>(s.f_bavail) * static_cast<std::int64_t>(s.f_frsize);
}

// Why a run could not create its cache files in `dir` ("" when it could):
// the nearest existing folder on the way must be a writable folder.
std::string unusable(const std::filesystem::path& folder) {
  const std::filesystem::path dir = nearest_existing(folder);
  if (!std::filesystem::is_directory(dir)) return dir.string() + " is not a folder";
  if (::access(dir.c_str(), W_OK | X_OK) != 0) return dir.string() + " is not writable";
  return "";
}

}  // namespace

int cache_plan(const core::PluginHost& host, const core::RunConfig& cfg, const std::string& run_dir, bool json) {
  auto dataset = core::open_dataset(cfg, host);
  const auto shape = dataset->sample_shape();
  auto model = host.create_model(cfg.model.plugin, cfg.model.options,
                                 ModelContext::of(shape, dataset->num_classes()));
  const core::ModelProfile profile = core::profile_model(*model, shape);
  const std::int64_t n = dataset->size(Split::kTrain);
  // The same plan a run of this config caches with (views, dtype, folder).
  const core::CachePlan plan = core::plan_cache(cfg, *dataset, run_dir);
  if (!plan.warning.empty()) std::fprintf(stderr, "warning: %s\n", plan.warning.c_str());
  const std::int64_t views = plan.views;
  const std::int64_t full = profile.flops_from(0);
  const std::int64_t memory = ld::available_memory();
  const std::filesystem::path& dir = plan.dir;
  // A folder the run cannot create its files in holds nothing: auto then
  // falls back to RAM where the cut fits, as a run does.
  const std::string disk_unusable = unusable(dir);
  const std::int64_t disk = disk_unusable.empty() ? free_space(dir) : 0;
  // The tiers of cache.plugin=auto: GPU memory (CUDA runs), RAM, disk.
  const at::Device device = core::resolve_device(cfg.device);
  const std::string device_setting =
      cfg.cache.options.has("device_budget") ? cfg.cache.options.get_string("device_budget") : "auto";
  const std::int64_t device_free = device.is_cuda() ? ld::available_device_memory(device.index()) : 0;
  const std::int64_t device_budget = ld::device_budget(device_setting, device);
  const std::string ram_setting =
      cfg.cache.options.has("ram_budget") ? cfg.cache.options.get_string("ram_budget") : "auto";
  const std::int64_t ram_budget = ld::ram_budget(ram_setting);

  nlohmann::json rows = nlohmann::json::array();
  for (std::size_t k = 1; k <= model->num_stages(); ++k) {
    const auto& out = profile.stage_output_shapes[k - 1];
    const std::int64_t row = plan.row_bytes(out);
    const std::int64_t total = row * n * views;
    const std::int64_t saved = n * profile.stage_range_flops(0, k);
    std::string fits = ld::auto_tier(total, device, device_budget, ram_budget);
    if (fits == "disk" && total > disk) fits = ld::ram_fallback_fits(total, memory) ? "ram (disk fallback)" : "neither";
    // A stream's cache grows with its arrivals: in RAM, with spare room, and
    // for a moment the old and the new allocation at once.
    const core::StreamGrowth growth = core::stream_growth(plan.rows_after_part);
    const std::int64_t ram_peak = plan.rows_after_part.empty() ? total : growth.peak * row;
    const std::int64_t ram_capacity = plan.rows_after_part.empty() ? total : growth.capacity * row;
    rows.push_back({{"cut", k},
                    {"stage", model->stage_name(k - 1)},
                    {"shape", out},
                    {"bytes_per_sample", row * views},
                    {"cache_bytes", total},
                    {"ram_capacity_bytes", ram_capacity},
                    {"ram_peak_bytes", ram_peak},
                    {"forward_flops_saved_per_epoch", saved},
                    {"forward_saved_fraction", static_cast<double>(profile.stage_range_flops(0, k)) / full},
                    {"auto_backend", fits}});
  }
  if (json) {
    nlohmann::json j = {{"train_samples", n},
                        {"views", views},
                        {"dtype", cfg.cache_dtype},
                        {"feature_augment", plan.feature_augment},
                        {"augmentation_after_drop", plan.augmentation_after_drop},
                        {"available_memory", memory},
                        {"device", core::device_text(device)},
                        {"device_memory_free", device_free},
                        {"device_budget", device_budget},
                        {"ram_budget", ram_budget},
                        {"cache_dir", dir.string()},
                        {"cache_dir_unusable", disk_unusable},
                        {"free_disk", disk},
                        {"stream_rows_after_part", plan.rows_after_part},
                        {"cuts", rows}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf(
      "cache plan: %s on %s, %lld training samples x %lld view%s, %s storage\n",
      (model->label().empty() ? cfg.model.plugin : model->label()).c_str(),
      cfg.dataset.plugin.c_str(), static_cast<long long>(n), static_cast<long long>(views), views == 1 ? "" : "s",
      cfg.cache_dtype.c_str());
  const bool stream = !plan.rows_after_part.empty();
  std::printf("%4s  %-12s %-16s %12s %12s %s%16s %7s  %s\n", "cut", "last stage", "shape [C,H,W]", "per sample",
              "cache size", stream ? "  RAM growing " : "", "FLOPs saved/ep", "of fwd", "auto");
  for (const auto& r : rows) {
    std::string shape_text;
    for (auto d : r["shape"]) shape_text += (shape_text.empty() ? "" : ",") + std::to_string(d.get<std::int64_t>());
    const std::string peak = stream ? " " + core::format_bytes(r["ram_peak_bytes"].get<double>()) : "";
    std::printf("%4lld  %-12s %-16s %12s %12s %s%16s %6.1f%%  %s\n", static_cast<long long>(r["cut"].get<std::int64_t>()),
                r["stage"].get<std::string>().c_str(), shape_text.c_str(),
                core::format_bytes(r["bytes_per_sample"].get<double>()).c_str(),
                core::format_bytes(r["cache_bytes"].get<double>()).c_str(),
                stream ? (std::string(13 - std::min<std::size_t>(13, peak.size()), ' ') + peak + " ").c_str() : "",
                core::format_flops(r["forward_flops_saved_per_epoch"].get<double>()).c_str(),
                100.0 * r["forward_saved_fraction"].get<double>(), r["auto_backend"].get<std::string>().c_str());
  }
  if (stream) {
    std::printf("stream of %zu parts: a cache built in the first part grows with each arrival; in RAM it holds spare "
                "room (half again when it runs out) and, while it grows, the old and the new allocation at once: "
                "'RAM growing' is that peak\n",
                plan.rows_after_part.size());
  }
  if (device.is_cuda()) {
    std::printf("tier device: %s, %s free; the auto column puts a cut there up to device_budget %s (%s)\n",
                core::device_text(device).c_str(), core::format_bytes(static_cast<double>(device_free)).c_str(),
                core::format_bytes(static_cast<double>(device_budget)).c_str(),
                device_setting == "auto" ? "auto: half of the free memory" : device_setting.c_str());
  } else {
    std::printf("tier device: none (runtime.device resolves to cpu: RAM is the device memory)\n");
  }
  std::printf("tier ram: %s available; the auto column puts a cut there up to ram_budget %s (%s)\n",
              core::format_bytes(static_cast<double>(memory)).c_str(),
              core::format_bytes(static_cast<double>(ram_budget)).c_str(),
              ram_setting == "auto" ? "auto: half of the available memory" : ram_setting.c_str());
  if (!disk_unusable.empty()) {
    std::printf("tier disk: unusable, %s (a run cannot create cache.dir %s; auto keeps a cut in RAM when it fits 4/5 "
                "of the available memory)\n",
                disk_unusable.c_str(), dir.c_str());
  } else {
    std::printf("tier disk: %s free in %s\n", core::format_bytes(static_cast<double>(disk)).c_str(),
                dir.string().c_str());
  }
  std::printf(
      "FLOPs saved/ep: forward FLOPs of the dropped stages per epoch once the cut is reached (%s per epoch "
      "for the full model)\n",
      core::format_flops(static_cast<double>(n * full)).c_str());
  return 0;
}

}  // namespace ld::cli

namespace ld::cli {

int cache_bench(const core::PluginHost& host, const CacheBenchArgs& a) {
  using Clock = std::chrono::steady_clock;
  at::set_num_threads(a.threads);
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(a.threads));
  const auto& info = host.find(PluginKind::kCache, a.plugin);
  std::map<std::string, Value> values;
  for (const auto& k : info.manifest.keys) {
    std::string v = k.default_value;
    if (k.name == "prefetch") v = std::to_string(a.prefetch);
    if (k.name == "drop_page_cache") v = "true";
    values[k.name] = core::parse_value(k, v, "cache." + k.name);
  }
  CacheContext ctx;
  ctx.run_dir = a.dir;
  ctx.dir = a.dir;
  ctx.threads = a.threads;
  auto cache = host.create_cache(a.plugin, Options("cache", values), ctx);
  const std::int64_t floats = a.row_bytes / 4;
  CacheLayout layout{1, a.rows, {floats}, at::kFloat, "bench"};
  at::manual_seed(0);
  auto start = Clock::now();
  cache->begin(layout);
  for (std::int64_t b = 0; b < a.rows; b += 256) {
    const std::int64_t e = std::min(a.rows, b + 256);
    std::vector<std::int64_t> rows(static_cast<std::size_t>(e - b));
    std::iota(rows.begin(), rows.end(), b);
    cache->put(rows, at::rand({e - b, floats}));
  }
  cache->finish();
  const double write_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double total = static_cast<double>(a.rows * floats * 4);
  std::vector<std::int64_t> order = core::epoch_order(a.rows, 1, 0);
  double best = 0;
  for (int epoch = 0; epoch < a.epochs; ++epoch) {
    start = Clock::now();
    auto reader = cache->reader(order, a.batch);
    std::int64_t rows = 0;
    for (at::Tensor t = reader->next(); t.defined(); t = reader->next()) rows += t.size(0);
    reader.reset();  // evicts the file again (drop_page_cache)
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (rows != a.rows) throw Error("cache bench: read " + std::to_string(rows) + " rows of " + std::to_string(a.rows));
    best = std::max(best, total / seconds);
  }
  std::printf(
      "%s cache: %lld rows of %s, batch %lld, prefetch %lld, %d threads: write %.1f MiB/s, shuffled read "
      "%.1f MiB/s (best of %d epochs, page cache dropped)\n",
      a.plugin.c_str(), static_cast<long long>(a.rows), core::format_bytes(static_cast<double>(a.row_bytes)).c_str(),
      static_cast<long long>(a.batch), static_cast<long long>(a.prefetch), a.threads, total / write_seconds / (1 << 20),
      best / (1 << 20), a.epochs);
  return 0;
}

}  // namespace ld::cli
