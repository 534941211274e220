#include <cstdio>
#include <filesystem>
#include <fstream>

#include <sys/statvfs.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "learndrop/core/config.h"
#include "learndrop/core/flops.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/text.h"
#include "learndrop/registrar.h"

namespace ld::cli {

namespace {

std::int64_t available_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  std::int64_t kib = 0;
  while (in >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

// Free bytes on the file system holding `dir` (or its nearest existing parent).
std::int64_t free_space(std::filesystem::path dir) {
  while (!dir.empty() && !std::filesystem::exists(dir)) dir = dir.parent_path();
  struct statvfs s {};
  if (statvfs(dir.empty() ? "." : dir.c_str(), &s) != 0) return 0;
  return static_cast<std::int64_t>(s.f_bavail) * static_cast<std::int64_t>(s.f_frsize);
}

std::int64_t element_bytes(const std::string& dtype) { return dtype == "float32" ? 4 : 2; }

}  // namespace

int cache_plan(const core::PluginHost& host, const core::RunConfig& cfg, const std::string& run_dir, bool json) {
  DatasetContext ctx;
  if (const char* root = std::getenv("LEARNDROP_DATA")) ctx.data_root = root;
  ctx.seed = cfg.seed;
  auto dataset = host.create_dataset(cfg.dataset.plugin, cfg.dataset.options, ctx);
  const auto shape = dataset->sample_shape();
  auto model = host.create_model(cfg.model.plugin, cfg.model.options,
                                 ModelContext{shape[0], shape[1], shape[2], dataset->num_classes()});
  const core::ModelProfile profile = core::profile_model(*model, shape);
  const std::int64_t n = dataset->size(Split::kTrain);
  const std::int64_t views = dataset->random_train_transform() ? cfg.cache_views : 1;
  const std::int64_t full = profile.flops_from(0);
  const std::int64_t memory = available_memory();
  std::filesystem::path dir = run_dir + "/cache";
  if (cfg.cache.options.has("dir") && !cfg.cache.options.get_string("dir").empty()) {
    dir = cfg.cache.options.get_string("dir");
  }
  const std::int64_t disk = free_space(dir);

  nlohmann::json rows = nlohmann::json::array();
  for (std::size_t k = 1; k <= model->num_stages(); ++k) {
    const auto& out = profile.stage_output_shapes[k - 1];
    std::int64_t row = element_bytes(cfg.cache_dtype);
    for (auto d : out) row *= d;
    const std::int64_t total = row * n * views;
    const std::int64_t saved = n * profile.stage_range_flops(0, k);
    std::string fits = total <= memory / 2 ? "ram" : total <= disk ? "disk" : "neither";
    rows.push_back({{"cut", k},
                    {"stage", model->stage_name(k - 1)},
                    {"shape", out},
                    {"bytes_per_sample", row * views},
                    {"cache_bytes", total},
                    {"forward_flops_saved_per_epoch", saved},
                    {"forward_saved_fraction", static_cast<double>(profile.stage_range_flops(0, k)) / full},
                    {"auto_backend", fits}});
  }
  if (json) {
    nlohmann::json j = {{"train_samples", n},
                        {"views", views},
                        {"dtype", cfg.cache_dtype},
                        {"available_memory", memory},
                        {"cache_dir", dir.string()},
                        {"free_disk", disk},
                        {"cuts", rows}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf(
      "cache plan: %s on %s, %lld training samples x %lld view%s, %s storage\n",
      cfg.model.options.has("variant") ? cfg.model.options.get_string("variant").c_str() : cfg.model.plugin.c_str(),
      cfg.dataset.plugin.c_str(), static_cast<long long>(n), static_cast<long long>(views), views == 1 ? "" : "s",
      cfg.cache_dtype.c_str());
  std::printf("%4s  %-12s %-16s %12s %12s %16s %7s  %s\n", "cut", "last stage", "shape [C,H,W]", "per sample",
              "cache size", "FLOPs saved/ep", "of fwd", "auto");
  for (const auto& r : rows) {
    std::string shape_text;
    for (auto d : r["shape"]) shape_text += (shape_text.empty() ? "" : ",") + std::to_string(d.get<std::int64_t>());
    std::printf("%4lld  %-12s %-16s %12s %12s %16s %6.1f%%  %s\n", static_cast<long long>(r["cut"].get<std::int64_t>()),
                r["stage"].get<std::string>().c_str(), shape_text.c_str(),
                core::format_bytes(r["bytes_per_sample"].get<double>()).c_str(),
                core::format_bytes(r["cache_bytes"].get<double>()).c_str(),
                core::format_flops(r["forward_flops_saved_per_epoch"].get<double>()).c_str(),
                100.0 * r["forward_saved_fraction"].get<double>(), r["auto_backend"].get<std::string>().c_str());
  }
  std::printf(
      "memory available: %s (the auto column: where cache.plugin=auto with ram_budget: auto, half of it, puts the "
      "cut); free disk in %s: %s\n",
      core::format_bytes(static_cast<double>(memory)).c_str(), dir.string().c_str(),
      core::format_bytes(static_cast<double>(disk)).c_str());
  std::printf(
      "FLOPs saved/ep: forward FLOPs of the dropped stages per epoch once the cut is reached (%s per epoch "
      "for the full model)\n",
      core::format_flops(static_cast<double>(n * full)).c_str());
  return 0;
}

}  // namespace ld::cli
