#pragma once
// The reporting part of a run (run_training = setup, loop, reporting): the
// console (log lines, progress) and the run folder's files (stats.jsonl,
// metrics.jsonl, summary.json, model.pt).

#include <chrono>
#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "learndrop/cache.h"
#include "learndrop/core/judge.h"
#include "learndrop/policy.h"
#include "run/head_fit.h"
#include "run/run_setup.h"
#include "loop/run_state.h"

namespace ld::core {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

/// The version of stats.jsonl's records: 2 records every PolicyInput field,
/// the policy's context and the cost model (`ldrop policy replay`).
constexpr int kStatsFormat = 2;

class RunReporter {
 public:
  RunReporter(const RunConfig& cfg, const RunParts& parts, const RunOptions& opts);

  /// The first two log lines: what runs where, and the model's FLOPs.
  void started() const;
  /// The live progress line on a terminal, at most twice a second.
  void live(std::int64_t epoch, std::int64_t step, std::int64_t steps, const EpochTally& tally,
            Clock::time_point epoch_start);
  /// An evaluation point's line of stats.jsonl: what the policy saw (`in`,
  /// with the stages as `measured`), its decision, at `step` and `cut`;
  /// `shadow_cut` (policy.shadow) is the cut the policy believes in after it.
  /// `plan` is the host's weighing of the drop (drop_cost.h), if there was one.
  /// `ahead` is what the host's cost guard reads at this point, recorded so
  /// that `ldrop policy replay` can weigh drops as the run would have.
  /// `guarded` (guard_record): a drop guard held the decision back.
  void evaluation_point(const PolicyInput& in, const std::vector<StageStats>& measured, const Decision& d,
                        std::int64_t step, std::size_t cut, const std::size_t* shadow_cut,
                        const nlohmann::json* plan, const PointAhead& ahead, const nlohmann::json& guarded = nullptr);
  /// A drop: the log lines and the summary's record of it.
  /// `plan`: the cost model's prediction (null for model.freeze).
  void drop(const DropReport& r, double epoch, std::int64_t step, const std::string& reason,
            const nlohmann::json* plan);
  /// Part `part` (0-based) of `parts` arrived before `epoch`: samples
  /// [before, after); `first_look` is the model's loss and accuracy on it
  /// before training on it (null for the first part).
  void arrival(std::int64_t part, std::int64_t parts, std::int64_t before, std::int64_t after,
               const ArrivalReport& added, const EvalResult* first_look, std::int64_t epoch);
  /// The last epoch of part `part` ended: the test set after it.
  void arrival_done(std::int64_t part, const EvalResult& test, double train_seconds_total);
  /// policy.shadow: where the policy would have dropped.
  void shadow_drop(double epoch, std::int64_t step, std::size_t from, std::size_t to, const std::string& reason);
  /// The end of an epoch: its metrics.jsonl line and console line.
  /// `arrivals` > 0 in a stream (parts arrived), `samples` the samples the epoch trained on.
  void epoch_done(std::int64_t epoch, std::int64_t steps, const EpochTally& tally, const RunTotals& totals,
                  const CacheStats& read, double train_seconds, double epoch_seconds, std::int64_t arrivals,
                  std::int64_t samples);
  /// The end of the run: model.pt (saved from the CPU), summary.json, the
  /// last log line. Returns the summary.
  /// `full_seconds_per_image`: full training's speed as the run measured it
  /// in its epochs at cut 0 (0 when it had none), for the self-normalised speedup.
  nlohmann::json finish(const RunTotals& totals, double wall_seconds, double full_seconds_per_image);

  /// model.head: probe fitted the head (the log line; summary.json's `head_fit`).
  void head_fitted(const HeadFit& fit);
  /// What a checkpoint keeps of the report (the summary's drops), and back.
  nlohmann::json state() const;
  void load_state(const nlohmann::json& state);
  /// A resume, recorded in the summary's `resumes`.
  void resumed(const nlohmann::json& entry) { resumes_.push_back(entry); }
  /// A branch from another run's checkpoint (branch.h), recorded as the
  /// summary's `branched_from`: that run's drops in shadow and resumes are
  /// not this run's.
  void branched(const nlohmann::json& entry) {
    shadow_drops_ = nlohmann::json::array();
    resumes_ = nlohmann::json::array();
    branched_ = entry;
  }

 private:
  nlohmann::json summary(const RunTotals& totals, double wall_seconds, double full_seconds_per_image) const;
  void clear_live() const;

  const RunConfig& cfg_;
  const RunParts& parts_;
  const RunOptions& opts_;
  const bool live_;
  const std::string allocator_ = process_allocator();
  Clock::time_point last_live_ = Clock::now();
  nlohmann::json drops_ = nlohmann::json::array();
  nlohmann::json shadow_drops_ = nlohmann::json::array();
  nlohmann::json resumes_ = nlohmann::json::array();
  nlohmann::json arrivals_ = nlohmann::json::array();
  nlohmann::json branched_ = nullptr;
  nlohmann::json head_fit_ = nullptr;
  bool cached_before_ = false;  // a cached drop happened (the one-view warning is given once)
};

}  // namespace ld::core
