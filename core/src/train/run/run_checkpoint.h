#pragma once
// A run's checkpoint (docs/checkpoints.md): everything the loop goes on
// from, written at epoch ends and on SIGINT/SIGTERM, read by a resume.

#include <filesystem>
#include <string>

#include "learndrop/core/checkpoint.h"
#include "learndrop/core/config.h"
#include "run/run_report.h"
#include "run/run_setup.h"
#include "loop/run_state.h"

namespace ld::core {

/// Refuses to resume from `c` a run whose config hashes differently, or
/// whose policy does not save its state; names `dir` and the reason.
void check_resumable(const Checkpoint& c, const RunConfig& config, const std::filesystem::path& dir);

/// Writes checkpoint/ of the run: its parts' state (model, drops and cache,
/// optimizer, statistics, policy, generators, report) and `saved`, the loop
/// at the position a resume goes on from. `start`: when writing began (its
/// seconds count as checkpoint time). Returns where, for messages.
std::string write_run_checkpoint(const RunConfig& cfg, const RunParts& p, const RunReporter& report, RunState saved,
                                 Clock::time_point start);

/// Keeps the run's cache for a resume (FeatureCache::retain) and notes the
/// files kept in its folder (RunOutput::note_kept_caches), so that they go
/// with the checkpoint they belong to.
void keep_cache_for_resume(RunParts& p);

/// Restores the run from `c` into its parts, `state` and `report`: the
/// model, drops and cache (built or reopened; `defer_interrupts` holds a
/// signal until the cache is whole), optimizer, statistics, policy,
/// generators. Throws ld::Error naming the checkpoint and what does not fit.
/// A branch (`kBranch`: another run's checkpoint, branch.h) leaves the
/// policy as it is (its state is the replay's) and records no resume.
enum class RestoreFor { kResume, kBranch };
void restore_run(const Checkpoint& c, const RunConfig& cfg, RunParts& p, RunState& state, RunReporter& report,
                 bool defer_interrupts, RestoreFor what = RestoreFor::kResume);

}  // namespace ld::core
