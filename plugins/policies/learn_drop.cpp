// Policy plugin `learn-drop`: the change score of Learn&Drop (Cruciata et al.).
// See docs/policies/learn-drop.md for the reading implemented here.

#include <cmath>
#include <cstdio>

#include "learndrop/sdk.h"

namespace {

struct LearnDropOptions {
  std::int64_t period = 0;
  double threshold = 0;
  double min_slope = 0;
  std::int64_t window = 0;
  std::int64_t patience = 0;
  double max_fraction = 0;
  double warmup = 0;
  bool peak_reference = true;

  static LearnDropOptions from(const ld::Options& o) {
    return {o.get_int("period"),      o.get_float("threshold"),
            o.get_float("min_slope"), o.get_int("window"),
            o.get_int("patience"),    o.get_float("max_fraction"),
            o.get_float("warmup"),    o.get_string("reference") == "peak"};
  }
};

/// Drops the longest prefix of stages whose change score stopped falling
/// below a threshold.
class ChangeScorePolicy : public ld::DropPolicy {
 public:
  ChangeScorePolicy(const LearnDropOptions& o, const ld::PolicyContext& ctx)
      : o_(o), first_change_(ctx.num_stages, 0.0), scores_(ctx.num_stages), stopped_for_(ctx.num_stages, 0) {}

  std::int64_t period_steps() const override { return o_.period; }

  ld::Decision decide(const ld::PolicyInput& in) override {
    const std::size_t n = in.stages.size();
    for (std::size_t i = 0; i < n; ++i) {
      const ld::StageStats& s = in.stages[i];
      if (s.dropped) continue;
      // The reference of the score: the first measured change, or the
      // largest so far (robust when learning speeds up after the first point).
      if (first_change_[i] <= 0 || (o_.peak_reference && s.relative_change > first_change_[i])) {
        first_change_[i] = s.relative_change;
      }
      double score = first_change_[i] > 0 ? s.relative_change / first_change_[i] : 0.0;
      scores_[i].push_back(score);
      bool stopped = score < o_.threshold && !still_falling(scores_[i]);
      stopped_for_[i] = stopped ? stopped_for_[i] + 1 : 0;
    }
    const std::size_t limit =
        std::max(in.cut, static_cast<std::size_t>(std::floor(o_.max_fraction * static_cast<double>(n) + 1e-9)));
    if (in.epoch + 1e-9 < o_.warmup) return {in.cut, "warm-up"};
    std::size_t cut = in.cut;
    while (cut < limit && stopped_for_[cut] >= o_.patience) ++cut;
    if (cut == in.cut) return {in.cut, ""};
    std::string reason = "change scores";
    for (std::size_t i = in.cut; i < cut; ++i) {
      char buf[64];
      std::snprintf(buf, sizeof buf, " %s=%.3f", in.stages[i].name.c_str(), scores_[i].back());
      reason += buf;
    }
    char tail[96];
    std::snprintf(tail, sizeof tail, " below %.3f and no longer falling for %lld points", o_.threshold,
                  static_cast<long long>(o_.patience));
    return {cut, reason + tail};
  }

 private:
  // Whether the score fell by more than min_slope per point, on average, over
  // the last `window` points. With too little history it counts as falling.
  bool still_falling(const std::vector<double>& s) const {
    const std::size_t w = static_cast<std::size_t>(o_.window);
    if (s.size() <= w) return true;
    double drop_per_point = (s[s.size() - 1 - w] - s.back()) / static_cast<double>(w);
    return drop_per_point > o_.min_slope;
  }

  LearnDropOptions o_;
  std::vector<double> first_change_;
  std::vector<std::vector<double>> scores_;
  std::vector<std::int64_t> stopped_for_;
};

ld::Manifest manifest() {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "learn-drop";
  m.version = "1.0.0";
  m.description = "Learn&Drop: drops the leading stages whose parameter change score stopped falling";
  m.keys = {
      ld::ConfigKey("period", ld::ValueType::kInt, "0", "evaluation period in optimizer steps (0 = once per epoch)")
          .range(0, 1e9),
      ld::ConfigKey("threshold", ld::ValueType::kFloat, "0.5",
                    "a stage may stop once its change score (change / first change) is below this")
          .range(0, 100),
      ld::ConfigKey("min_slope", ld::ValueType::kFloat, "0.2",
                    "the score is still falling if it dropped by more than this per point over the window")
          .range(0, 100),
      ld::ConfigKey("window", ld::ValueType::kInt, "1", "points over which the slope is measured").range(1, 1000),
      ld::ConfigKey("patience", ld::ValueType::kInt, "1", "consecutive stopped points before a stage may drop")
          .range(1, 1000),
      ld::ConfigKey("max_fraction", ld::ValueType::kFloat, "0.5", "never drop more than this fraction of the stages")
          .range(0, 1),
      ld::ConfigKey("warmup", ld::ValueType::kFloat, "1", "never drop before this many epochs").range(0, 1e6),
      ld::ConfigKey("reference", ld::ValueType::kString, "peak",
                    "what the change is divided by: first = the first measured change (the paper's reading), "
                    "peak = the largest change measured so far")
          .one_of({"first", "peak"}),
  };
  return m;
}

void register_plugins(ld::Registrar& r) {
  r.add_policy(manifest(), [](const ld::Options& o, const ld::PolicyContext& ctx) {
    return std::make_unique<ChangeScorePolicy>(LearnDropOptions::from(o), ctx);
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
