// A run branched from another run's kept epoch checkpoint (branch.h).
#include "run/branch.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include "drop/drop_sequence.h"
#include "learndrop/core/drop_cost.h"
#include "learndrop/core/files.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/replay.h"
#include "run/run_checkpoint.h"

namespace ld::core {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// A reason the run cannot branch (a fallback may start it from the beginning).
struct Refused : Error {
  using Error::Error;
};

// An effective config as dotted key -> value text.
void flatten(const YAML::Node& node, const std::string& prefix, std::map<std::string, std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      flatten(kv.second, prefix.empty() ? kv.first.as<std::string>() : prefix + "." + kv.first.as<std::string>(), out);
    }
    return;
  }
  out[prefix] = node.IsScalar() ? node.Scalar() : YAML::Dump(node);
}

// A value as people write it: a number in its shortest form (the effective
// config writes 0.05 as 0.050000000000000003).
std::string shown(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end == nullptr || *end != '\0') return text;
  return fmt::format("{}", v);
}

std::map<std::string, std::string> flat_config(const std::string& yaml, const std::string& origin) {
  std::map<std::string, std::string> out;
  try {
    flatten(YAML::Load(yaml), "", out);
  } catch (const YAML::Exception& e) {
    throw Error(origin + " cannot be read: " + e.what());
  }
  return out;
}

// The two runs compute the same until a drop: their configs differ at most
// in the policy section (the criterion, its keys, shadow, drop mode, cost
// guard, probe), the experiment's name and keys outside the config hash.
void check_same_run(const RunConfig& cfg, const fs::path& ref) {
  const fs::path file = ref / "config.yaml";
  if (!fs::exists(file)) throw Refused(file.string() + " is missing (not a run folder)");
  std::string why;
  try {
    why = difference_outside_policy(read_file(file), cfg);
  } catch (const Error& e) {
    throw Refused(file.string() + ": " + e.what());
  }
  if (!why.empty()) {
    throw Refused("its config differs in " + why + "; a run branches only from one that differs in the policy section");
  }
}

// Where a policy fed the recorded points stands.
struct Scan {
  std::size_t drop_at = std::string::npos;  // the point of its first applied (or shadow) drop
  std::size_t points = 0;                   // points fed before it
  std::size_t held_cut = 0;
  std::string held_reason;
};

// Feeds the reference's shared points up to step `max_step` to `policy` as
// DropSequence::at_point would in a run of `cfg` that has not dropped yet:
// the same input (held answers its own, the feature probe's readings only
// when this run has one), judged alike (judge_point); stops at the point it
// would drop. With `report`, writes each point's stats.jsonl line.
Scan scan(const RecordedRun& rec, DropPolicy& policy, const RunConfig& cfg, const RunParts& p, std::int64_t max_step,
          RunReporter* report) {
  Scan r;
  for (std::size_t i = 0; i < rec.shared && rec.points[i].input.step <= max_step; ++i) {
    const RecordedRun::Point& pt = rec.points[i];
    std::vector<StageStats> measured = pt.input.stages;
    PolicyInput in = pt.input;
    if (!p.probe) {
      for (auto& st : measured) st.feature_similarity = st.feature_similarity_start = -1;
    }
    if (!p.probe || !p.probe->losses()) {
      for (auto& st : measured) st.frozen_probe_loss = -1;
      in.probe_loss = -1;
    }
    in.stages = measured;
    in.last_drop_epoch = -1;
    in.held_cut = r.held_cut;
    in.held_reason = r.held_reason;
    if (cfg.policy_shadow) in.cut = 0;  // the cut it believes in: none yet
    Decision d;
    try {
      d = policy.decide(in);
    } catch (const PluginError& e) {
      throw PluginError(std::string(e.what()) + " (evaluation point " + std::to_string(in.eval_point) +
                            ", replayed from " + rec.dir.string() + ")",
                        e.unexpected());
    }
    PointAhead ahead;
    ahead.images_ahead = pt.images_ahead;
    ahead.cached_samples = pt.cached_samples;
    ahead.arriving = pt.arriving;
    const Judgment j = judge_point(p.judge, in, d, p.freeze_stages, 0, ahead);
    if (j.drops) {
      r.drop_at = i;
      return r;
    }
    r.held_cut = j.held_cut;
    r.held_reason = j.held_reason;
    if (report) {
      const json plan = j.plan ? plan_record(*j.plan, j.target, ahead.images_ahead) : json();
      const std::size_t after = j.target;
      report->evaluation_point(in, measured, d, pt.input.step, pt.input.cut, cfg.policy_shadow ? &after : nullptr,
                               plan.is_null() ? nullptr : &plan, ahead, guard_record(j));
    }
    ++r.points;
  }
  return r;
}

