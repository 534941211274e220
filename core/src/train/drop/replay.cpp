#include "learndrop/core/replay.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "learndrop/core/files.h"
#include "learndrop/core/judge.h"
#include "learndrop/error.h"

namespace ld::core {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The value of `key` in `j`, or an error naming the file, line and key.
template <typename T>
T field(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) throw Error(where + ": no '" + key + "'");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    throw Error(where + ": '" + key + "' has the wrong type");
  }
}

StageStats stage_from(const json& s, const std::string& where) {
  StageStats st;
  st.name = field<std::string>(s, "name", where);
  st.dropped = field<bool>(s, "dropped", where);
  st.num_params = field<std::int64_t>(s, "num_params", where);
  st.param_norm = field<double>(s, "param_norm", where);
  st.relative_change = field<double>(s, "relative_change", where);
  st.grad_norm = field<double>(s, "grad_norm", where);
  st.mean_grad_norm = field<double>(s, "mean_grad_norm", where);
  if (s.contains("feature_similarity")) {
    st.feature_similarity = field<double>(s, "feature_similarity", where);
    st.feature_similarity_start = field<double>(s, "feature_similarity_start", where);
  }
  if (s.contains("frozen_probe_loss")) st.frozen_probe_loss = field<double>(s, "frozen_probe_loss", where);
  return st;
}

double measured_seconds_per_image(const fs::path& dir) {
  const fs::path summary = dir / "summary.json";
  if (fs::exists(summary)) {
    const json s = json::parse(read_file(summary.string()), nullptr, false);
    if (!s.is_discarded() && s.contains("full_images_per_second") && s["full_images_per_second"].is_number()) {
      const double rate = s["full_images_per_second"].get<double>();
      if (rate > 0) return 1.0 / rate;
    }
  }
  // An unfinished run: its epochs at cut 0 so far.
  std::ifstream in(dir / "metrics.jsonl");
  std::string line;
  double images = 0, seconds = 0;
  while (std::getline(in, line)) {
    const json m = json::parse(line, nullptr, false);
    if (m.is_discarded() || !m.contains("cut") || m["cut"] != 0) continue;
    seconds += m.value("train_seconds", 0.0);
    images += m.value("images_per_second", 0.0) * m.value("train_seconds", 0.0);
  }
  return images > 0 ? seconds / images : 0.0;
}

}  // namespace

RecordedRun read_recorded_run(const fs::path& dir) {
  RecordedRun run;
  run.dir = dir;
  const fs::path stats = dir / "stats.jsonl";
  if (!fs::is_directory(dir)) throw Error(dir.string() + ": no such run folder");
  if (!fs::exists(stats)) throw Error(stats.string() + ": missing (the run reached no evaluation point, or " +
                                      dir.string() + " is not a run folder)");
  std::ifstream in(stats);
  std::string text;
  std::int64_t line_no = 0;
  bool applied = false;
  while (std::getline(in, text)) {
    ++line_no;
    const std::string where = stats.string() + ":" + std::to_string(line_no);
    const json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) throw Error(where + ": not a JSON record (the file is cut short or damaged)");
    if (line_no == 1) {
      if (!j.contains("format") || field<int>(j, "format", where) < 2) {
        throw Error(where + ": written by an older LearnDrop (no 'format' 2 record: its points lack the policy's "
                    "context, held answers and the cost model); rerun it to replay");
      }
      const json ctx = field<json>(j, "context", where);
      run.context.num_stages = field<std::size_t>(ctx, "num_stages", where + ": context");
      run.context.steps_per_epoch = field<std::int64_t>(ctx, "steps_per_epoch", where + ": context");
      run.context.epochs = field<std::int64_t>(ctx, "epochs", where + ": context");
      run.context.lr_warmup_epochs = field<double>(ctx, "lr_warmup_epochs", where + ": context");
      run.images_total = field<std::int64_t>(ctx, "images_total", where + ": context");
      const json pol = field<json>(j, "policy", where);
      run.policy = field<std::string>(pol, "plugin", where + ": policy");
      run.period = field<std::int64_t>(pol, "period", where + ": policy");
      run.shadow = field<bool>(pol, "shadow", where + ": policy");
      run.drop_mode = field<std::string>(pol, "drop_mode", where + ": policy");
      run.cost_guard = field<bool>(pol, "cost_guard", where + ": policy");
      run.freeze = field<std::size_t>(pol, "freeze", where + ": policy");
      try {
        run.cost = DropCost::from_json(field<json>(j, "cost_model", where));
      } catch (const Error& e) {
        throw Error(where + ": " + e.what());
      }
    }
    RecordedRun::Point p;
    PolicyInput& in_ = p.input;
    in_.eval_point = field<std::int64_t>(j, "eval_point", where);
    in_.step = field<std::int64_t>(j, "step", where);
    in_.epoch = field<double>(j, "epoch", where);
    in_.cut = field<std::size_t>(j, "cut", where);
    in_.train_loss = field<double>(j, "train_loss", where);
    in_.lr = field<double>(j, "lr", where);
    in_.lr_sum = field<double>(j, "lr_sum", where);
    in_.steps_since_point = field<std::int64_t>(j, "steps_since_point", where);
    in_.samples = field<std::int64_t>(j, "samples", where);
    in_.arrivals = field<std::int64_t>(j, "arrivals", where);
    in_.last_drop_epoch = field<double>(j, "last_drop_epoch", where);
    in_.held_cut = field<std::size_t>(j, "held_cut", where);
    in_.held_reason = field<std::string>(j, "held_reason", where);
    if (j.contains("probe_loss")) in_.probe_loss = field<double>(j, "probe_loss", where);
    for (const auto& s : field<json>(j, "stages", where)) in_.stages.push_back(stage_from(s, where + ": stages"));
    if (in_.stages.size() != run.context.num_stages) {
      throw Error(where + ": " + std::to_string(in_.stages.size()) + " stages, but the run's model has " +
                  std::to_string(run.context.num_stages));
    }
    p.images_ahead = field<std::int64_t>(j, "images_ahead", where);
    p.cached_samples = field<std::int64_t>(j, "cached_samples", where);
    p.arriving = field<std::int64_t>(j, "arriving", where);
    p.logged_cut = field<std::size_t>(j, "decision", where);
    p.logged_reason = field<std::string>(j, "reason", where);
    run.points.push_back(std::move(p));
    // Points after the run's first applied drop saw another network than
    // full training would have trained.
    if (!applied) run.shared = run.points.size();
    if (j.contains("drop_plan") && j["drop_plan"].value("drop", false)) applied = true;
  }
  if (run.points.empty()) throw Error(stats.string() + ": no evaluation point recorded");
  run.full_seconds_per_image = measured_seconds_per_image(dir);
  return run;
}

