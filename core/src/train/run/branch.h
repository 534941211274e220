#pragma once
// A run that starts from another run's kept epoch checkpoint (ldrop run
// --branch-from; docs/suites.md). Every criterion trains exactly as full
// training until its first applied drop: same seed, same data order, same
// steps. A run whose config differs from a reference run's only in the
// policy section can therefore skip those epochs: it takes the reference's
// checkpoint of an epoch before its own first drop, and its policy is fed the
// reference's recorded evaluation points up to there (replay.h), so that its
// state, its held answers and the stats.jsonl lines are those a run from the
// start would have. metrics.jsonl's lines of those epochs are the
// reference's, and so are their times: the run's training time and its
// self-normalised speed count the reference's epochs before the branch.

#include <optional>

#include "learndrop/core/checkpoint.h"
#include "learndrop/core/config.h"
#include "learndrop/core/run.h"
#include "loop/run_state.h"
#include "run/run_report.h"
#include "run/run_setup.h"

namespace ld::core {

class PluginHost;

/// Starts the run of `cfg` (its parts freshly set up) from the kept epoch
/// checkpoint of `opts.branch_from` that precedes the first drop its policy
/// makes on that run's points (or `opts.branch_epoch`), and rebuilds the
/// run folder's lines up to there. `checkpoint` holds what was read (the
/// parts refer to it). Returns false when the run cannot branch and
/// `opts.branch_or_start` lets it start from the beginning instead (the
/// reason logged, nothing changed); otherwise throws ld::Error naming the
/// reference and the reason: a config that differs outside the policy
/// section (the key named), no kept checkpoint before the first drop, a
/// feature probe the reference did not record, another evaluation period.
bool branch_run(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts, RunParts& p, RunState& state,
                RunReporter& report, bool defer_interrupts, std::optional<Checkpoint>& checkpoint);

}  // namespace ld::core
