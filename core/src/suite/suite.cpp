#include "learndrop/core/suite.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>

#include "learndrop/core/plugin_host.h"
#include "learndrop/core/text.h"
#include "learndrop/error.h"

namespace ld::core {

namespace fs = std::filesystem;

namespace {

using Assignment = std::vector<std::pair<std::string, std::string>>;

std::string scalar(const YAML::Node& node, const std::string& where) {
  if (!node.IsScalar()) throw Error(where + ": expected a scalar value");
  return node.Scalar();
}

std::string located(const std::string& file, const YAML::Node& node, const std::string& key) {
  std::string w = file;
  if (node.IsDefined() && node.Mark().line >= 0) w += ":" + std::to_string(node.Mark().line + 1);
  return w + ": " + key;
}

// Reads a mapping of dotted keys to scalars (an exclude entry, a named axis value, `set`).
// `label`, when given, receives the value of a `label:` key (named axis values).
Assignment assignments(const YAML::Node& node, const std::string& file, const std::string& what,
                       std::string* label = nullptr) {
  if (!node.IsMap()) throw Error(located(file, node, what) + ": expected a mapping of config keys to values");
  Assignment out;
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    if (label != nullptr && key == "label") {
      *label = scalar(kv.second, located(file, kv.second, what + ".label"));
      continue;
    }
    if (key.find('.') == std::string::npos) {
      throw Error(located(file, kv.first, what + "." + key) + ": expected a dotted config key such as train.epochs");
    }
    out.emplace_back(key, scalar(kv.second, located(file, kv.second, what + "." + key)));
  }
  return out;
}

struct Axis {
  std::string name;
  std::vector<Assignment> values;
  std::vector<std::string> labels;  // per value: its `label:` or "" (then the values joined)
};

std::string value_label(const Assignment& a) {
  std::string s;
  for (const auto& [k, v] : a) s += (s.empty() ? "" : "+") + v;
  return s;
}

std::string sanitize(std::string s) {
  for (char& c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '+')) c = '_';
  }
  return s;
}

ConfigTree base_tree(const YAML::Node& base, const std::string& file) {
  if (!base.IsDefined() || base.IsNull()) throw Error(file + ": base: missing (a config path or an inline mapping)");
  if (base.IsScalar()) {
    fs::path p = fs::path(file).parent_path() / base.Scalar();
    // The throwing fs::exists let a name too long for the file system escape
    // as std::filesystem_error (found by tools/fuzz.sh, suite target).
    std::error_code ec;
    const auto status = fs::status(p, ec);
    if (status.type() == fs::file_type::not_found) {
      throw Error(located(file, base, "base") + ": config " + p.string() + " does not exist");
    }
    if (ec) throw Error(located(file, base, "base") + ": cannot read config " + p.string() + ": " + ec.message());
    return load_config(p.string());
  }
  if (!base.IsMap()) throw Error(located(file, base, "base") + ": expected a config path or a mapping");
  ConfigTree t;
  t.root = YAML::Clone(base);
  t.file = file;
  return t;
}

