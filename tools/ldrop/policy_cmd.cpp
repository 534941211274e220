// ldrop policy replay: a drop criterion on recorded runs (core/replay.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "commands.h"
#include "learndrop/core/config.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/replay.h"
#include "learndrop/core/text.h"
#include "learndrop/error.h"

namespace ld::cli {

namespace {

using json = nlohmann::json;

// One setting: the --set overrides and one value of each --grid key.
using Setting = std::vector<std::string>;

std::vector<Setting> expand_grid(const ReplayArgs& a) {
  std::vector<Setting> settings = {a.sets};
  for (const auto& g : a.grid) {
    const auto eq = g.find('=');
    if (eq == std::string::npos || eq == 0 || g.rfind("policy.", 0) != 0) {
      throw Error("--grid " + g + ": expected policy.KEY=V1,V2,... (e.g. --grid policy.threshold=0.3,0.5)");
    }
    std::vector<std::string> values;
    std::string rest = g.substr(eq + 1);
    std::size_t start = 0;
    while (start <= rest.size()) {
      const std::size_t comma = std::min(rest.find(',', start), rest.size());
      values.push_back(rest.substr(start, comma - start));
      start = comma + 1;
    }
    std::vector<Setting> next;
    for (const auto& s : settings) {
      for (const auto& v : values) {
        Setting t = s;
        t.push_back(g.substr(0, eq) + "=" + v);
        next.push_back(t);
      }
    }
    settings = std::move(next);
  }
  return settings;
}

std::string setting_label(const Setting& s, std::size_t fixed) {
  std::string out;
  for (std::size_t i = fixed; i < s.size(); ++i) out += (out.empty() ? "" : " ") + s[i].substr(7);  // drop "policy."
  return out.empty() ? "(as set)" : out;
}

struct RunOutcome {
  std::string run;
  core::ReplayResult result;
  bool matches = true;        // the run's own policy: decisions equal the logged ones
  std::string mismatch;
};

RunOutcome replay_one(const core::PluginHost& host, const core::RecordedRun& run, const std::string& policy,
                      const Setting& setting, bool own) {
  core::ConfigTree tree = core::load_config((run.dir / "config.yaml").string());
  if (!policy.empty()) {
    // Another policy starts from its own defaults: the recorded policy's keys
    // stay behind (learn-drop's min_progress must not become cka's), the
    // host's keys of the section (drop_mode, cost_guard, ...) stay.
    YAML::Node kept(YAML::NodeType::Map);
    const auto& host_keys = core::host_section_keys("policy");
    for (const auto& kv : tree.root["policy"]) {
      const std::string key = kv.first.as<std::string>();
      const bool is_host = std::any_of(host_keys.begin(), host_keys.end(), [&](const ConfigKey& k) { return k.name == key; });
      if (is_host) kept[key] = kv.second;
    }
    tree.root["policy"] = kept;
    core::apply_override(tree, "policy.plugin=" + policy);
  }
  for (const auto& s : setting) {
    if (s.rfind("policy.", 0) != 0) throw Error("--set " + s + ": replay takes policy keys only (policy.KEY=VALUE)");
    core::apply_override(tree, s);
  }
  const core::RunConfig cfg = core::resolve_config(tree, host);
  auto p = host.create_policy(cfg.policy.plugin, cfg.policy.options, run.context);
  if (p->period_steps() != run.period) {
    throw Error("policy '" + cfg.policy.plugin + "' evaluates " +
                (p->period_steps() == 0 ? std::string("at the end of each epoch")
                                        : "every " + std::to_string(p->period_steps()) + " steps") +
                ", but " + run.dir.string() + " recorded a point " +
                (run.period == 0 ? std::string("at the end of each epoch") : "every " + std::to_string(run.period) + " steps") +
                ": replay needs the same points (set policy.period, or record a run with the criterion's period, e.g. "
                "in shadow mode)");
  }
  RunOutcome o;
  o.run = run.dir.string();
  o.result = core::replay(run, *p, cfg.drop_mode, cfg.cost_guard, DropGuards::from(cfg.policy.options, run.context));
  if (own) {
    for (std::size_t i = 0; i < o.result.decisions.size(); ++i) {
      const auto& rec = run.points[i];
      const Decision& d = o.result.decisions[i];
      if (d.cut != rec.logged_cut || d.reason != rec.logged_reason) {
        o.matches = false;
        o.mismatch = "point " + std::to_string(rec.input.eval_point) + ": logged cut " + std::to_string(rec.logged_cut) +
                     " ('" + rec.logged_reason + "'), replayed cut " + std::to_string(d.cut) + " ('" + d.reason + "')";
        break;
      }
    }
  }
  return o;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}
double spread(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

json drop_json(const std::optional<core::ReplayDrop>& d) {
  if (!d) return nullptr;
  return {{"eval_point", d->eval_point}, {"epoch", d->epoch},   {"cut", d->cut},     {"mode", d->mode},
          {"saved_work", d->saved},      {"cost_work", d->cost}, {"speedup", d->speedup}, {"seconds", d->seconds},
          {"reason", d->reason}};
}

}  // namespace

int policy_replay(const core::PluginHost& host, const ReplayArgs& a) {
  std::vector<core::RecordedRun> runs;
  for (const auto& dir : a.runs) runs.push_back(core::read_recorded_run(dir));
  const bool own = a.policy.empty() && a.sets.empty() && a.grid.empty();
  const std::vector<Setting> settings = expand_grid(a);
  json out = json::array();
  const std::string name = a.policy.empty() ? runs.front().policy : a.policy;
  if (!a.json) {
    std::printf("replay of policy '%s' on %zu run%s, %zu setting%s; each row: the first drop the host would apply "
                "(cost guard as each run's config, or --set policy.cost_guard / drop_mode)\n\n",
                name.c_str(), runs.size(), runs.size() == 1 ? "" : "s", settings.size(),
                settings.size() == 1 ? "" : "s");
    std::printf("%-34s %-28s %8s %5s %7s %9s %10s %5s\n", "setting", "run", "epoch", "cut", "mode", "speedup",
                "saved", "held");
  }
  for (const auto& setting : settings) {
    json entry = {{"setting", setting}, {"runs", json::array()}};
    std::vector<double> epochs, speedups, cuts;
    std::size_t without = 0;
    for (const auto& run : runs) {
      const RunOutcome o = replay_one(host, run, a.policy, setting, own);
      const auto& d = o.result.drop;
      json r = {{"run", o.run},
                {"drop", drop_json(d)},
                {"held", o.result.held},
                {"points", o.result.decisions.size()},
                {"not_judged", o.result.not_judged}};
      if (own) {
        r["matches_logged"] = o.matches;
        if (!o.matches) r["mismatch"] = o.mismatch;
      }
      entry["runs"].push_back(r);
      if (d) {
        epochs.push_back(d->epoch);
        speedups.push_back(d->speedup);
        cuts.push_back(static_cast<double>(d->cut));
      } else {
        ++without;
        speedups.push_back(1.0);
      }
      if (!a.json) {
        char saved[32] = "-";
        if (d && d->seconds != 0) std::snprintf(saved, sizeof saved, "%.1fs", d->seconds);
        std::string label = core::first_line(setting_label(setting, a.sets.size()));
        const std::string run_name = run.dir.filename().string();
        if (d) {
          std::printf("%-34.34s %-28.28s %8.2f %5zu %7s %8.2fx %10s %5zu\n", label.c_str(), run_name.c_str(), d->epoch,
                      d->cut, d->mode.c_str(), d->speedup, saved, o.result.held.size());
        } else {
          std::printf("%-34.34s %-28.28s %8s %5s %7s %8.2fx %10s %5zu\n", label.c_str(), run_name.c_str(), "-", "-",
                      "none", 1.0, saved, o.result.held.size());
        }
        if (own) {
          std::printf("    the run's own policy: %s\n",
                      o.matches ? ("decisions identical to the logged ones at all " +
                                   std::to_string(o.result.decisions.size()) + " points fed")
                                      .c_str()
                                : ("differ: " + o.mismatch).c_str());
        }
        if (o.result.not_judged > 0 && d) {
          std::printf("    %lld later point%s not judged: after this drop a run trains another network\n",
                      static_cast<long long>(o.result.not_judged), o.result.not_judged == 1 ? "" : "s");
        } else if (o.result.not_judged > 0) {
          std::printf("    %lld point%s after the recorded run's own first drop not judged\n",
                      static_cast<long long>(o.result.not_judged), o.result.not_judged == 1 ? "" : "s");
        }
      }
    }
    entry["mean_speedup"] = mean(speedups);
    entry["speedup_sd"] = spread(speedups);
    entry["runs_without_drop"] = without;
    if (!epochs.empty()) {
      entry["mean_epoch"] = mean(epochs);
      entry["epoch_sd"] = spread(epochs);
      entry["mean_cut"] = mean(cuts);
    }
    if (!a.json && runs.size() > 1) {
      std::printf("%-34s %-28s %8s %5s %7s %5.2fx±%.2f %10s\n", "", "mean over runs",
                  epochs.empty() ? "-" : (std::to_string(mean(epochs)).substr(0, 5)).c_str(),
                  cuts.empty() ? "-" : std::to_string(mean(cuts)).substr(0, 4).c_str(),
                  without ? (std::to_string(without) + " none").c_str() : "", mean(speedups), spread(speedups), "");
    }
    out.push_back(entry);
  }
  if (a.json) std::cout << out.dump(2) << "\n";
  return 0;
}

}  // namespace ld::cli
