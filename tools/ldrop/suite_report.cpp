// ldrop suite report: the paper-shaped table, CSV and plots from results.db.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include <spdlog/spdlog.h>

#include "commands.h"
#include "learndrop/core/files.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/results_db.h"
#include "learndrop/core/suite.h"
#include "learndrop/error.h"

#ifndef LEARNDROP_SOURCE_DIR
#define LEARNDROP_SOURCE_DIR ""
#endif

namespace ld::cli {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Stat {
  double mean = 0, std = 0;
  std::size_t n = 0;
};

Stat stat(const std::vector<double>& v) {
  Stat s;
  s.n = v.size();
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(ss / static_cast<double>(v.size() - 1));  // sample standard deviation
  }
  return s;
}

std::string pm(const Stat& s, double scale, int digits) {
  char buf[64];
  if (s.n > 1) {
    std::snprintf(buf, sizeof buf, "%.*f ± %.*f", digits, s.mean * scale, digits, s.std * scale);
  } else {
    std::snprintf(buf, sizeof buf, "%.*f", digits, s.mean * scale);
  }
  return buf;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// Finished runs, the newest record of each config hash.
std::vector<core::RunRecord> latest_finished(const std::vector<core::RunRecord>& all) {
  std::map<std::string, core::RunRecord> by_hash;
  for (const auto& r : all) {
    if (r.status == "finished") by_hash[r.config_hash] = r;  // ids ascend: the last one wins
  }
  std::vector<core::RunRecord> out;
  for (auto& [h, r] : by_hash) out.push_back(r);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

}  // namespace

ReportTable build_report(const std::vector<core::RunRecord>& records) {
  ReportTable t;
  const auto runs = latest_finished(records);
  std::map<std::string, const core::RunRecord*> by_hash;
  for (const auto& r : runs) by_hash[r.config_hash] = &r;
  struct Acc {
    std::vector<double> acc_full, acc, time_full, time, speedup, flops, dropped, acc_budget, budget_epochs, self,
        acc_freeze, freeze_stages, acc_probe;
    std::int64_t stages = 0;
    std::vector<std::string> full_runs, drop_runs, budget_runs, freeze_runs;
  };
  // Runs that differ only in their seed form one row. The setting column
  // holds the matrix values that still tell apart runs of the same model,
  // data set and policy (e.g. two widths); values fixed by those three are
  // left out.
  using Key = std::tuple<std::string, std::string, std::string>;
  auto key_of = [](const json& s) {
    return Key{s["model"].get<std::string>(), s["dataset"].get<std::string>(), s["policy"].get<std::string>()};
  };
  std::map<Key, std::map<std::string, std::set<std::string>>> seen;
  // A key that some runs of a group set and others do not (a named axis
  // value setting extra keys) also tells them apart: "unset" is a value.
  const std::string unset = "\x01unset";
  std::map<Key, std::vector<json>> group_values;
  for (const auto& r : runs) {
    if (r.is_baseline || !r.role.empty()) continue;
    group_values[key_of(json::parse(r.summary_json))].push_back(json::parse(r.values_json));
  }
  for (const auto& [key, list] : group_values) {
    auto& keys = seen[key];
    for (const auto& values : list) {
      for (const auto& [k, v] : values.items()) keys[k];
    }
    for (const auto& values : list) {
      for (auto& [k, set] : keys) set.insert(values.contains(k) ? values[k].get<std::string>() : unset);
    }
  }
  std::map<std::tuple<std::string, std::string, std::string, std::string>, Acc> groups;
  std::vector<std::tuple<std::string, std::string, std::string, std::string>> order;  // first appearance
  for (const auto& r : runs) {
    if (r.is_baseline || !r.role.empty() || r.baseline_hash.empty()) continue;
    auto b = by_hash.find(r.baseline_hash);
    if (b == by_hash.end()) continue;  // baseline not finished (yet)
    json s = json::parse(r.summary_json), bs = json::parse(b->second->summary_json);
    std::string setting;
    const json values = json::parse(r.values_json);
    const auto& varying = seen[key_of(s)];
    for (const auto& [k, v] : values.items()) {
      if (k == "experiment.seed" || varying.at(k).size() < 2) continue;
      setting += (setting.empty() ? "" : ", ") + k + "=" + v.get<std::string>();
    }
    const auto group = std::make_tuple(s["model"].get<std::string>(), s["dataset"].get<std::string>(), setting,
                                       s["policy"].get<std::string>());
    if (groups.count(group) == 0) order.push_back(group);
    Acc& g = groups[group];
    g.acc_full.push_back(bs["test_accuracy"].get<double>());
    g.acc.push_back(s["test_accuracy"].get<double>());
    g.time_full.push_back(bs["train_seconds"].get<double>());
    g.time.push_back(s["train_seconds"].get<double>());
    g.speedup.push_back(bs["train_seconds"].get<double>() / s["train_seconds"].get<double>());
    g.flops.push_back(s["flops_reduction"].get<double>());
    g.dropped.push_back(s["dropped_stages"].get<double>());
    g.stages = s["num_stages"].get<std::int64_t>();
    g.full_runs.push_back(b->second->config_hash);
    g.drop_runs.push_back(r.config_hash);
    auto budget = r.budget_hash.empty() ? by_hash.end() : by_hash.find(r.budget_hash);
    if (budget != by_hash.end()) {
      const json bud = json::parse(budget->second->summary_json);
      g.acc_budget.push_back(bud["test_accuracy"].get<double>());
      g.budget_epochs.push_back(bud["epochs"].get<double>());
      g.budget_runs.push_back(r.budget_hash);
      t.has_budget = true;
    }
    if (s.contains("self_speedup") && s["self_speedup"].is_number()) g.self.push_back(s["self_speedup"].get<double>());
    const json compare = json::accept(r.compare_json) ? json::parse(r.compare_json) : json::object();
    for (const char* role : {"freeze", "probe"}) {
      auto other = compare.contains(role) ? by_hash.find(compare[role].get<std::string>()) : by_hash.end();
      if (other == by_hash.end()) continue;
      const json o = json::parse(other->second->summary_json);
      if (std::string(role) == "freeze") {
        g.acc_freeze.push_back(o["test_accuracy"].get<double>());
        g.freeze_stages.push_back(o.value("frozen_from_start", 0.0));
        g.freeze_runs.push_back(other->second->config_hash);
        t.has_freeze = true;
      } else {
        g.acc_probe.push_back(o["test_accuracy"].get<double>());
        t.has_probe = true;
      }
    }
  }
  for (const auto& key : order) {
    const Acc& g = groups.at(key);
    ReportRow row;
    std::tie(row.model, row.dataset, row.setting, row.policy) = key;
    row.seeds = g.acc.size();
    row.acc_full = stat(g.acc_full).mean;
    row.acc_full_std = stat(g.acc_full).std;
    row.acc = stat(g.acc).mean;
    row.acc_std = stat(g.acc).std;
    row.time_full = stat(g.time_full).mean;
    row.time = stat(g.time).mean;
    row.speedup = stat(g.speedup).mean;
    row.flops_reduction = stat(g.flops).mean;
    row.dropped = stat(g.dropped).mean;
    row.stages = g.stages;
    row.budget_seeds = g.acc_budget.size();
    row.acc_budget = stat(g.acc_budget).mean;
    row.acc_budget_std = stat(g.acc_budget).std;
    row.budget_epochs = stat(g.budget_epochs).mean;
    row.self_seeds = g.self.size();
    row.self_speedup = stat(g.self).mean;
    row.self_speedup_std = stat(g.self).std;
    row.freeze_seeds = g.acc_freeze.size();
    row.acc_freeze = stat(g.acc_freeze).mean;
    row.acc_freeze_std = stat(g.acc_freeze).std;
    row.freeze_stages = stat(g.freeze_stages).mean;
    row.probe_seeds = g.acc_probe.size();
    row.acc_probe = stat(g.acc_probe).mean;
    row.acc_probe_std = stat(g.acc_probe).std;
    row.full_runs = g.full_runs;
    row.drop_runs = g.drop_runs;
    row.budget_runs = g.budget_runs;
    row.freeze_runs = g.freeze_runs;
    row.text = {row.model,
                row.dataset,
                row.setting.empty() ? "-" : row.setting,
                row.policy,
                std::to_string(row.seeds),
                pm(stat(g.acc_full), 100, 2),
                pm(stat(g.acc), 100, 2),
                pm(stat(g.time_full), 1, 1),
                pm(stat(g.time), 1, 1),
                pm(stat(g.speedup), 1, 2) + "x",
                g.self.empty() ? "-" : pm(stat(g.self), 1, 2) + "x",
                pm(stat(g.flops), 100, 1) + "%",
                pm(stat(g.dropped), 1, 1) + " / " + std::to_string(g.stages)};
    t.rows.push_back(row);
  }
  if (t.has_budget) {
    // Two more columns after the drop accuracy: the budget-matched baseline
    // and the epochs it trained.
    for (auto& row : t.rows) {
      const bool any = row.budget_seeds > 0;
      char epochs[32];
      std::snprintf(epochs, sizeof epochs, "%.1f", row.budget_epochs);
      Stat b;
      b.mean = row.acc_budget;
      b.std = row.acc_budget_std;
      b.n = row.budget_seeds;
      row.text.insert(row.text.begin() + 7, any ? pm(b, 100, 2) : "-");
      row.text.insert(row.text.begin() + 8, any ? epochs : "-");
    }
  }
  // Then the fixed partial freezing (with its mean K) and the linear probe.
  const std::size_t after = t.has_budget ? 9 : 7;
  for (auto& row : t.rows) {
    std::size_t at = after;
    if (t.has_freeze) {
      Stat f;
      f.mean = row.acc_freeze;
      f.std = row.acc_freeze_std;
      f.n = row.freeze_seeds;
      char k[32];
      std::snprintf(k, sizeof k, " (K %.1f)", row.freeze_stages);
      row.text.insert(row.text.begin() + static_cast<std::ptrdiff_t>(at++), f.n ? pm(f, 100, 2) + k : "-");
    }
    if (t.has_probe) {
      Stat pr;
      pr.mean = row.acc_probe;
      pr.std = row.acc_probe_std;
      pr.n = row.probe_seeds;
      row.text.insert(row.text.begin() + static_cast<std::ptrdiff_t>(at++), pr.n ? pm(pr, 100, 2) : "-");
    }
  }
  for (const auto& r : records) {
    if (r.status == "failed") t.failed.push_back(r.label + ": " + r.error);
  }
  return t;
}

int suite_report(const core::PluginHost& host, const std::string& input, const std::string& out_arg) {
  fs::path db_path = input;
  if (fs::path(input).extension() != ".db") db_path = core::load_suite(input, host).output / "results.db";
  if (!fs::exists(db_path)) throw Error("suite report: no results database at " + db_path.string());
  core::ResultsDb db(db_path, core::ResultsDb::Mode::kReadOnly);
  const auto records = db.runs();
  for (const auto& r : records) {
    if (r.status == "failed" && r.error.rfind("results database ", 0) == 0) spdlog::warn("{}; left out", r.error);
  }
  const ReportTable table = build_report(records);
  const fs::path out = out_arg.empty() ? db_path.parent_path() / "report" : fs::path(out_arg);
  fs::create_directories(out);

  // CSV: one row per finished run.
  std::ostringstream csv;
  csv << "label,config_hash,code_version,is_baseline,role,model,dataset,policy,seed,epochs,test_accuracy,"
         "train_seconds,wall_seconds,forward_flops,forward_flops_full,flops_reduction,dropped_stages,num_stages\n";
  std::map<std::string, const core::RunRecord*> by_hash;
  const auto finished = latest_finished(records);
  for (const auto& r : finished) by_hash[r.config_hash] = &r;
  for (const auto& r : finished) {
    json s = json::parse(r.summary_json);
    csv << csv_field(r.label) << ',' << r.config_hash << ',' << r.code_version << ',' << (r.is_baseline ? 1 : 0) << ','
        << r.role << ',' << csv_field(s["model"]) << ',' << csv_field(s["dataset"]) << ','
        << csv_field(s["policy"]) << ',' << s["seed"] << ',' << s["epochs"] << ',' << s["test_accuracy"] << ','
        << s["train_seconds"] << ',' << s["wall_seconds"] << ',' << s["forward_flops"] << ','
        << s["forward_flops_full"] << ',' << s["flops_reduction"] << ',' << s["dropped_stages"] << ','
        << s["num_stages"] << '\n';
  }
  core::atomic_write(out / "runs.csv", csv.str());
  // Plot data: per report row, the epochs of its full, drop and budget runs.
  auto curves = [&](const std::vector<std::string>& hashes) {
    json list = json::array();
    std::set<std::string> seen;
    for (const auto& h : hashes) {
      if (!seen.insert(h).second) continue;  // one full run may pair with several drop runs
      json epochs = json::array();
      for (const auto& e : by_hash.at(h)->epochs_json) epochs.push_back(json::parse(e));
      list.push_back({{"label", by_hash.at(h)->label}, {"epochs", epochs}});
    }
    return list;
  };
  json plot = json::array();
  for (const auto& row : table.rows) {
    plot.push_back({{"model", row.model},
                    {"dataset", row.dataset},
                    {"setting", row.setting},
                    {"policy", row.policy},
                    {"full", curves(row.full_runs)},
                    {"drop", curves(row.drop_runs)},
                    {"budget", curves(row.budget_runs)},
                    {"freeze", curves(row.freeze_runs)}});
  }
  core::atomic_write(out / "plot_data.json", plot.dump());

  // Plots with matplotlib (python3-matplotlib), when present.
  std::vector<std::string> pngs;
  fs::path script = fs::path(LEARNDROP_SOURCE_DIR) / "tools" / "plot_suite.py";
  if (!fs::exists(script)) {  // installed: <prefix>/bin/ldrop and <prefix>/share/learndrop/plot_suite.py
    std::error_code ec;
    script = fs::read_symlink("/proc/self/exe", ec).parent_path().parent_path() / "share/learndrop/plot_suite.py";
  }
  std::string plot_note;
  if (fs::exists(script)) {
    const std::string cmd =
        "/usr/bin/python3 " + script.string() + " " + (out / "plot_data.json").string() + " " + out.string() + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    std::string output;
    char buf[512];
    while (p && std::fgets(buf, sizeof buf, p)) output += buf;
    const int rc = p ? pclose(p) : -1;
    std::istringstream lines(output);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.size() > 4 && line.substr(line.size() - 4) == ".png") pngs.push_back(line);
    }
    if (rc != 0) plot_note = "plots skipped: " + output.substr(0, output.find('\n'));
  } else {
    plot_note = "plots skipped: tools/plot_suite.py not found";
  }

  std::ostringstream md;
  md << "# Suite report\n\n";
  md << "Database `" << db_path.string() << "`: " << records.size() << " run records, " << finished.size()
     << " finished configs, " << table.failed.size() << " failed records.\n\n";
  md << "Accuracy is the test accuracy of the full model after the last epoch (mean ± sample std over seeds); time is "
        "training time (epochs, cache builds included, evaluation excluded); speedup = full / Learn&Drop time, "
        "averaged over seed pairs; self speedup = the drop run's training images at the speed of its own full-training "
        "epochs (cut 0, before its first drop) over its training time, which the drift between separate runs does "
        "not move; forward-FLOP reduction counts training forward passes against the same steps without drops.";
  if (table.has_budget) {
    md << " The budget-matched baseline is full training with its epochs cut to the drop run's budget (rounded to "
          "whole epochs, or epochs per arrival of a stream; the learning-rate schedule follows the shorter run): what "
          "a user would do instead.";
  }
  if (table.has_freeze) {
    md << " Fixed partial freezing: the baseline with its first K stages frozen from the start (forward only, real "
          "augmentation), K chosen so that its predicted time matches the drop run's.";
  }
  if (table.has_probe) md << " Probe: the baseline with every stage frozen, the head trained alone.";
  md << "\n\n";
  std::vector<std::string> head = {"model",         "dataset",         "setting",         "policy",
                                   "seeds",         "accuracy full %", "accuracy drop %", "time full [s]",
                                   "time drop [s]", "speedup",         "self speedup",    "forward FLOPs −",
                                   "dropped stages"};
  if (table.has_budget) {
    head.insert(head.begin() + 7, "accuracy budget %");
    head.insert(head.begin() + 8, "budget epochs");
  }
  std::size_t at = table.has_budget ? 9 : 7;
  if (table.has_freeze) head.insert(head.begin() + static_cast<std::ptrdiff_t>(at++), "accuracy freeze %");
  if (table.has_probe) head.insert(head.begin() + static_cast<std::ptrdiff_t>(at++), "accuracy probe %");
  md << "|";
  for (const auto& h : head) md << ' ' << h << " |";
  md << "\n|";
  for (std::size_t i = 0; i < head.size(); ++i) md << " --- |";
  md << "\n";
  for (const auto& row : table.rows) {
    md << "|";
    for (const auto& c : row.text) md << ' ' << c << " |";
    md << "\n";
  }
  if (table.rows.empty()) md << "\n(no Learn&Drop run with a finished baseline yet)\n";
  // Streams: the test accuracy after each arrival, mean over seeds, of every
  // kind of run of each row.
  bool streams = false;
  std::ostringstream arrivals;
  for (const auto& row : table.rows) {
    const std::vector<std::pair<std::string, const std::vector<std::string>*>> kinds = {
        {"full", &row.full_runs}, {row.policy, &row.drop_runs}, {"budget", &row.budget_runs},
        {"freeze", &row.freeze_runs}};
    for (const auto& [kind, hashes] : kinds) {
      std::map<std::int64_t, std::vector<double>> per;
      std::set<std::string> seen_runs;
      for (const auto& h : *hashes) {
        if (!seen_runs.insert(h).second || !by_hash.count(h)) continue;
        const json s = json::parse(by_hash.at(h)->summary_json);
        if (!s.contains("arrival_accuracy") || !s["arrival_accuracy"].is_array()) continue;
        for (std::size_t k = 0; k < s["arrival_accuracy"].size(); ++k) {
          if (s["arrival_accuracy"][k].is_number()) per[static_cast<std::int64_t>(k + 1)].push_back(s["arrival_accuracy"][k].get<double>());
        }
      }
      if (per.empty()) continue;
      if (!streams) {
        arrivals << "\n## Accuracy after each arrival\n\nTest accuracy % after each part of the stream (mean ± std over "
                    "seeds).\n\n| model | setting | run | after part 1, 2, … |\n| --- | --- | --- | --- |\n";
        streams = true;
      }
      arrivals << "| " << row.model << " | " << (row.setting.empty() ? "-" : row.setting) << " | " << kind << " | ";
      bool first = true;
      for (const auto& [k, v] : per) {
        arrivals << (first ? "" : ", ") << pm(stat(v), 100, 2);
        first = false;
      }
      arrivals << " |\n";
    }
  }
  md << arrivals.str();
  if (!table.failed.empty()) {
    md << "\nFailed runs:\n\n";
    for (const auto& f : table.failed) md << "- " << f << "\n";
  }
  md << "\nPer-run values: [runs.csv](runs.csv).\n";
  if (!pngs.empty()) {
    md << "\n## Plots\n\n";
    for (const auto& png : pngs) md << "![" << png << "](" << png << ")\n\n";
  }
  if (!plot_note.empty()) md << "\n(" << plot_note << ")\n";
  core::atomic_write(out / "report.md", md.str());
  std::printf("%s", md.str().c_str());
  std::printf("\nreport written to %s (report.md, runs.csv%s)\n", out.string().c_str(), pngs.empty() ? "" : ", plots");
  return 0;
}

}  // namespace ld::cli
