// run_training: one process's run (a Trainer), or one rank of a
// data-parallel run, or a resume from a checkpoint; and the test-only fault
// seam (TestFaults), outside the loop's file.
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "parallel/distributed.h"
#include "learndrop/core/files.h"
#include "learndrop/core/run.h"
#include "loop/trainer.h"

namespace ld::core {

using json = nlohmann::json;

TestFaults TestFaults::from_environment() {
  TestFaults f;
  if (const char* v = std::getenv("LEARNDROP_TEST_SIGTERM_AT_STEP"); v && *v) f.sigterm_step = std::strtoll(v, nullptr, 10);
  if (const char* v = std::getenv("LEARNDROP_TEST_NAN_AT_STEP"); v && *v) f.nan_step = std::strtoll(v, nullptr, 10);
  if (const char* v = std::getenv("LEARNDROP_TEST_KILL_RANK_AT_STEP"); v && *v) {
    char* end = nullptr;
    f.kill_rank = static_cast<int>(std::strtol(v, &end, 10));
    f.kill_step = *end == ':' ? std::strtoll(end + 1, nullptr, 10) : -1;
  }
  return f;
}

void TestFaults::before_step(std::int64_t step, int rank) const {
  if (step == sigterm_step) std::raise(SIGTERM);
  if (rank >= 0 && step == kill_step && rank == kill_rank) std::raise(SIGKILL);
}

namespace {

// One rank of a data-parallel run (WORLD_SIZE > 1): connects the group, gives
// rank r > 0 its own folder and a share of the cores, and records a failure
// in the run folder.
json run_rank(const RunConfig& config, const PluginHost& host, const RunOptions& options, const RankEnv& env) {
  if (options.resume) {
    throw Error(
        "--resume: distributed runs do not write checkpoints yet, so there is nothing to resume "
        "(docs/distributed.md)");
  }
  RunConfig cfg = config;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (cfg.threads_setting == "auto") cfg.threads = std::max(1, cores / env.local_world);
  if (cfg.loader_threads_setting == "auto") cfg.loader_threads = cfg.threads;
  std::unique_ptr<ProcessGroup> group =
      ProcessGroup::connect(env, cfg.dist_backend, resolve_device(cfg.device), cfg.dist_timeout);
  RunOptions opts = options;
  opts.group = group.get();
  const std::filesystem::path run_dir = options.out_dir;
  if (env.rank > 0) {
    opts.out_dir = (run_dir / "ranks" / std::to_string(env.rank)).string();
    opts.progress = false;
  }
  if (env.rank == 0) {
    spdlog::info("rank 0 of {} ({}; {} threads per rank; checkpoints are not written in distributed runs yet)",
                 env.world, group->backend(), cfg.threads);
  }
  try {
    Trainer trainer(cfg, host, opts, nullptr);
    return trainer.run();
  } catch (const std::exception& e) {
    std::error_code ec;
    std::filesystem::create_directories(opts.out_dir, ec);
    const json failed = {{"rank", env.rank}, {"world_size", env.world}, {"error", std::string(e.what())}};
    try {
      atomic_write(std::filesystem::path(opts.out_dir) / "failed.json", failed.dump(2) + "\n");
    } catch (const std::exception& w) {
      spdlog::warn("rank {}: {}", env.rank, w.what());
    }
    throw;
  }
}

}  // namespace

json run_training(const RunConfig& config, const PluginHost& host, const RunOptions& options) {
  const RankEnv env = rank_env_from_environment();
  if (env.distributed() && options.group == nullptr) return run_rank(config, host, options, env);
  if (!options.resume) {
    Trainer trainer(config, host, options, nullptr);
    return trainer.run();
  }
  const std::filesystem::path dir = options.out_dir;
  if (std::filesystem::exists(dir / "summary.json")) {
    throw Error("cannot resume " + dir.string() + ": the run has finished (summary.json); nothing to resume");
  }
  const Checkpoint checkpoint = read_checkpoint(dir);
  check_resumable(checkpoint, config, dir);
  Trainer trainer(config, host, options, &checkpoint);
  return trainer.run();
}

}  // namespace ld::core