// Optimizer steps before epoch `epoch` (0-based) of the run's schedule.
std::int64_t steps_before(const Schedule& schedule, std::int64_t epoch) {
  std::int64_t steps = 0;
  for (std::int64_t e = 0; e < epoch; ++e) steps += schedule.steps_in(e);
  return steps;
}

std::string epoch_list(const std::map<std::int64_t, fs::path>& kept) {
  std::string out;
  for (const auto& kv : kept) out += (out.empty() ? "" : ", ") + std::to_string(kv.first);
  return out;
}

// The reference's metrics.jsonl lines its checkpoint had seen, appended to this run's.
void copy_metrics(const fs::path& ref, std::int64_t bytes, RunOutput& out) {
  const fs::path file = ref / "metrics.jsonl";
  const std::string text = read_file(file);
  if (static_cast<std::int64_t>(text.size()) < bytes) {
    throw Error(file.string() + " has " + std::to_string(text.size()) + " bytes, its checkpoint saw " +
                std::to_string(bytes));
  }
  std::istringstream lines(text.substr(0, static_cast<std::size_t>(bytes)));
  for (std::string line; std::getline(lines, line);) {
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded()) throw Error(file.string() + ": a line is not JSON (the file is damaged)");
    out.append_metrics(j);
  }
}

}  // namespace

std::string difference_outside_policy(const std::string& reference_yaml, const RunConfig& config) {
  const auto theirs = flat_config(reference_yaml, "the reference config");
  const auto ours = flat_config(config.effective_yaml(), "this run's config");
  std::set<std::string> keys;
  for (const auto& kv : theirs) keys.insert(kv.first);
  for (const auto& kv : ours) keys.insert(kv.first);
  for (const auto& key : keys) {
    if (key.rfind("policy.", 0) == 0 || key == "experiment.name" || !is_identity_key(key)) continue;
    const auto a = theirs.find(key), b = ours.find(key);
    const std::string va = a == theirs.end() ? "(absent)" : a->second, vb = b == ours.end() ? "(absent)" : b->second;
    if (va != vb) return key + " (" + shown(va) + " there, " + shown(vb) + " here)";
  }
  return "";
}

