// Policy plugin `learn-drop`: the change score of Learn&Drop (Cruciata et al.).
// See docs/policies/learn-drop.md for the reading implemented here and for
// the evidence behind the defaults.

#include <cmath>
#include <cstdio>
#include <deque>
#include <numeric>

#include "learndrop/drop_guards.h"
#include "learndrop/sdk.h"
#include "learndrop/stage_streaks.h"

namespace {

// An epoch count as a config would write it: 1, 2.5.
std::string format_epochs(double epochs) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", epochs);
  return buf;
}

struct LearnDropOptions {
  std::int64_t period = 0;
  double threshold = 0;
  double min_slope = 0;
  std::int64_t window = 0;
  std::int64_t patience = 0;
  double warmup = 0;
  bool peak_reference = true;
  bool lr_normalized = false;
  std::int64_t smooth = 1;

  std::string reference;  ///< first | peak
  std::string normalize;  ///< none | lr

  static LearnDropOptions from(const ld::Options& o);
};

// The keys, each with the member it sets (the manifest and the factory both
// use it), then the drop guards' keys, which ld::DropGuards::from reads.
const ld::OptionTable<LearnDropOptions>& options_table() {
  static const auto table =
      ld::OptionTable<LearnDropOptions>()
          .add(ld::period_key(), &LearnDropOptions::period)
          .add(ld::ConfigKey("threshold", ld::ValueType::kFloat, "0.5",
                             "a stage may stop once its change score (change / reference change) is below this")
                   .range(0, 100),
               &LearnDropOptions::threshold)
          .add(ld::ConfigKey("min_slope", ld::ValueType::kFloat, "0.2",
                             "the score is still falling if it dropped by more than this per point over the window")
                   .range(0, 100),
               &LearnDropOptions::min_slope)
          .add(ld::ConfigKey("window", ld::ValueType::kInt, "1", "points over which the slope is measured")
                   .range(1, 1000),
               &LearnDropOptions::window)
          .add(ld::ConfigKey("patience", ld::ValueType::kInt, "1", "consecutive stopped points before a stage may drop")
                   .range(1, 1000),
               &LearnDropOptions::patience)
          .add(ld::ConfigKey("warmup", ld::ValueType::kFloat, "1",
                             "never drop before this many epochs (a hold on drops; the learning-rate warm-up is "
                             "train.warmup_epochs)")
                   .range(0, 1e6),
               &LearnDropOptions::warmup)
          .add(ld::ConfigKey(
                   "reference", ld::ValueType::kString, "peak",
                   "what the change is divided by: first = the first measured change (the paper's reading), "
                   "peak = the largest change measured so far; points in the learning-rate warm-up never count")
                   .one_of({"first", "peak"}),
               &LearnDropOptions::reference)
          .add(ld::ConfigKey(
                   "normalize", ld::ValueType::kString, "none",
                   "lr = divide each period's change by the sum of its steps' learning rates, so that a decaying "
                   "schedule is not read as convergence; none = the raw change (the paper's)")
                   .one_of({"none", "lr"}),
               &LearnDropOptions::normalize)
          .add(ld::ConfigKey("smooth", ld::ValueType::kInt, "1",
                             "average the change over the last N points before scoring")
                   .range(1, 1000),
               &LearnDropOptions::smooth)
          // Defaults from the realistic suite (docs/policies/learn-drop.md): no drop
          // before 40% of the training, deeper stages later, the last two always trained.
          .add_unbound(ld::drop_guard_keys("0.4", "2", "1", "0", "true"));
  return table;
}

LearnDropOptions LearnDropOptions::from(const ld::Options& o) {
  LearnDropOptions r = options_table().read(o);
  r.peak_reference = r.reference == "peak";
  r.lr_normalized = r.normalize == "lr";
  return r;
}

/// Drops the longest prefix of stages whose change score stopped falling
/// below a threshold.
class ChangeScorePolicy : public ld::DropPolicy {
 public:
  ChangeScorePolicy(const LearnDropOptions& o, ld::DropGuards guards, const ld::PolicyContext& ctx)
      : o_(o),
        guards_(guards),
        lr_warmup_(ctx.lr_warmup_epochs),
        steps_per_epoch_(static_cast<double>(std::max<std::int64_t>(1, ctx.steps_per_epoch))),
        reference_(ctx.num_stages, 0.0),
        recent_(ctx.num_stages),
        scores_(ctx.num_stages),
        stopped_("stopped_for", ctx.num_stages) {}

  std::int64_t period_steps() const override { return o_.period; }

