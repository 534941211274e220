// Policy plugin `cka`: drops the leading stages whose representation has
// stopped changing, measured the way EdgeOL (Li et al., 2024) decides which
// layers of a pretrained model to freeze while fine-tuning: linear CKA of
// each stage's output on a fixed probe batch between evaluation points
// (StageStats::feature_similarity, computed by the host). Where a backbone
// already fits the data, its early stages keep their function from the
// first point on, although their parameters keep moving as much as any
// other stage's: the parameter-change score cannot tell them apart, the
// representation can (docs/policies/cka.md).

#include <cstdio>

#include "learndrop/drop_guards.h"
#include "learndrop/sdk.h"
#include "learndrop/stage_streaks.h"

namespace {

struct CkaOptions {
  std::int64_t period = 0;
  double threshold = 0;
  double start_threshold = 0;
  std::int64_t patience = 0;
  double moved = 0;
  double confirm = 0;
  std::string prefer;
};

const ld::OptionTable<CkaOptions>& options_table() {
  static const auto table =
      ld::OptionTable<CkaOptions>()
          .add(ld::period_key(), &CkaOptions::period)
          .add(ld::ConfigKey("threshold", ld::ValueType::kFloat, "1",
                             "a stage has also settled when the CKA of its output between two evaluation points is "
                             "at least this (1 = off: as the learning rate decays every stage settles this way)")
                   .range(0, 1),
               &CkaOptions::threshold)
          .add(ld::ConfigKey("start_threshold", ld::ValueType::kFloat, "0.995",
                             "a stage has settled when the CKA of its output against the run's start is at least "
                             "this: it kept the trained weights' function (1 = off)")
                   .range(0, 1),
               &CkaOptions::start_threshold)
          .add(ld::ConfigKey("patience", ld::ValueType::kInt, "1", "consecutive settled points before a stage may drop")
                   .range(1, 1000),
               &CkaOptions::patience)
          .add(ld::ConfigKey("moved", ld::ValueType::kFloat, "0.95",
                             "no drop before the deepest trained stage's CKA against the start is at most this: "
                             "until the network has adapted, every stage looks settled (1 = no such hold)")
                   .range(0, 1),
               &CkaOptions::moved)
          .add(ld::ConfigKey("confirm", ld::ValueType::kFloat, "0.85",
                             "while the deepest trained stage's CKA against the start is above this, a stage must "
                             "have settled at one point more than patience: a network that has moved little cannot "
                             "yet tell its stages apart (1 = never ask for the extra point)")
                   .range(0, 1),
               &CkaOptions::confirm)
          .add(ld::drop_mode_prefer_key(), &CkaOptions::prefer)
          // For trained weights: a drop may come at the first point, every
          // stage but the last two may go, no stagger (docs/policies/cka.md).
          .add_unbound(ld::drop_guard_keys("0", "2", "1", "0", "false"));
  return table;
}

class CkaPolicy : public ld::DropPolicy {
 public:
  CkaPolicy(const CkaOptions& o, ld::DropGuards guards, const ld::PolicyContext& ctx)
      : o_(o), guards_(guards), settled_("settled_for", ctx.num_stages) {}

  std::int64_t period_steps() const override { return o_.period; }
  bool wants_feature_similarity() const override { return true; }

  ld::Decision decide(const ld::PolicyInput& in) override {
    const std::size_t n = in.stages.size();
    for (std::size_t i = 0; i < n; ++i) {
      const ld::StageStats& s = in.stages[i];
      if (s.dropped) continue;
      if (s.feature_similarity < 0) throw ld::Error("cka: the host measured no feature similarity");
      settled_.record(i, (o_.threshold < 1 && s.feature_similarity >= o_.threshold) ||
                             (o_.start_threshold < 1 && s.feature_similarity_start >= o_.start_threshold));
    }
    // Evidence first: early on (the first epoch of a stream's first part) no
    // stage has moved, so all look settled; the deepest trained one moving
    // shows that training has had the chance to change what they compute.
    double deepest = 1;
    for (std::size_t i = n; i-- > 0;) {
      if (!in.stages[i].dropped) {
        deepest = in.stages[i].feature_similarity_start;
        break;
      }
    }
    // The leading run of stages settled at `patience` points: what `moved`
    // holds, what `confirm` waits on, and without `confirm` what is wanted.
    const std::size_t settled_once = settled_.leading(in.cut, o_.patience);
    if (o_.moved < 1 && deepest > o_.moved) {
      ld::Decision d{in.cut, "", ld::DropModeHint::kAny};
      char buf[160];
      std::snprintf(buf, sizeof buf, "moved: the deepest trained stage's CKA against the start is %.4f > %.4f", deepest,
                    o_.moved);
      if (settled_once > in.cut) d.reason = buf;
      return d;
    }
    // Moved past `moved` but not past `confirm`: early stages of a network
    // that has moved little read settled before they have moved apart
    // (VGG-11-BN on a class split: docs/transfer.md), so a stage must read
    // settled at one point more.
    const bool unconfirmed = o_.confirm < 1 && deepest > o_.confirm;
    const std::int64_t patience = o_.patience + (unconfirmed ? 1 : 0);
    const std::size_t wanted = std::min(n, unconfirmed ? settled_.leading(in.cut, patience) : settled_once);
    std::string held;
    const std::size_t cut = guards_.clamp(in, wanted, &held);
    ld::Decision d;
    d.cut = cut;
    d.mode = ld::drop_mode_hint(o_.prefer);
    if (cut == in.cut) {
      d.reason = wanted > in.cut ? "stages up to " + std::to_string(wanted) + " settled; held by " + held : "";
      if (wanted == in.cut && unconfirmed && settled_once > in.cut) {
        char buf[192];
        std::snprintf(buf, sizeof buf,
                      "confirm: the deepest trained stage's CKA against the start is %.4f > %.4f; stages up to %zu "
                      "settled, waiting for one more point",
                      deepest, o_.confirm, settled_once);
        d.reason = buf;
      }
      return d;
    }
    d.reason = "representation settled (CKA against the start / between points:";
    for (std::size_t i = in.cut; i < cut; ++i) {
      char buf[96];
      std::snprintf(buf, sizeof buf, " %s=%.4f/%.4f", in.stages[i].name.c_str(), in.stages[i].feature_similarity_start,
                    in.stages[i].feature_similarity);
      d.reason += buf;
    }
    char tail[160];
    std::snprintf(tail, sizeof tail, "; thresholds %.4f/%.4f, %lld points%s)", o_.start_threshold, o_.threshold,
                  static_cast<long long>(patience), unconfirmed ? ", one more as the deepest stage moved little" : "");
    d.reason += tail;
    if (cut < wanted) d.reason += " (" + held + " holds back the rest)";
    return d;
  }

  bool has_state() const override { return true; }
  ld::PolicyState save_state() const override {
    ld::PolicyState s;
    settled_.save(s);
    return s;
  }
  void load_state(const ld::PolicyState& state) override { settled_.load(state); }

 private:
  CkaOptions o_;
  ld::DropGuards guards_;
  ld::StageStreaks settled_;  // points each stage has looked settled
};

void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "cka";
  m.version = "1.0.0";
  m.description = "drops the leading stages whose representation (linear CKA on a probe batch) stopped changing";
  m.keys = options_table().keys();
  r.add_policy(m, [](const ld::Options& o, const ld::PolicyContext& ctx) {
    return std::make_unique<CkaPolicy>(options_table().read(o), ld::DropGuards::from(o, ctx), ctx);
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