// The matrix: its axes and their values (a dotted key's list, or a named
// axis's list of assignments), no value twice, at most 10,000 runs.
std::vector<Axis> read_matrix(const YAML::Node& matrix, const std::string& file) {
  std::vector<Axis> axes;
  if (!matrix.IsDefined() || !matrix.IsMap() || matrix.size() == 0) {
    throw Error(located(file, matrix, "matrix") + ": expected a mapping of config keys to lists of values");
  }
  for (const auto& kv : matrix) {
    Axis axis;
    axis.name = kv.first.as<std::string>();
    const std::string where = located(file, kv.second, "matrix." + axis.name);
    if (!kv.second.IsSequence() || kv.second.size() == 0) throw Error(where + ": expected a non-empty list of values");
    for (const auto& v : kv.second) {
      std::string label;
      if (axis.name.find('.') != std::string::npos) {
        axis.values.push_back({{axis.name, scalar(v, where)}});
      } else {
        axis.values.push_back(assignments(v, file, "matrix." + axis.name, &label));
      }
      axis.labels.push_back(label);
    }
    // A repeated value trained the same config twice into one run folder.
    for (std::size_t i = 0; i < axis.values.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        if (axis.values[i] == axis.values[j]) {
          throw Error(where + ": value " + std::to_string(i + 1) + " (" + value_label(axis.values[i]) +
                      ") repeats value " + std::to_string(j + 1));
        }
      }
    }
    axes.push_back(std::move(axis));
  }
  // Every run is resolved below: a matrix of a few long axes would take
  // hours and all memory before anything runs (found writing the suite fuzz target).
  constexpr std::size_t kMaxRuns = 10000;
  std::size_t runs = 1;
  std::string product;
  for (const auto& axis : axes) {
    runs = std::min(runs * axis.values.size(), kMaxRuns + 1);
    product += (product.empty() ? "" : " x ") + std::to_string(axis.values.size());
  }
  if (runs > kMaxRuns) {
    throw Error(located(file, matrix, "matrix") + ": expands to more than " + std::to_string(kMaxRuns) + " runs (" +
                product + " values); split it into several suites");
  }
  return axes;
}

// Where each run's baseline is: on each axis that sets a baseline key, the
// index of the value that matches the baseline; the baseline's other keys
// are added to every baseline run.
struct BaselinePlan {
  std::vector<long> positions;
  Assignment extra;
};
BaselinePlan plan_baseline(const std::vector<Axis>& axes, const Assignment& baseline, const std::string& file,
                           const YAML::Node& node) {
  std::map<std::string, std::string> wanted(baseline.begin(), baseline.end());
  BaselinePlan plan;
  std::vector<long>& baseline_pos = plan.positions;
  baseline_pos.assign(axes.size(), -1);
  Assignment& baseline_extra = plan.extra;
  baseline_extra = baseline;
  for (std::size_t a = 0; a < axes.size(); ++a) {
    bool touches = false;
    for (const auto& entry : baseline) {
      const std::string& k = entry.first;  // not a structured binding: C++17 lambdas cannot capture one
      for (const auto& value : axes[a].values) {
        touches = touches || std::any_of(value.begin(), value.end(), [&](const auto& kv) { return kv.first == k; });
      }
    }
    if (!touches) continue;
    for (std::size_t i = 0; i < axes[a].values.size() && baseline_pos[a] < 0; ++i) {
      const Assignment& value = axes[a].values[i];
      bool match = true;
      for (const auto& kv : value) {
        auto it = wanted.find(kv.first);
        if (it != wanted.end() && it->second != kv.second) match = false;
      }
      if (match) baseline_pos[a] = static_cast<long>(i);
    }
    if (baseline_pos[a] < 0) {
      throw Error(located(file, node, "baseline") + ": no value of matrix axis '" + axes[a].name +
                  "' matches the baseline");
    }
    const Assignment& chosen = axes[a].values[static_cast<std::size_t>(baseline_pos[a])];
    baseline_extra.erase(std::remove_if(baseline_extra.begin(), baseline_extra.end(),
                                        [&](const auto& kv) {
                                          return std::any_of(chosen.begin(), chosen.end(),
                                                             [&](const auto& c) { return c.first == kv.first; });
                                        }),
                         baseline_extra.end());
  }

  return plan;
}

}  // namespace

std::vector<std::string> suite_plugin_paths(const std::string& file) {
  ConfigTree suite = load_config(file);
  if (!suite.root["stages"].IsDefined()) return plugin_paths(base_tree(suite.root["base"], file));
  // Every stage's base (a malformed list is reported by load_suite).
  std::vector<std::string> out;
  if (!suite.root["stages"].IsSequence()) return out;
  for (const auto& stage : suite.root["stages"]) {
    if (!stage.IsMap()) continue;
    for (auto& p : plugin_paths(base_tree(stage["base"], file))) {
      if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    }
  }
  return out;
}

