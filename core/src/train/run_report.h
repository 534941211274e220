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
#include "learndrop/policy.h"
#include "run_setup.h"
#include "run_state.h"

namespace ld::core {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

class RunReporter {
 public:
  RunReporter(const RunConfig& cfg, const RunParts& parts, const RunOptions& opts);

  /// The first two log lines: what runs where, and the model's FLOPs.
  void started() const;
  /// The live progress line on a terminal, at most twice a second.
  void live(std::int64_t epoch, std::int64_t step, const EpochTally& tally, Clock::time_point epoch_start);
  /// An evaluation point's line of stats.jsonl: what the policy saw (`in`,
  /// with the stages as `measured`), its decision, at `step` and `cut`;
  /// `shadow_cut` (policy.shadow) is the cut the policy believes in after it.
  void evaluation_point(const PolicyInput& in, const std::vector<StageStats>& measured, const Decision& d,
                        std::int64_t step, std::size_t cut, const std::size_t* shadow_cut);
  /// A drop: the log lines and the summary's record of it.
  void drop(const DropReport& r, double epoch, std::int64_t step, const std::string& reason);
  /// policy.shadow: where the policy would have dropped.
  void shadow_drop(double epoch, std::int64_t step, std::size_t from, std::size_t to, const std::string& reason);
  /// The end of an epoch: its metrics.jsonl line and console line.
  void epoch_done(std::int64_t epoch, const EpochTally& tally, const RunTotals& totals, const CacheStats& read,
                  double train_seconds, double epoch_seconds);
  /// The end of the run: model.pt (saved from the CPU), summary.json, the
  /// last log line. Returns the summary.
  nlohmann::json finish(const RunTotals& totals, double wall_seconds);

  /// What a checkpoint keeps of the report (the summary's drops), and back.
  nlohmann::json state() const;
  void restore(const nlohmann::json& state);
  /// A resume, recorded in the summary's `resumes`.
  void resumed(const nlohmann::json& entry) { resumes_.push_back(entry); }

 private:
  nlohmann::json summary(const RunTotals& totals, double wall_seconds) const;
  void clear_live() const;

  const RunConfig& cfg_;
  const RunParts& parts_;
  const RunOptions& opts_;
  const bool live_;
  Clock::time_point last_live_ = Clock::now();
  nlohmann::json drops_ = nlohmann::json::array();
  nlohmann::json shadow_drops_ = nlohmann::json::array();
  nlohmann::json resumes_ = nlohmann::json::array();
};

}  // namespace ld::core