ReplayResult replay(const RecordedRun& run, DropPolicy& policy, const std::string& drop_mode, bool cost_guard,
                    const DropGuards& guards) {
  ReplayResult r;
  const double full_work = static_cast<double>(run.images_total) * run.cost.step_work(0, run.freeze);
  JudgeRules rules;
  rules.guards = guards;
  rules.cost = &run.cost;
  rules.drop_mode = drop_mode;
  rules.cost_guard = cost_guard;
  rules.stages = run.context.num_stages;
  std::size_t held_cut = 0;
  std::string held_reason;
  for (std::size_t i = 0; i < run.shared; ++i) {
    const RecordedRun::Point& p = run.points[i];
    // As full training reached this point: nothing dropped beyond model.freeze.
    PolicyInput in = p.input;
    in.cut = run.freeze;
    in.last_drop_epoch = -1;
    in.held_cut = held_cut;
    in.held_reason = held_reason;
    for (std::size_t s = 0; s < in.stages.size(); ++s) in.stages[s].dropped = s < run.freeze;
    const Decision d = policy.decide(in);
    r.decisions.push_back(d);
    PointAhead ahead;
    ahead.images_ahead = p.images_ahead;
    ahead.cached_samples = p.cached_samples;
    ahead.arriving = p.arriving;
    const Judgment j = judge_point(rules, in, d, run.freeze, 0, ahead);
    held_cut = j.held_cut;
    held_reason = j.held_reason;
    if (!j.drops) {
      if (held_cut > 0) r.held.push_back("point " + std::to_string(in.eval_point) + ": " + held_reason);
      continue;
    }
    const DropPlan& plan = *j.plan;
    ReplayDrop drop;
    drop.eval_point = in.eval_point;
    drop.epoch = in.epoch;
    drop.cut = j.target;
    drop.mode = to_string(plan.mode);
    drop.saved = plan.chosen.saved;
    drop.cost = plan.chosen.cost;
    drop.speedup = full_work > plan.chosen.net() ? full_work / (full_work - plan.chosen.net()) : 1.0;
    if (run.full_seconds_per_image > 0) {
      drop.seconds = plan.chosen.net() / run.cost.step_work(0, run.freeze) * run.full_seconds_per_image;
    }
    drop.reason = d.reason;
    r.drop = drop;
    r.not_judged = static_cast<std::int64_t>(run.points.size() - i - 1);
    return r;
  }
  r.not_judged = static_cast<std::int64_t>(run.points.size() - run.shared);
  return r;
}

}  // namespace ld::core