  ld::Decision decide(const ld::PolicyInput& in) override {
    const std::size_t n = in.stages.size();
    // Points whose steps fall (partly) inside the learning-rate warm-up are
    // not references: those steps are small by construction (raw change) or
    // see the largest gradients of the run (normalised change).
    const double period_start = in.epoch - static_cast<double>(in.steps_since_point) / steps_per_epoch_;
    const bool in_lr_warmup = period_start < lr_warmup_ - 1e-9;
    for (std::size_t i = 0; i < n; ++i) {
      const ld::StageStats& s = in.stages[i];
      if (s.dropped) continue;
      double change = s.relative_change;
      if (o_.lr_normalized) change = in.lr_sum > 0 ? change / in.lr_sum : 0.0;
      recent_[i].push_back(change);
      if (static_cast<std::int64_t>(recent_[i].size()) > o_.smooth) recent_[i].pop_front();
      const double smoothed =
          std::accumulate(recent_[i].begin(), recent_[i].end(), 0.0) / static_cast<double>(recent_[i].size());
      // The reference: the first measured change after the warm-up, or the
      // largest so far (robust when learning speeds up after the first point).
      if (!in_lr_warmup && (reference_[i] <= 0 || (o_.peak_reference && smoothed > reference_[i]))) {
        reference_[i] = smoothed;
      }
      const double score = reference_[i] > 0 ? smoothed / reference_[i] : 1.0;
      scores_[i].push_back(score);
      // The continuation test reads the last window + 1 scores; older ones
      // are dropped, so the state a checkpoint keeps stays bounded.
      const auto keep = static_cast<std::size_t>(o_.window) + 1;
      if (scores_[i].size() > keep) scores_[i].erase(scores_[i].begin(), scores_[i].end() - static_cast<std::ptrdiff_t>(keep));
      const bool stopped = score < o_.threshold && !still_falling(scores_[i]);
      stopped_.record(i, stopped);
    }
    // policy.warmup holds drops; it is not the learning-rate warm-up
    // (train.warmup_epochs, lr_warmup_ above), and the reason says which.
    if (in.epoch + 1e-9 < o_.warmup) {
      return {in.cut, "policy.warmup: no drop before epoch " + format_epochs(o_.warmup)};
    }
    const std::size_t wanted = std::min(n, stopped_.leading(in.cut, o_.patience));
    std::string held;
    const std::size_t cut = guards_.clamp(in, wanted, &held);
    if (cut == in.cut)
      return {in.cut, wanted > in.cut ? "stages up to " + std::to_string(wanted) + " stopped; held by " + held : ""};
    std::string reason = std::string(o_.lr_normalized ? "learning-rate-normalised " : "") + "change scores";
    for (std::size_t i = in.cut; i < cut; ++i) {
      char buf[64];
      std::snprintf(buf, sizeof buf, " %s=%.3f", in.stages[i].name.c_str(), scores_[i].back());
      reason += buf;
    }
    char tail[96];
    std::snprintf(tail, sizeof tail, " below %.3f and no longer falling for %lld points", o_.threshold,
                  static_cast<long long>(o_.patience));
    return {cut, reason + tail + (cut < wanted ? " (" + held + " holds back the rest)" : "")};
  }

  // The reference change, and of every stage its recent changes, its scores and how long it has
  // been stopped. The guards keep nothing: they read the last drop from PolicyInput.
  bool has_state() const override { return true; }
  ld::PolicyState save_state() const override {
    ld::PolicyState state;
    state.values["reference"] = reference_;
    stopped_.save(state);
    for (std::size_t i = 0; i < scores_.size(); ++i) {
      state.values["recent." + std::to_string(i)].assign(recent_[i].begin(), recent_[i].end());
      state.values["scores." + std::to_string(i)] = scores_[i];
    }
    return state;
  }
  void load_state(const ld::PolicyState& state) override {
    const auto n = static_cast<std::int64_t>(reference_.size());
    reference_ = state.at("reference", n);
    stopped_.load(state);
    for (std::size_t i = 0; i < scores_.size(); ++i) {
      const auto& recent = state.at("recent." + std::to_string(i));
      recent_[i].assign(recent.begin(), recent.end());
      scores_[i] = state.at("scores." + std::to_string(i));
    }
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
  ld::DropGuards guards_;
  double lr_warmup_ = 0;
  double steps_per_epoch_ = 1;
  std::vector<double> reference_;
  std::vector<std::deque<double>> recent_;
  std::vector<std::vector<double>> scores_;
  ld::StageStreaks stopped_;  // points each stage has been stopped
};

ld::Manifest manifest() {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "learn-drop";
  m.version = "2.0.0";  // 2: guards, normalize, smooth; defaults from the realistic suite
  m.description = "Learn&Drop: drops the leading stages whose parameter change score stopped falling";
  m.keys = options_table().keys();
  return m;
}

void register_plugins(ld::Registrar& r) {
  r.add_policy(manifest(), [](const ld::Options& o, const ld::PolicyContext& ctx) {
    return std::make_unique<ChangeScorePolicy>(LearnDropOptions::from(o), ld::DropGuards::from(o, ctx), ctx);
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
