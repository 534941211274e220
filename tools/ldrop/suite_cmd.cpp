// ldrop suite run / report.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "learndrop/core/checkpoint.h"
#include "learndrop/core/files.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/results_db.h"
#include "learndrop/core/run.h"
#include "learndrop/core/suite.h"
#include "learndrop/core/text.h"
#include "learndrop/error.h"
#include "learndrop_version.h"

namespace ld::cli {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_suite_signal(int sig) { g_stop = sig; }

std::string short_hash(const std::string& h) { return h.substr(0, 8); }


std::string self_exe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "ldrop" : p.string();
}

// The last "error: ..." line of a log, for the database.
std::string error_from_log(const fs::path& log, int status) {
  std::ifstream in(log);
  std::string line, last;
  while (std::getline(in, line)) {
    auto at = line.find("error: ");
    if (at != std::string::npos) last = line.substr(at + 7);
  }
  if (!last.empty()) return last;
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "exit code " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

struct Active {
  std::size_t index = 0;  // into the runs being launched (the matrix, then budget-matched baselines)
  std::int64_t db_id = 0;
  std::chrono::steady_clock::time_point start;
  fs::path out_dir, log;
  bool resumed = false;  // went on from the run folder's checkpoint
};

}  // namespace

const char* code_version() { return LEARNDROP_CODE_VERSION; }

