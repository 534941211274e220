#include "learndrop/core/suite.h"

#include <algorithm>
#include <cmath>
#include <map>

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
  return plugin_paths(base_tree(suite.root["base"], file));
}

Suite load_suite(const std::string& file, const PluginHost& host) {
  ConfigTree tree = load_config(file);
  const YAML::Node& root = tree.root;
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    static const std::vector<std::string> known = {"base", "output", "set", "matrix", "exclude", "baseline", "budget"};
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      throw Error(located(file, kv.first, key) +
                  ": unknown suite key (expected base, output, set, matrix, exclude, baseline, budget)");
    }
  }
  Suite suite;
  suite.file = file;
  suite.name = fs::path(file).stem().string();
  if (!root["output"].IsDefined()) throw Error(file + ": output: missing (the folder for runs, database and report)");
  suite.output = (fs::path(file).parent_path() / scalar(root["output"], located(file, root["output"], "output")))
                     .lexically_normal();
  const ConfigTree base = base_tree(root["base"], file);

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
    suite.budget = scalar(root["budget"], located(file, root["budget"], "budget"));
    if (suite.budget != "time" && suite.budget != "flops") {
      throw Error(located(file, root["budget"], "budget") + ": expected time or flops (what a budget-matched "
                  "baseline matches), got '" + suite.budget + "'");
    }
    if (baseline.empty()) {
      throw Error(located(file, root["budget"], "budget") + ": budget-matched baselines need a baseline");
    }
  }
  for (const auto& [k, v] : baseline) suite.baseline[k] = v;
  const BaselinePlan plan = plan_baseline(axes, baseline, file, root["baseline"]);
  const std::vector<long>& baseline_pos = plan.positions;
  const Assignment& baseline_extra = plan.extra;

  auto resolve = [&](const Assignment& values) {
    ConfigTree t;
    t.root = YAML::Clone(base.root);
    t.file = base.file;
    for (const auto& [k, v] : fixed) apply_override(t, k + "=" + v);
    for (const auto& [k, v] : values) apply_override(t, k + "=" + v);
    try {
      return resolve_config(t, host);
    } catch (const Error& e) {
      std::string which;
      for (const auto& [k, v] : values) which += (which.empty() ? "" : ", ") + k + "=" + v;
      throw Error(file + ": run {" + which + "}: " + e.what());
    }
  };

  // Cartesian product, last axis fastest.
  std::map<std::string, std::string> labels_by_hash;  // no two runs with one config
  std::vector<std::size_t> pos(axes.size(), 0);
  for (bool more = true; more;) {
    Assignment values;
    std::vector<std::string> labels;
    for (std::size_t a = 0; a < axes.size(); ++a) {
      const Assignment& v = axes[a].values[pos[a]];
      values.insert(values.end(), v.begin(), v.end());
      labels.push_back(axes[a].labels[pos[a]].empty() ? value_label(v) : axes[a].labels[pos[a]]);
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
      for (const auto& l : labels) run.label += (run.label.empty() ? "" : ".") + sanitize(l);
      run.config = resolve(values);
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
        run.baseline_hash = run.is_baseline ? run.hash : resolve(b).hash();
      }
      const auto [same, added] = labels_by_hash.emplace(run.hash, run.label);
      if (!added) {
        throw Error(file + ": runs " + same->second + " and " + run.label + " have the same effective config (hash " +
                    run.hash + "): they would train the same run into one folder");
      }
      suite.runs.push_back(std::move(run));
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
  if (suite.runs.empty()) throw Error(file + ": every run of the matrix is excluded");
  return suite;
}

std::int64_t budget_epochs(std::int64_t epochs, double run, double full) {
  if (!(full > 0) || !(run >= 0)) return epochs;
  const auto e = static_cast<std::int64_t>(std::llround(static_cast<double>(epochs) * run / full));
  return std::clamp<std::int64_t>(e, 1, epochs);
}

SuiteRun budget_run(const SuiteRun& baseline, std::int64_t epochs) {
  SuiteRun r = baseline;
  if (r.config.stream.enabled()) {
    // A stream trains fewer epochs after each arrival.
    r.config.stream.epochs = epochs;
    r.config.train.epochs = r.config.stream.parts * epochs;
    r.values.emplace_back("stream.epochs", std::to_string(epochs));
  } else {
    r.config.train.epochs = epochs;
  }
  r.values.emplace_back("train.epochs", std::to_string(r.config.train.epochs));
  r.label = baseline.label + ".budget" + std::to_string(epochs);
  r.hash = r.config.hash();
  r.effective_yaml = r.config.effective_yaml();
  r.is_baseline = false;
  r.baseline_hash = baseline.hash;
  return r;
}

}  // namespace ld::core