bool branch_run(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts, RunParts& p, RunState& state,
                RunReporter& report, bool defer_interrupts, std::optional<Checkpoint>& checkpoint) {
  const fs::path ref = opts.branch_from;
  const std::string what = "--branch-from " + ref.string();
  RecordedRun rec;
  std::int64_t epoch = 0, first_drop_step = -1;
  try {
    if (!fs::is_directory(ref)) throw Refused("no such run folder");
    if (opts.group != nullptr) throw Refused("data-parallel runs do not branch (they write no checkpoints yet)");
    check_same_run(cfg, ref);
    try {
      rec = read_recorded_run(ref);
    } catch (const Error& e) {
      throw Refused(e.what());
    }
    if (rec.context.num_stages != p.model->num_stages() || rec.context.steps_per_epoch != p.steps_per_epoch) {
      throw Refused("its points are of " + std::to_string(rec.context.num_stages) + " stages and " +
                    std::to_string(rec.context.steps_per_epoch) + " steps per epoch, this run has " +
                    std::to_string(p.model->num_stages()) + " and " + std::to_string(p.steps_per_epoch));
    }
    if (rec.period != p.policy->period_steps()) {
      throw Refused("its policy evaluated every " + std::to_string(rec.period) + " steps, policy '" +
                    cfg.policy.plugin + "' evaluates every " + std::to_string(p.policy->period_steps()) +
                    " (0 = at each epoch's end): the points it would see were not recorded");
    }
    const auto kept = kept_epoch_checkpoints(ref);
    if (kept.empty()) {
      throw Refused("it kept no epoch checkpoints (a reference run needs train.checkpoint_keep: all)");
    }
    // Where does this policy first drop on the reference's points? A fresh
    // instance answers: the run's own starts from nothing below.
    const auto probe_policy = host.create_policy(cfg.policy.plugin, cfg.policy.options, p.policy_context);
    const Scan first = scan(rec, *probe_policy, cfg, p, std::numeric_limits<std::int64_t>::max(), nullptr);
    // The checkpoint must come before that drop, and before the reference's
    // own first drop (after which it trained another network).
    std::int64_t limit = std::numeric_limits<std::int64_t>::max();
    std::string until = "the reference's last point (no drop)";
    if (first.drop_at != std::string::npos) {
      first_drop_step = rec.points[first.drop_at].input.step;
      limit = first_drop_step;
      until = "its first drop, at step " + std::to_string(limit) + " (epoch " +
              fmt::format("{:g}", rec.points[first.drop_at].input.epoch) + ")";
    } else if (rec.shared < rec.points.size()) {
      limit = rec.points[rec.shared - 1].input.step;
      until = "the reference's own first drop, at step " + std::to_string(limit) + ", after which no point is shared";
    }
    fs::path chosen;
    for (auto it = kept.rbegin(); it != kept.rend(); ++it) {
      if (opts.branch_epoch >= 0 && it->first != opts.branch_epoch) continue;
      if (steps_before(*p.schedule, it->first) < limit) {
        epoch = it->first;
        chosen = it->second;
        break;
      }
    }
    if (chosen.empty()) {
      const std::string which = "its checkpoint of epoch " + std::to_string(opts.branch_epoch);
      const std::string why = opts.branch_epoch < 0                ? "it kept no checkpoint before " + until
                              : kept.count(opts.branch_epoch) == 0 ? which + " was not kept"
                                                                   : which + " comes after " + until;
      throw Refused(why + " (kept: epochs " + epoch_list(kept) + ")");
    }
    try {
      checkpoint = read_checkpoint_folder(chosen);
    } catch (const Error& e) {
      throw Refused(e.what());
    }
    const json& m = checkpoint->meta;
    std::size_t drops = 0;
    for (const auto& e : m.at("history")) drops += e.at("kind") == "drop" ? 1 : 0;
    if (drops > (p.freeze_stages > 0 ? 1u : 0u)) {
      throw Refused(chosen.string() + " is after a drop of that run");
    }
    if (m.at("run_state").at("step").get<std::int64_t>() != steps_before(*p.schedule, epoch)) {
      throw Refused(chosen.string() + " is not at the start of epoch " + std::to_string(epoch + 1));
    }
    if (p.probe) {
      if (!checkpoint->tensors.count("probe/start/0")) {
        throw Refused("policy '" + cfg.policy.plugin +
                      "' reads the feature probe, which that run did not measure (set policy.probe_samples there)");
      }
      if (p.probe->losses() && !checkpoint->tensors.count("probe/output/0")) {
        throw Refused("policy '" + cfg.policy.plugin +
                      "' reads the freeze probe, which that run did not measure (set policy.probe_samples there)");
      }
      const std::int64_t n = checkpoint->tensors.at("probe/start/0").size(0);
      if (n != p.probe->samples()) {
        throw Refused("its feature probe has " + std::to_string(n) + " samples, this run's " +
                      std::to_string(p.probe->samples()) + " (policy.probe_samples)");
      }
    }
  } catch (const Refused& e) {
    checkpoint.reset();
    if (!opts.branch_or_start) throw Error(what + ": " + e.what());
    spdlog::warn("{}: {}; training from the start", what, e.what());
    return false;
  }
  // From here on the parts are the checkpoint's: a failure is an error.
  restore_run(*checkpoint, cfg, p, state, report, defer_interrupts, RestoreFor::kBranch);
  copy_metrics(ref, checkpoint->meta.at("output").at("metrics_bytes").get<std::int64_t>(), *p.out);
  const Scan r = scan(rec, *p.policy, cfg, p, state.step, &report);
  if (r.drop_at != std::string::npos || static_cast<std::int64_t>(r.points) != state.eval_point) {
    throw Error(what + ": replaying its points up to epoch " + std::to_string(epoch) + " gave " +
                std::to_string(r.points) + " points, its checkpoint counts " + std::to_string(state.eval_point));
  }
  state.held_cut = r.held_cut;
  state.held_reason = r.held_reason;
  state.shadow_cut = 0;
  state.last_drop_epoch = -1;
  report.branched({{"run", fs::absolute(ref).lexically_normal().string()},
                   {"epoch", epoch},
                   {"checkpoint", checkpoint->from.string()},
                   {"points_replayed", r.points}});
  spdlog::info("branched from {} at the end of epoch {} (step {}): policy '{}' replayed on its {} evaluation points{}",
               ref.string(), epoch, state.step, cfg.policy.plugin, r.points,
               first_drop_step >= 0 ? "; its first drop comes at step " + std::to_string(first_drop_step)
                                    : std::string("; no drop on the points recorded"));
  return true;
}

}  // namespace ld::core
