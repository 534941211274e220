#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "learndrop/core/text.h"
#include "learndrop/error.h"

namespace ld::cli {

namespace {

nlohmann::json read_summary(const std::string& run) {
  std::filesystem::path p = std::filesystem::path(run) / "summary.json";
  std::ifstream in(p);
  if (!in) throw Error(p.string() + ": no summary (is " + run + " a finished run folder?)");
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw Error(p.string() + ": not valid JSON: " + e.what());
  }
}

}  // namespace

int compare_runs(const std::string& baseline, const std::vector<std::string>& runs) {
  nlohmann::json base = read_summary(baseline);
  std::vector<std::pair<std::string, nlohmann::json>> rows = {{baseline, base}};
  for (const auto& r : runs) rows.emplace_back(r, read_summary(r));
  const double base_time = base["train_seconds"].get<double>();
  const double base_flops = base["forward_flops"].get<double>();
  const double base_wall = base["wall_seconds"].get<double>();
  std::printf("%-12s %-10s %8s %10s %10s %14s %9s %9s %8s\n", "policy", "model", "dropped", "wall [s]", "train [s]",
              "forward FLOPs", "FLOPs", "accuracy", "speedup");
  for (const auto& [path, s] : rows) {
    double t = s["train_seconds"].get<double>();
    double f = s["forward_flops"].get<double>();
    std::printf(
        "%-12s %-10s %4lld/%-3lld %10.1f %10.1f %14s %8.1f%% %8.2f%% %7.2fx\n", s["policy"].get<std::string>().c_str(),
        s["model"].get<std::string>().c_str(), static_cast<long long>(s["dropped_stages"].get<std::int64_t>()),
        static_cast<long long>(s["num_stages"].get<std::int64_t>()), s["wall_seconds"].get<double>(), t,
        core::format_flops(f).c_str(), 100.0 * f / base_flops, 100.0 * s["test_accuracy"].get<double>(), base_time / t);
  }
  for (std::size_t i = 1; i < rows.size(); ++i) {
    const auto& s = rows[i].second;
    std::printf(
        "%s vs %s: speedup %.2fx (train time), %.2fx (wall time), forward FLOPs -%.1f%%, accuracy %+.2f points\n",
        s["policy"].get<std::string>().c_str(), base["policy"].get<std::string>().c_str(),
        base_time / s["train_seconds"].get<double>(), base_wall / s["wall_seconds"].get<double>(),
        100.0 * (1.0 - s["forward_flops"].get<double>() / base_flops),
        100.0 * (s["test_accuracy"].get<double>() - base["test_accuracy"].get<double>()));
  }
  return 0;
}

}  // namespace ld::cli