int suite_run(const core::PluginHost& host, const SuiteRunArgs& a) {
  core::Suite suite = core::load_suite(a.file, host);
  const std::string version = code_version();
  const fs::path db_path = suite.output / "results.db";
  std::unique_ptr<core::ResultsDb> db;
  // One suite process per output: a second one (a rerun, or another suite
  // writing there) would start the runs this one is training again, in the
  // same folders (issue 31, defect 1).
  std::unique_ptr<core::FileLock> suite_lock;
  if (!a.dry_run) {
    fs::create_directories(suite.output);
    std::string holder;
    suite_lock = core::FileLock::try_take(suite.output / ".suite.lock", &holder);
    if (!suite_lock) {
      throw Error("suite output " + suite.output.string() + " is in use by another 'ldrop suite run' (process " +
                  holder + "); wait for it to end, or give this suite another output");
    }
  }
  if (!a.dry_run || fs::exists(db_path)) db = std::make_unique<core::ResultsDb>(db_path);  // the output exists
  // A run that finished while results.db was locked past the wait is
  // still 'running' in it, its summary in its folder: recorded now.
  if (db && !a.dry_run) {
    for (const auto& rec : db->runs()) {
      if (rec.status != "running" || rec.code_version != version) continue;
      const fs::path dir = rec.out_dir;
      std::string holder;
      if (!fs::exists(dir / "summary.json") || !core::FileLock::try_take(dir / ".lock", &holder)) continue;
      const std::string text = core::read_file(dir / "summary.json");
      const json s = json::parse(text, nullptr, false);
      if (s.is_discarded() || s.value("config_hash", "") != rec.config_hash) continue;
      db->finish(rec.id, text, read_lines(dir / "metrics.jsonl"));
      std::printf("[recorded] %s: finished earlier; its summary read from %s\n", rec.label.c_str(), dir.c_str());
    }
  }
  std::vector<bool> done(suite.runs.size(), false);
  std::size_t skipped = 0;
  for (std::size_t i = 0; i < suite.runs.size(); ++i) {
    done[i] = db && db->finished(suite.runs[i].hash, version);
    skipped += done[i];
  }
  // Shared prefixes: a run that differs from its baseline only in the policy
  // trains exactly as the baseline until its first drop, so it branches from
  // the baseline's kept epoch checkpoint before that drop (ldrop run
  // --branch-from), and the baseline keeps its epoch checkpoints.
  std::vector<std::ptrdiff_t> branch_of(suite.runs.size(), -1);
  std::vector<bool> keeps(suite.runs.size(), false);
  if (!a.no_share) {
    std::map<std::string, std::size_t> index_of;
    for (std::size_t i = 0; i < suite.runs.size(); ++i) index_of[suite.runs[i].hash] = i;
    for (std::size_t i = 0; i < suite.runs.size(); ++i) {
      const core::SuiteRun& r = suite.runs[i];
      if (r.is_baseline || r.baseline_hash.empty() || !index_of.count(r.baseline_hash) || done[i]) continue;
      const std::size_t b = index_of[r.baseline_hash];
      if (!core::difference_outside_policy(suite.runs[b].effective_yaml, r.config).empty()) continue;
      branch_of[i] = static_cast<std::ptrdiff_t>(b);
      keeps[b] = true;
    }
  }
  std::printf("suite %s: %zu runs (%zu excluded), %zu already finished with code %s; output %s\n", suite.name.c_str(),
              suite.runs.size(), suite.excluded, skipped, version.c_str(), suite.output.string().c_str());
  for (std::size_t i = 0; i < suite.runs.size(); ++i) {
    const auto& r = suite.runs[i];
    std::printf("  %3zu  %-48s %s  %s%s%s\n", i + 1, r.label.c_str(), short_hash(r.hash).c_str(),
                done[i] ? "finished, skipped" : "to run", r.is_baseline ? "  (baseline)" : "",
                branch_of[i] >= 0 ? ("  (branches from " + std::to_string(branch_of[i] + 1) + ")").c_str() : "");
  }
  for (const auto& stage : suite.stages) {
    const std::string in = stage.name.empty() ? "" : " in stage " + stage.name;
    if (!stage.budget.empty()) {
      std::printf("then a budget-matched baseline for each run with a baseline%s: full training cut to the run's %s\n",
                  in.c_str(), stage.budget == "time" ? "training time" : "forward FLOPs");
    }
    for (const auto& c : stage.compare) {
      std::printf("then for each run with a baseline%s: %s\n", in.c_str(),
                  c == "freeze_all" ? "the baseline with its first K stages frozen from the start, for every K"
                  : c == "freeze" ? "the baseline with its first K stages frozen from the start, K matched to the run's "
                                  "time"
                                : "the baseline with every stage frozen (a linear probe of the head)");
    }
  }
  if (a.dry_run) return 0;

  for (const char* sub : {"configs", "runs", "logs"}) fs::create_directories(suite.output / sub);
  struct sigaction sa {};
  sa.sa_handler = on_suite_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {
  }, old_term{};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  const std::string exe = self_exe();
  std::map<pid_t, Active> active;
  std::vector<core::SuiteRun> runs = suite.runs;  // budget-matched baselines are appended once their pairs finished
  for (std::size_t b = 0; b < runs.size(); ++b) {
    if (!keeps[b]) continue;  // not part of the config hash: the baseline's identity stays
    runs[b].config.train.checkpoint_keep = "all";
    runs[b].effective_yaml = runs[b].config.effective_yaml();
  }
  std::vector<std::string> roles(runs.size());
  std::vector<bool> failed_run(runs.size(), false), launched(runs.size(), false);
  std::size_t next = 0, finished = 0, failed = 0, total_to_run = suite.runs.size() - skipped, started = 0, in_use = 0,
              unrecorded = 0;
  bool stop_launching = false;
  const auto suite_start = std::chrono::steady_clock::now();

  auto launch = [&](std::size_t i, bool fresh) {
    launched[i] = true;
    const core::SuiteRun& r = runs[i];
    const fs::path out_dir = core::run_folder(suite, r);
    const std::string name = out_dir.filename().string();
    const fs::path config = suite.output / "configs" / (name + ".yaml");
    const fs::path log = suite.output / "logs" / (name + ".log");
    // A folder a process still trains in (the child of a suite that died, a
    // run started by hand) is left alone: its lock is taken before anything
    // in it is removed, and released just before the child takes it.
    std::unique_ptr<core::FileLock> run_lock;
    if (fs::exists(out_dir)) {
      std::string holder;
      run_lock = core::FileLock::try_take(out_dir / ".lock", &holder);
      if (!run_lock) {
        ++in_use;
        std::printf("[in use] %s: its folder %s is in use by another run (process %s); not started\n",
                    r.label.c_str(), out_dir.string().c_str(), holder.c_str());
        std::fflush(stdout);
        return;
      }
    }
    core::atomic_write(config, r.effective_yaml);
    std::error_code ec;
    // A run an interrupted suite left: resumed from its checkpoint when it
    // has one (`ldrop run --resume` checks that it is this config's), else
    // started again.
    const bool resume = !fresh && fs::exists(out_dir / "config.yaml") && !fs::exists(out_dir / "summary.json") &&
                        core::has_checkpoint(out_dir);
    if (!resume) fs::remove_all(out_dir, ec);
    core::RunRecord rec;
    rec.suite = suite.name;
    rec.label = r.label;
    rec.config_hash = r.hash;
    rec.code_version = version;
    rec.baseline_hash = r.baseline_hash;
    rec.is_baseline = r.is_baseline;
    rec.role = roles[i];
    json values = json::object();
    for (const auto& [k, v] : r.values) values[k] = v;
    rec.values_json = values.dump();
    rec.config_yaml = r.effective_yaml;
    rec.out_dir = out_dir.string();
    std::int64_t id = 0;
    try {
      id = db->start(rec);
    } catch (const Error& e) {
      // Not started: a run the database does not know of would be trained again.
      ++failed;
      --total_to_run;
      failed_run[i] = true;
      std::printf("[FAILED] %s: not started: %s\n", r.label.c_str(), e.what());
      std::fflush(stdout);
      return;
    }
    ++started;
    // Its baseline's folder, when it finished (here or earlier): the run
    // branches from it, or says why not and starts from the beginning.
    fs::path branch;
    if (!resume && i < branch_of.size() && branch_of[i] >= 0 && done[static_cast<std::size_t>(branch_of[i])]) {
      branch = core::run_folder(suite, runs[static_cast<std::size_t>(branch_of[i])]);
    }
    const std::string how = resume            ? "resumed from its checkpoint"
                            : branch.empty() ? "started"
                                             : "started, branching from " +
                                                   runs[static_cast<std::size_t>(branch_of[i])].label;
    std::printf("[%zu/%zu] %s: %s (log %s)\n", started, total_to_run, r.label.c_str(), how.c_str(),
                log.string().c_str());
    std::fflush(stdout);
    run_lock.reset();
    pid_t pid = fork();
    if (pid < 0) throw Error(std::string("suite: cannot start a run: ") + std::strerror(errno));
    if (pid == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | (resume ? O_APPEND : O_TRUNC), 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
      }
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      if (resume) {
        execl(exe.c_str(), exe.c_str(), "run", config.c_str(), "--resume", out_dir.c_str(), "--quiet",
              static_cast<char*>(nullptr));
      } else if (!branch.empty()) {
        execl(exe.c_str(), exe.c_str(), "run", config.c_str(), "--out", out_dir.c_str(), "--quiet", "--branch-from",
              branch.c_str(), "--branch-or-start", static_cast<char*>(nullptr));
      } else {
        execl(exe.c_str(), exe.c_str(), "run", config.c_str(), "--out", out_dir.c_str(), "--quiet",
              static_cast<char*>(nullptr));
      }
      std::fprintf(stderr, "error: cannot execute %s: %s\n", exe.c_str(), std::strerror(errno));
      _exit(127);
    }
    active[pid] = Active{i, id, std::chrono::steady_clock::now(), out_dir, log, resume};
  };

  auto reap = [&](pid_t pid, int status) {
    Active act = active.at(pid);
    active.erase(pid);
    const core::SuiteRun& r = runs[act.index];
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - act.start).count();
    const fs::path summary = act.out_dir / "summary.json";
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && fs::exists(summary)) {
      const std::string text = core::read_file(summary);
      ++finished;
      done[act.index] = true;
      json s = json::parse(text);
      std::printf("[done] %s: %.0f s, test accuracy %.2f%%, %lld/%lld stages dropped, forward FLOPs -%.1f%%\n",
                  r.label.c_str(), seconds, 100.0 * s["test_accuracy"].get<double>(),
                  static_cast<long long>(s["dropped_stages"].get<std::int64_t>()),
                  static_cast<long long>(s["num_stages"].get<std::int64_t>()),
                  100.0 * s["flops_reduction"].get<double>());
      // The run's result is in its folder whatever happens to the database:
      // a record that fails leaves the suite going, and the next
      // `suite run` records it from the folder.
      try {
        db->finish(act.db_id, text, read_lines(act.out_dir / "metrics.jsonl"));
      } catch (const Error& e) {
        ++unrecorded;
        std::printf("[not recorded] %s: %s; its results are in %s, and the next 'ldrop suite run' records them\n",
                    r.label.c_str(), e.what(), act.out_dir.c_str());
      }
    } else if (act.resumed && !g_stop && WIFEXITED(status)) {
      // The checkpoint could not be used (corrupt, or of other code): once more from the start.
      const std::string error = error_from_log(act.log, status);
      db->fail(act.db_id, "resume failed: " + error);
      std::printf("[resume failed] %s: %s; starting it again\n", r.label.c_str(), error.c_str());
      --started;
      launch(act.index, true);
    } else {
      std::string error = g_stop ? "interrupted" : error_from_log(act.log, status);
      try {
        db->fail(act.db_id, error);
      } catch (const Error& e) {
        ++unrecorded;
        std::printf("[not recorded] %s: %s\n", r.label.c_str(), e.what());
      }
      ++failed;
      failed_run[act.index] = true;
      std::printf("[FAILED] %s after %.0f s: %s (log %s)\n", r.label.c_str(), seconds, error.c_str(),
                  act.log.string().c_str());
      if (a.stop_on_failure) stop_launching = true;
    }
    std::fflush(stdout);
  };

  // Budget-matched and the other baselines: once a run and its baseline
  // have finished (in this invocation or an earlier one), full training cut
  // to the run's budget, and fixed partial freezing and a linear probe.
  bool baselines_added = std::all_of(suite.stages.begin(), suite.stages.end(),
                                     [](const core::SuiteStage& st) { return st.budget.empty() && st.compare.empty(); });
  auto add_baseline_runs = [&] {
    baselines_added = true;
    std::map<std::string, json> summaries;
    for (const auto& rec : db->runs()) {
      if (rec.status == "finished" && rec.code_version == version) summaries[rec.config_hash] = json::parse(rec.summary_json);
    }
    std::map<std::string, const core::SuiteRun*> by_hash;
    for (const auto& r : suite.runs) by_hash[r.hash] = &r;
    std::set<std::string> queued;
    std::size_t pairs = 0, added = 0;
    auto queue = [&](const core::SuiteRun& extra, const std::string& role) {
      if (summaries.count(extra.hash) || queued.count(extra.hash)) return;
      queued.insert(extra.hash);
      runs.push_back(extra);
      roles.push_back(role);
      done.push_back(false);
      failed_run.push_back(false);
      launched.push_back(false);
      ++added;
    };
    for (const auto& r : suite.runs) {
      const core::SuiteStage& stage = suite.stages[r.stage];
      if (r.is_baseline || r.baseline_hash.empty()) continue;
      auto s = summaries.find(r.hash);
      auto b = summaries.find(r.baseline_hash);
      auto base = by_hash.find(r.baseline_hash);
      if (s == summaries.end() || b == summaries.end() || base == by_hash.end()) continue;
      ++pairs;
      // The run's time as a fraction of full training: timed against its own
      // full-training epochs, which the drift between separate runs does not
      // move; the pair's ratio only when it had none (a drop in its first epoch).
      double ratio = s->second["train_seconds"].get<double>() / b->second["train_seconds"].get<double>();
      if (s->second.contains("self_speedup") && s->second["self_speedup"].is_number()) {
        ratio = 1.0 / s->second["self_speedup"].get<double>();
      }
      if (!stage.budget.empty()) {
        double run_budget = ratio, full_budget = 1.0;
        if (stage.budget == "flops") {
          run_budget = s->second["forward_flops"].get<double>();
          full_budget = b->second["forward_flops"].get<double>();
        }
        const core::RunConfig& full = base->second->config;
        const std::int64_t epochs = core::budget_epochs(full.stream.epochs_per_part(full.train.epochs),
                                                        run_budget, full_budget);
        core::SuiteRun budget = core::budget_run(*base->second, epochs);
        db->set_budget(r.hash, version, budget.hash);
        queue(budget, "budget");
      }
      for (const auto& c : stage.compare) {
        if (c == "freeze_all") {
          // The practitioner's every choice: K = 1 .. stages - 1, each once per baseline.
          const auto n = s->second["stage_forward_flops"].size();
          for (std::size_t k = 1; k + 1 <= n; ++k) {
            core::SuiteRun other = core::freeze_run(*base->second, std::to_string(k));
            db->set_compare(r.hash, version, "freeze" + std::to_string(k), other.hash);
            queue(other, "freeze" + std::to_string(k));
          }
          continue;
        }
        std::string stages = "all";
        if (c == "freeze") {
          // K matched to the run's budget: its time, or with `budget: flops`
          // its forward FLOPs (which no machine's load moves).
          const double match = stage.budget == "flops" ? s->second["forward_flops"].get<double>() /
                                                             b->second["forward_flops"].get<double>()
                                                       : ratio;
          stages = std::to_string(core::freeze_stages_for(match, s->second["stage_forward_flops"].get<std::vector<std::int64_t>>(),
                                                          s->second["head_forward_flops"].get<std::int64_t>()));
        }
        core::SuiteRun other = core::freeze_run(*base->second, stages);
        db->set_compare(r.hash, version, c, other.hash);
        queue(other, c);
      }
    }
    total_to_run += added;
    std::printf("suite: %zu pair(s) with finished runs; %zu further baseline run(s) to run\n", pairs, added);
    std::fflush(stdout);
  };

  // A run that refers to an earlier stage's run waits for it, and fails
  // without starting when that run failed.
  auto blocked = [&](std::size_t i) {
    for (std::size_t need : runs[i].needs) {
      if (done[need]) continue;
      if (failed_run[need]) {
        const core::SuiteRun& r = runs[i];
        core::RunRecord rec;
        rec.suite = suite.name;
        rec.label = r.label;
        rec.config_hash = r.hash;
        rec.code_version = version;
        rec.baseline_hash = r.baseline_hash;
        rec.is_baseline = r.is_baseline;
        rec.config_yaml = r.effective_yaml;
        rec.out_dir = core::run_folder(suite, r).string();
        const std::int64_t id = db->start(rec);
        const std::string error = "not started: it needs run " + runs[need].label + " of stage " +
                                  suite.stages[runs[need].stage].name + ", which failed";
        db->fail(id, error);
        ++failed;
        --total_to_run;  // counted as failed, not as "not started"
        failed_run[i] = true;
        std::printf("[FAILED] %s: %s\n", r.label.c_str(), error.c_str());
        std::fflush(stdout);
        return false;  // settled: not to wait for
      }
      return true;  // still to finish
    }
    return false;
  };

  while (true) {
    if (g_stop) {
      if (!stop_launching) {
        std::printf("suite: interrupted; stopping %zu running run(s)\n", active.size());
        for (const auto& [pid, act] : active) ::kill(pid, SIGTERM);
      }
      stop_launching = true;
    }
    // In order, passing over runs that wait: for an earlier stage's run they
    // need, or for the baseline they branch from (which a failure of the
    // baseline ends: they start from the beginning).
    for (std::size_t i = next; !stop_launching && active.size() < static_cast<std::size_t>(a.jobs) && i < runs.size();
         ++i) {
      if (launched[i] || done[i] || failed_run[i]) continue;
      if (blocked(i) || failed_run[i]) continue;
      if (i < branch_of.size() && branch_of[i] >= 0) {
        const auto b = static_cast<std::size_t>(branch_of[i]);
        bool running = false;  // (a baseline whose folder was in use ran nowhere: nothing to wait for)
        for (const auto& kv : active) running = running || kv.second.index == b;
        if (!done[b] && !failed_run[b] && (!launched[b] || running)) continue;
      }
      launch(i, false);
    }
    while (next < runs.size() && (launched[next] || done[next] || failed_run[next])) ++next;
    if (active.empty() && !stop_launching && !baselines_added) {
      add_baseline_runs();
      continue;
    }
    if (active.empty()) break;
    int status = 0;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throw Error(std::string("suite: waitpid: ") + std::strerror(errno));
    }
    if (active.count(pid)) reap(pid, status);
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  const double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - suite_start).count() / 60.0;
  std::printf("suite %s: %zu finished, %zu failed, %zu skipped, %zu not started%s, in %.1f min; database %s\n",
              suite.name.c_str(), finished, failed, skipped, total_to_run - started,
              in_use ? (" (" + std::to_string(in_use) + " in use by another run)").c_str() : "", minutes,
              db_path.string().c_str());
  if (unrecorded) {
    std::printf("suite %s: %zu result(s) not recorded in %s (it stayed locked); run the suite again to record them\n",
                suite.name.c_str(), unrecorded, db_path.c_str());
  }
  if (g_stop) return 128 + g_stop;
  return failed || in_use || unrecorded ? 1 : 0;
}

}  // namespace ld::cli