namespace {

const std::vector<std::string> kStageKeys = {"base", "set", "matrix", "exclude", "baseline", "budget", "compare"};

// Reads one stage (or a suite without stages) from `root`, appending its runs
// to `suite`. `file` names the suite file in messages.
void load_stage(const YAML::Node& root, const std::string& file, const std::string& stage_name, Suite& suite,
                const PluginHost& host) {
  const std::size_t stage_index = suite.stages.size();
  suite.stages.push_back({});
  SuiteStage& stage = suite.stages.back();
  stage.name = stage_name;
  const std::string where_prefix = stage_name.empty() ? "" : "stage " + stage_name + ": ";
  const ConfigTree base = base_tree(root["base"], file);
  const std::string suite_dir = fs::absolute(file).parent_path().string();

  Assignment fixed;
  if (root["set"].IsDefined()) fixed = assignments(root["set"], file, "set");

  const YAML::Node& matrix = root["matrix"];
  const std::vector<Axis> axes = read_matrix(matrix, file);
  // The keys the matrix sets: what exclude entries and the baseline may name.
  std::vector<std::string> axis_keys;
  for (const auto& axis : axes) {
    for (const auto& value : axis.values) {
      for (const auto& kv : value) {
        if (std::find(axis_keys.begin(), axis_keys.end(), kv.first) == axis_keys.end()) axis_keys.push_back(kv.first);
      }
    }
  }
  auto check_keys = [&](const Assignment& a, const YAML::Node& node, const std::string& what,
                        const std::string& consequence) {
    for (const auto& kv : a) {
      if (std::find(axis_keys.begin(), axis_keys.end(), kv.first) == axis_keys.end()) {
        throw Error(located(file, node, what) + ": '" + kv.first + "' is not a key the matrix sets" +
                    did_you_mean(kv.first, axis_keys) + " (" + consequence + "; the matrix sets " +
                    quoted_list(axis_keys) + ")");
      }
    }
  };
  std::vector<Assignment> excludes;
  if (root["exclude"].IsDefined()) {
    if (!root["exclude"].IsSequence()) throw Error(located(file, root["exclude"], "exclude") + ": expected a list");
    for (const auto& e : root["exclude"]) {
      excludes.push_back(assignments(e, file, "exclude"));
      check_keys(excludes.back(), e, "exclude", "the entry would exclude nothing");
    }
  }
  Assignment baseline;
  if (root["baseline"].IsDefined()) {
    baseline = assignments(root["baseline"], file, "baseline");
    check_keys(baseline, root["baseline"], "baseline", "every run would be paired with itself");
  }
  if (root["budget"].IsDefined()) {
    stage.budget = scalar(root["budget"], located(file, root["budget"], "budget"));
    if (stage.budget != "time" && stage.budget != "flops") {
      throw Error(located(file, root["budget"], "budget") + ": expected time or flops (what a budget-matched "
                  "baseline matches), got '" + stage.budget + "'");
    }
    if (baseline.empty()) {
      throw Error(located(file, root["budget"], "budget") + ": budget-matched baselines need a baseline");
    }
  }
  if (root["compare"].IsDefined()) {
    const YAML::Node& c = root["compare"];
    if (!c.IsSequence()) throw Error(located(file, c, "compare") + ": expected a list of freeze, freeze_all, probe");
    for (const auto& v : c) {
      const std::string what = scalar(v, located(file, v, "compare"));
      if (what != "freeze" && what != "freeze_all" && what != "probe") {
        throw Error(located(file, v, "compare") + ": expected freeze (the first K stages frozen from the start, K "
                    "matched to the run's time), freeze_all (one run for every K from 1 to the stages less one) or "
                    "probe (the head alone), got '" + what + "'" +
                    did_you_mean(what, {"freeze", "freeze_all", "probe"}));
      }
      stage.compare.push_back(what);
    }
    if (baseline.empty()) throw Error(located(file, c, "compare") + ": further baselines need a baseline");
  }
  for (const auto& [k, v] : baseline) stage.baseline[k] = v;
  const BaselinePlan plan = plan_baseline(axes, baseline, file, root["baseline"]);
  const std::vector<long>& baseline_pos = plan.positions;
  const Assignment& baseline_extra = plan.extra;

  // "@stage": the run of an earlier stage whose labels agree on the axes
  // both have; the value becomes that run's folder.
  using AxisLabels = std::vector<std::pair<std::string, std::string>>;
  auto refer = [&](const std::string& key, const std::string& value, const AxisLabels& labels,
                   std::vector<std::size_t>& needs) -> std::string {
    if (value.empty() || value[0] != '@') return value;
    const std::string name = value.substr(1);
    std::vector<std::string> earlier;
    long index = -1;
    for (std::size_t i = 0; i < stage_index; ++i) {
      earlier.push_back(suite.stages[i].name);
      if (suite.stages[i].name == name) index = static_cast<long>(i);
    }
    if (index < 0) {
      throw Error(file + ": " + where_prefix + key + ": '" + value + "' refers to stage '" + name +
                  "', which is not an earlier stage of this suite" +
                  (earlier.empty() ? std::string(" (it has none)") : " (earlier stages: " + quoted_list(earlier) + ")") +
                  did_you_mean(name, earlier));
    }
    std::vector<std::size_t> match;
    for (std::size_t r = 0; r < suite.runs.size(); ++r) {
      const SuiteRun& other = suite.runs[r];
      if (other.stage != static_cast<std::size_t>(index)) continue;
      bool agree = true;
      for (const auto& [axis, label] : labels) {
        for (const auto& [their_axis, their_label] : other.axes) {
          if (axis == their_axis && label != their_label) agree = false;
        }
      }
      if (agree) match.push_back(r);
    }
    std::string mine;
    for (const auto& [axis, label] : labels) mine += (mine.empty() ? "" : ", ") + axis + "=" + label;
    if (match.size() != 1) {
      throw Error(file + ": " + where_prefix + key + ": '" + value + "' for the run with " + mine + " matches " +
                  std::to_string(match.size()) + " runs of stage '" + name +
                  "' (a reference picks the one run whose matrix labels agree on the axes both stages have)");
    }
    needs.push_back(match[0]);
    return fs::absolute(run_folder(suite, suite.runs[match[0]])).lexically_normal().string();
  };

  auto resolve = [&](const Assignment& values, const AxisLabels& labels, std::vector<std::size_t>& needs) {
    ConfigTree t;
    t.root = YAML::Clone(base.root);
    t.file = base.file;
    try {
      // A reference becomes the run's folder, set as a value: never read
      // as YAML, where a " #" in the suite's output path began a comment.
      auto set = [&](const std::string& k, const std::string& v) {
        const std::string resolved = refer(k, v, labels, needs);
        if (resolved != v) {
          set_value(t, k, YAML::Node(resolved), file + ": " + k);
        } else {
          apply_override(t, k + "=" + v, suite_dir);  // a relative path: against the suite file's folder
        }
      };
      for (const auto& [k, v] : fixed) set(k, v);
      for (const auto& [k, v] : values) set(k, v);
      return resolve_config(t, host);
    } catch (const Error& e) {
      std::string which;
      for (const auto& [k, v] : values) which += (which.empty() ? "" : ", ") + k + "=" + v;
      const std::string what = e.what();
      if (what.rfind(file + ": ", 0) == 0) throw;  // a reference error names the suite already
      throw Error(file + ": " + where_prefix + "run {" + which + "}: " + what);
    }
  };

  // Cartesian product, last axis fastest.
  std::map<std::string, std::string> labels_by_hash;  // no two runs with one config
  for (const auto& r : suite.runs) labels_by_hash.emplace(r.hash, r.label);
  std::vector<std::size_t> pos(axes.size(), 0);
  bool any = false;
  for (bool more = true; more;) {
    Assignment values;
    std::vector<std::string> labels;
    AxisLabels axis_labels;
    for (std::size_t a = 0; a < axes.size(); ++a) {
      const Assignment& v = axes[a].values[pos[a]];
      values.insert(values.end(), v.begin(), v.end());
      labels.push_back(axes[a].labels[pos[a]].empty() ? value_label(v) : axes[a].labels[pos[a]]);
      axis_labels.emplace_back(axes[a].name, labels.back());
    }
    auto has = [&](const std::pair<std::string, std::string>& kv) {
      return std::find(values.begin(), values.end(), kv) != values.end();
    };
    bool excluded = std::any_of(excludes.begin(), excludes.end(),
                                [&](const Assignment& e) { return std::all_of(e.begin(), e.end(), has); });
    if (excluded) {
      ++suite.excluded;
    } else {
      SuiteRun run;
      run.values = values;
      run.stage = stage_index;
      run.axes = axis_labels;
      run.label = stage_name.empty() ? "" : sanitize(stage_name);
      for (const auto& l : labels) run.label += (run.label.empty() ? "" : ".") + sanitize(l);
      run.config = resolve(values, axis_labels, run.needs);
      run.hash = run.config.hash();
      run.effective_yaml = run.config.effective_yaml();
      if (!baseline.empty()) {
        run.is_baseline = std::all_of(baseline.begin(), baseline.end(), has);
        // The baseline: the same matrix point with the baseline's value on
        // the axes that set baseline keys (a whole named-axis value, so keys
        // that only the drop policy accepts go with it).
        Assignment b;
        for (std::size_t a = 0; a < axes.size(); ++a) {
          const std::size_t i = baseline_pos[a] >= 0 ? static_cast<std::size_t>(baseline_pos[a]) : pos[a];
          b.insert(b.end(), axes[a].values[i].begin(), axes[a].values[i].end());
        }
        b.insert(b.end(), baseline_extra.begin(), baseline_extra.end());
        std::vector<std::size_t> unused;
        run.baseline_hash = run.is_baseline ? run.hash : resolve(b, axis_labels, unused).hash();
      }
      const auto [same, added] = labels_by_hash.emplace(run.hash, run.label);
      if (!added) {
        throw Error(file + ": runs " + same->second + " and " + run.label + " have the same effective config (hash " +
                    run.hash + "): they would train the same run into one folder");
      }
      suite.runs.push_back(std::move(run));
      any = true;
    }
    // Advance the odometer.
    more = false;
    for (std::size_t a = axes.size(); a-- > 0;) {
      if (++pos[a] < axes[a].values.size()) {
        more = true;
        break;
      }
      pos[a] = 0;
    }
  }
  if (!any) throw Error(file + ": " + where_prefix + "every run of the matrix is excluded");
}

void check_keys_of(const YAML::Node& node, const std::string& file, const std::vector<std::string>& known,
                   const std::string& what) {
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      throw Error(located(file, kv.first, key) + ": unknown " + what + " key" + did_you_mean(key, known) +
                  " (expected " + quoted_list(known) + ")");
    }
  }
}

}  // namespace

fs::path run_folder(const Suite& suite, const SuiteRun& run) {
  return suite.output / "runs" / (run.label + "-" + run.hash.substr(0, 8));
}

Suite load_suite(const std::string& file, const PluginHost& host) {
  ConfigTree tree = load_config(file);
  const YAML::Node& root = tree.root;
  const bool staged = root["stages"].IsDefined();
  std::vector<std::string> known = {"output"};
  if (staged) {
    known.push_back("stages");
  } else {
    known.insert(known.end(), kStageKeys.begin(), kStageKeys.end());
  }
  check_keys_of(root, file, known, "suite");
  Suite suite;
  suite.file = file;
  suite.name = fs::path(file).stem().string();
  if (!root["output"].IsDefined()) throw Error(file + ": output: missing (the folder for runs, database and report)");
  suite.output = (fs::path(file).parent_path() / scalar(root["output"], located(file, root["output"], "output")))
                     .lexically_normal();
  if (!staged) {
    load_stage(root, file, "", suite, host);
    return suite;
  }
  const YAML::Node& stages = root["stages"];
  if (!stages.IsSequence() || stages.size() == 0) {
    throw Error(located(file, stages, "stages") + ": expected a list of stages, each with a name, a base and a matrix");
  }
  std::vector<std::string> names;
  for (const auto& node : stages) {
    if (!node.IsMap()) throw Error(located(file, node, "stages") + ": expected a mapping (name, base, matrix, ...)");
    std::vector<std::string> stage_keys = kStageKeys;
    stage_keys.insert(stage_keys.begin(), "name");
    check_keys_of(node, file, stage_keys, "stage");
    if (!node["name"].IsDefined()) throw Error(located(file, node, "stages") + ": a stage without a name");
    const std::string name = scalar(node["name"], located(file, node["name"], "name"));
    static const std::regex safe("[A-Za-z0-9_][A-Za-z0-9_-]{0,63}");
    if (!std::regex_match(name, safe)) {
      throw Error(located(file, node["name"], "name") + ": expected a stage name of letters, digits, '_' or '-', got '" +
                  name + "'");
    }
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      throw Error(located(file, node["name"], "name") + ": stage '" + name + "' appears twice");
    }
    names.push_back(name);
    load_stage(node, file, name, suite, host);
  }
  return suite;
}

SuiteRun freeze_run(const SuiteRun& baseline, const std::string& stages) {
  SuiteRun r = baseline;
  r.config.model_freeze = stages;
  r.values.emplace_back("model.freeze", stages);
  r.label = baseline.label + (stages == "all" ? ".probe" : ".freeze" + stages);
  r.hash = r.config.hash();
  r.effective_yaml = r.config.effective_yaml();
  r.is_baseline = false;
  r.baseline_hash = baseline.hash;
  return r;
}

std::size_t freeze_stages_for(double ratio, const std::vector<std::int64_t>& stage_flops, std::int64_t head_flops) {
  double all = static_cast<double>(head_flops);
  for (auto f : stage_flops) all += static_cast<double>(f);
  std::size_t best = 0;
  double best_gap = 1e300, frozen = 0;
  for (std::size_t k = 0; k < stage_flops.size(); ++k) {
    // Per image: the first k stages forward only, the rest forward and backward.
    const double cost = (frozen + 3.0 * (all - frozen)) / (3.0 * all);
    if (std::abs(cost - ratio) < best_gap) {
      best_gap = std::abs(cost - ratio);
      best = k;
    }
    frozen += static_cast<double>(stage_flops[k]);
  }
  return best;
}

std::int64_t budget_epochs(std::int64_t epochs, double run, double full) {
  if (!(full > 0) || !(run >= 0)) return epochs;
  const auto e = static_cast<std::int64_t>(std::llround(static_cast<double>(epochs) * run / full));
  return std::clamp<std::int64_t>(e, 1, epochs);
}

SuiteRun budget_run(const SuiteRun& baseline, std::int64_t epochs) {
  SuiteRun r = baseline;
  // A stream trains fewer epochs after each arrival.
  if (r.config.stream.enabled()) {
    r.config.stream.epochs = epochs;
    r.values.emplace_back("stream.epochs", std::to_string(epochs));
  }
  r.config.train.epochs = r.config.stream.total_epochs(epochs);
  r.values.emplace_back("train.epochs", std::to_string(r.config.train.epochs));
  r.label = baseline.label + ".budget" + std::to_string(epochs);
  r.hash = r.config.hash();
  r.effective_yaml = r.config.effective_yaml();
  r.is_baseline = false;
  r.baseline_hash = baseline.hash;
  return r;
}

}  // namespace ld::core
