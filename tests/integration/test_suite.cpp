// Experiment suites: matrix expansion, the results database, resume, failed
// runs and the report.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <fstream>
#include <functional>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "idx_fixture.h"
#include "learndrop/core/files.h"
#include "learndrop/core/results_db.h"
#include "learndrop/core/suite.h"
#include "test_env.h"

namespace ld::core {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class Suites : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_idx_fixture(data_.str());
    std::ofstream(dir_.path() / "base.yaml") << test::tiny_config(data_.str());
  }
  std::string write_suite(const std::string& text) {
    const std::string file = (dir_.path() / "suite.yaml").string();
    std::ofstream(file) << "base: base.yaml\noutput: out\n" << text;
    return file;
  }
  std::string error_of(const std::string& text) {
    return test::error_of([&] { load_suite(write_suite(text), *host_); });
  }
  static std::string shell(const std::string& cmd) { return test::run_shell(cmd).output; }
  std::unique_ptr<PluginHost> host_ = test::builtin_host();
  test::TempDir data_, dir_;
};

const char* kMatrix =
    "matrix:\n"
    "  size:\n"
    "    - {model.width: 0.0625}\n"
    "    - {model.width: 0.125, train.batch_size: 16}\n"
    "  policy.plugin: [none, fixed]\n"
    "  experiment.seed: [1, 2]\n"
    "exclude:\n"
    "  - {model.width: 0.125, experiment.seed: 2}\n"
    "baseline: {policy.plugin: none}\n";

}  // namespace

TEST_F(Suites, MatrixExpandsInOrderWithExcludesAndBaselines) {
  Suite s = load_suite(write_suite(std::string("set: {train.epochs: 2}\n") + kMatrix), *host_);
  ASSERT_EQ(s.runs.size(), 6u);
  EXPECT_EQ(s.excluded, 2u);
  std::vector<std::string> labels;
  for (const auto& r : s.runs) labels.push_back(r.label);
  EXPECT_EQ(labels, (std::vector<std::string>{"0.0625.none.1", "0.0625.none.2", "0.0625.fixed.1", "0.0625.fixed.2",
                                              "0.125+16.none.1", "0.125+16.fixed.1"}));
  EXPECT_EQ(s.runs[4].config.train.batch_size, 16);  // a named axis sets several keys
  EXPECT_EQ(s.runs[0].config.train.epochs, 2);       // `set` applies to every run
  EXPECT_EQ(s.runs[5].config.policy.plugin, "fixed");
  for (const auto& r : s.runs) {
    EXPECT_EQ(r.is_baseline, r.config.policy.plugin == "none") << r.label;
  }
  // Each run's baseline is the run with the same values and policy none.
  EXPECT_EQ(s.runs[2].baseline_hash, s.runs[0].hash);
  EXPECT_EQ(s.runs[3].baseline_hash, s.runs[1].hash);
  EXPECT_EQ(s.runs[5].baseline_hash, s.runs[4].hash);
  EXPECT_EQ(s.runs[0].baseline_hash, s.runs[0].hash);
  std::set<std::string> hashes;
  for (const auto& r : s.runs) hashes.insert(r.hash);
  EXPECT_EQ(hashes.size(), 6u);
}

TEST_F(Suites, BaselineOfANamedAxisIsItsWholeValue) {
  // The drop policy's own keys live with it on a named axis; the baseline run
  // is the axis value with policy none, without them.
  Suite s = load_suite(write_suite("matrix:\n  policy:\n    - {label: full, policy.plugin: none}\n"
                                   "    - {label: drop, policy.plugin: fixed, policy.cut: 3}\n"
                                   "  experiment.seed: [1, 2]\nbaseline: {policy.plugin: none}\n"),
                       *host_);
  ASSERT_EQ(s.runs.size(), 4u);
  EXPECT_EQ(s.runs[2].label, "drop.1");
  EXPECT_EQ(s.runs[2].baseline_hash, s.runs[0].hash);
  EXPECT_EQ(s.runs[3].baseline_hash, s.runs[1].hash);
  EXPECT_NE(error_of("matrix:\n  policy.plugin: [fixed]\nbaseline: {policy.plugin: none}\n")
                .find("no value of matrix axis 'policy.plugin' matches the baseline"),
            std::string::npos);
}

// Issue 12, CLI finding 10: three suite mistakes that went through silently.
TEST_F(Suites, RepeatedValuesStrayExcludeKeysAndBaselinesOffTheMatrixAreErrors) {
  std::string e = error_of("matrix:\n  experiment.seed: [1, 2, 1]\n");
  EXPECT_NE(e.find("matrix.experiment.seed"), std::string::npos) << e;
  EXPECT_NE(e.find("value 3 (1) repeats value 1"), std::string::npos) << e;
  e = error_of("matrix:\n  train.lr: [0.1, 0.10]\n");  // different text, the same config
  EXPECT_NE(e.find("have the same effective config"), std::string::npos) << e;
  e = error_of("matrix:\n  experiment.seed: [1, 2]\nexclude:\n  - {experiment.sed: 1}\n");
  EXPECT_NE(e.find("'experiment.sed' is not a key the matrix sets"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'experiment.seed'?"), std::string::npos) << e;
  EXPECT_NE(e.find("the entry would exclude nothing"), std::string::npos) << e;
  e = error_of("matrix:\n  experiment.seed: [1, 2]\nbaseline: {policy.plugin: none}\n");
  EXPECT_NE(e.find("'policy.plugin' is not a key the matrix sets"), std::string::npos) << e;
  EXPECT_NE(e.find("every run would be paired with itself"), std::string::npos) << e;
  EXPECT_EQ(load_suite(write_suite(kMatrix), *host_).runs.size(), 6u) << "a valid suite still loads";
}

TEST_F(Suites, BadSuitesAreNamedBeforeAnythingRuns) {
  EXPECT_NE(error_of("matrx: {}\n").find("matrx: unknown suite key"), std::string::npos);
  std::string e = error_of("matrix:\n  model.variant: [vgg11_bn, vgg99]\n");
  EXPECT_NE(e.find("run {model.variant=vgg99}"), std::string::npos) << e;
  EXPECT_NE(e.find("vgg99"), std::string::npos) << e;
  e = error_of("matrix:\n  experiment.seed: [1]\nexclude:\n  - {experiment.seed: 1}\n");
  EXPECT_NE(e.find("every run of the matrix is excluded"), std::string::npos) << e;
  e = error_of("matrix:\n  policy.plugin: [none, fixed]\nbaseline: {policy.plugin: none}\nbudget: seconds\n");
  EXPECT_NE(e.find("budget: expected time or flops"), std::string::npos) << e;
  e = error_of("matrix:\n  policy.plugin: [none, fixed]\nbudget: time\n");
  EXPECT_NE(e.find("budget-matched baselines need a baseline"), std::string::npos) << e;
  e = error_of("matrix:\n  experiment.seed: 1\n");
  EXPECT_NE(e.find("matrix.experiment.seed: expected a non-empty list"), std::string::npos) << e;
  // Found by tools/fuzz.sh: a mapping as a key in a named axis's value escaped as yaml-cpp's "bad conversion".
  e = error_of("matrix:\n  net:\n    - {label: a, model.variant: vgg11_bn}\n    - {label: b, {model.width: 1}: 5}\n");
  EXPECT_NE(e.find("suite.yaml:6: expected a key name, got a mapping as a key"), std::string::npos) << e;
  // Found by tools/fuzz.sh: a base name too long for the file system escaped as std::filesystem_error.
  {
    const std::string file = (dir_.path() / "long.yaml").string();
    std::ofstream(file) << "base: " << std::string(300, 'b') << ".yaml\noutput: out\nmatrix:\n  experiment.seed: [1]\n";
    e = test::error_of([&] { load_suite(file, *host_); });
    EXPECT_NE(e.find(": cannot read config "), std::string::npos) << e;
    EXPECT_NE(e.find("File name too long"), std::string::npos) << e;
  }
  // Found while writing the suite fuzz target: a matrix of 10^6 runs was expanded, every run resolved.
  std::string seeds;
  for (int i = 1; i <= 100; ++i) seeds += (i > 1 ? ", " : "") + std::to_string(i);
  e = error_of("matrix:\n  experiment.seed: [" + seeds + "]\n  train.epochs: [" + seeds + "]\n  train.lr: [" + seeds +
               "]\n");
  EXPECT_NE(e.find("expands to more than 10000 runs (100 x 100 x 100 values)"), std::string::npos) << e;
  test::LdropResult r = test::run_ldrop("suite run " + (dir_.path() / "suite.yaml").string());
  EXPECT_EQ(r.code, 2) << r.output;
}

TEST_F(Suites, InterruptedSuiteContinuesWithoutRepeatingFinishedRuns) {
  // Three runs of several epochs; the suite is stopped once the first has finished.
  const std::string file = write_suite("set: {train.epochs: 12}\nmatrix:\n  experiment.seed: [1, 2, 3]\n");
  const std::string out = (dir_.path() / "out").string();
  std::string o = shell(std::string(LDROP_EXE) + " suite run " + file + " > " + dir_.str() + "/first.log 2>&1 & " +
                        "pid=$!; for i in $(seq 1200); do ls " + out +
                        "/runs/*/summary.json > /dev/null 2>&1 && break; sleep 0.05; done; kill -TERM $pid; " +
                        "wait $pid; echo exit=$?");
  EXPECT_NE(o.find("exit=143"), std::string::npos) << o;
  std::map<std::string, std::int64_t> first_ids;
  {
    ResultsDb db(out + "/results.db");
    for (const auto& r : db.runs()) {
      if (r.status == "finished") first_ids[r.config_hash] = r.id;
    }
  }
  ASSERT_GE(first_ids.size(), 1u) << shell("cat " + dir_.str() + "/first.log");
  ASSERT_LT(first_ids.size(), 3u) << "the suite finished before it was interrupted";

  test::LdropResult again = test::run_ldrop("suite run " + file);
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_NE(again.output.find(std::to_string(first_ids.size()) + " already finished"), std::string::npos)
      << again.output;
  ResultsDb db(out + "/results.db");
  std::map<std::string, int> finished;
  for (const auto& r : db.runs()) {
    if (r.status != "finished") continue;
    ++finished[r.config_hash];
    EXPECT_EQ(r.epochs_json.size(), 12u);
    EXPECT_FALSE(r.config_yaml.empty());
    EXPECT_FALSE(r.code_version.empty());
    if (first_ids.count(r.config_hash)) EXPECT_EQ(r.id, first_ids[r.config_hash]) << "a finished run ran again";
  }
  EXPECT_EQ(finished.size(), 3u);
  for (const auto& [hash, n] : finished) EXPECT_EQ(n, 1) << hash;
}

// Issue 31, defect 1: a second `suite run` of the same output removed the
// folders of the runs the first was training and started them again.
TEST_F(Suites, ASecondSuiteProcessOnTheSameOutputIsRefusedAndTheFirstFinishes) {
  const std::string file = write_suite("set: {train.epochs: 12}\nmatrix:\n  experiment.seed: [1, 2]\n");
  const std::string out = (dir_.path() / "out").string();
  std::string o = shell(std::string(LDROP_EXE) + " suite run " + file + " > " + dir_.str() + "/first.log 2>&1 & " +
                        "pid=$!; for i in $(seq 1200); do ls " + out +
                        "/runs/*/.lock > /dev/null 2>&1 && break; sleep 0.05; done; " + LDROP_EXE + " suite run " +
                        file + "; echo second=$?; wait $pid; echo first=$?");
  EXPECT_NE(o.find("second=1"), std::string::npos) << o;
  EXPECT_NE(o.find("suite output " + out + " is in use by another 'ldrop suite run' (process "), std::string::npos)
      << o;
  EXPECT_NE(o.find("first=0"), std::string::npos) << o << shell("cat " + dir_.str() + "/first.log");
  ResultsDb db(out + "/results.db");
  std::map<std::string, int> records;
  for (const auto& r : db.runs()) {
    EXPECT_EQ(r.status, "finished") << r.label;
    ++records[r.config_hash];
  }
  EXPECT_EQ(records.size(), 2u);
  for (const auto& [hash, n] : records) EXPECT_EQ(n, 1) << hash << ": started twice";
  EXPECT_FALSE(fs::exists(out + "/.suite.lock")) << "released and removed at the end";
}

// Issue 31, defect 10: a results.db locked for over 10 s (a report, another
// program) aborted the suite and left the run's row 'running'.
TEST_F(Suites, AResultsDatabaseLockedPastTheWaitKeepsTheSuiteGoingAndTheNextRunRecordsTheResult) {
  const std::string file = write_suite("set: {train.epochs: 12}\nmatrix:\n  experiment.seed: [1]\n");
  const fs::path out = dir_.path() / "out", log = dir_.path() / "first.log";
  shell("(LEARNDROP_RESULTS_DB_WAIT=1 " + std::string(LDROP_EXE) + " suite run " + file + " > " + log.string() +
        " 2>&1; echo \"exit=$?\" >> " + log.string() + ") < /dev/null > /dev/null 2>&1 &");
  auto wait_for = [](const std::function<bool()>& ready) {
    for (int i = 0; i < 6000 && !ready(); ++i) ::usleep(50000);
    return ready();
  };
  // The run trains (its folder is locked): another program takes the database.
  ASSERT_TRUE(wait_for([&] { return !shell("ls " + out.string() + "/runs/*/.lock 2>/dev/null").empty(); }));
  sqlite3* held = nullptr;
  ASSERT_EQ(sqlite3_open((out / "results.db").c_str(), &held), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(held, "BEGIN IMMEDIATE;", nullptr, nullptr, nullptr), SQLITE_OK);
  const bool ended = wait_for([&] { return fs::exists(log) && read_file(log).find("exit=") != std::string::npos; });
  sqlite3_exec(held, "ROLLBACK;", nullptr, nullptr, nullptr);
  sqlite3_close(held);
  ASSERT_TRUE(ended) << read_file(log);
  const std::string first = read_file(log);
  EXPECT_NE(first.find("[done] 1:"), std::string::npos) << first;
  EXPECT_NE(first.find("[not recorded] 1: results database " + (out / "results.db").string()), std::string::npos)
      << first;
  EXPECT_NE(first.find("(another process held it longer than LEARNDROP_RESULTS_DB_WAIT allows, 1 s)"),
            std::string::npos)
      << first;
  EXPECT_NE(first.find("1 result(s) not recorded"), std::string::npos) << first;
  EXPECT_NE(first.find("exit=1"), std::string::npos) << first;

  test::LdropResult again = test::run_ldrop("suite run " + file);
  EXPECT_EQ(again.code, 0) << again.output;
  EXPECT_NE(again.output.find("[recorded] 1: finished earlier"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("1 already finished"), std::string::npos) << again.output << ": trained again";
  ResultsDb db((out / "results.db").string());
  ASSERT_EQ(db.runs().size(), 1u);
  EXPECT_EQ(db.runs()[0].status, "finished");
  EXPECT_EQ(db.runs()[0].epochs_json.size(), 12u);
}

// Issue 31, defect 1: a run folder some process still trains in (the child
// of a suite that died) is skipped, never removed.
TEST_F(Suites, ARunFolderInUseIsLeftAloneAndTheSuiteSaysSo) {
  const std::string file = write_suite("matrix:\n  experiment.seed: [1]\n");
  Suite suite = load_suite(file, *host_);
  const fs::path folder = run_folder(suite, suite.runs[0]);
  fs::create_directories(folder);
  std::ofstream(folder / "config.yaml") << "theirs";
  {
    auto held = FileLock::try_take(folder / ".lock");
    ASSERT_TRUE(held);
    test::LdropResult r = test::run_ldrop("suite run " + file);
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_NE(r.output.find("[in use] 1: its folder " + folder.string() + " is in use by another run (process " +
                            std::to_string(::getpid()) + "@"),
              std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("(1 in use by another run)"), std::string::npos) << r.output;
    EXPECT_EQ(read_file(folder / "config.yaml"), "theirs") << "the folder was touched";
  }
  test::LdropResult r = test::run_ldrop("suite run " + file);  // released: runs
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(folder / "summary.json"));
  EXPECT_FALSE(fs::exists(folder / ".lock")) << "a finished run leaves no lock file";
}

TEST_F(Suites, ARunStoppedWithACheckpointIsResumedNotRestarted) {
  // The run stops itself with SIGTERM before step 20 of 24 (3 epochs of 8), as a preempted job does.
  const std::string file = write_suite("matrix:\n  experiment.seed: [5]\n");
  test::LdropResult first = test::run_ldrop("suite run " + file, "LEARNDROP_TEST_SIGTERM_AT_STEP=20 ");
  EXPECT_EQ(first.code, 1) << first.output;
  const fs::path run_dir = dir_.path() / "out" / "runs";
  ASSERT_EQ(std::distance(fs::directory_iterator(run_dir), fs::directory_iterator{}), 1);
  const fs::path run = fs::directory_iterator(run_dir)->path();
  ASSERT_TRUE(fs::exists(run / "checkpoint" / "MANIFEST.json")) << first.output;

  test::LdropResult again = test::run_ldrop("suite run " + file);
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_NE(again.output.find("resumed from its checkpoint"), std::string::npos) << again.output;
  std::ifstream log(dir_.path() / "out" / "logs" / (run.filename().string() + ".log"));
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("resumed from " + (run / "checkpoint").string() + " at epoch 3, step 4 of 8"),
            std::string::npos)
      << text;

  // The same metrics as the run done in one go.
  const std::string direct = (dir_.path() / "direct").string();
  ASSERT_EQ(test::run_ldrop("run " + (dir_.path() / "out" / "configs" / (run.filename().string() + ".yaml")).string() +
                            " --quiet --out " + direct)
                .code,
            0);
  auto metrics = [](const fs::path& dir) {
    std::vector<json> lines;
    std::ifstream in(dir / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      json j = json::parse(line);
      lines.push_back({j["train_loss"], j["train_accuracy"], j["test_loss"], j["test_accuracy"], j["cut"]});
    }
    return lines;
  };
  EXPECT_EQ(metrics(run), metrics(direct));
  EXPECT_EQ(metrics(run).size(), 3u);
}

TEST_F(Suites, FailedRunIsRecordedAndTheSuiteGoesOn) {
  const std::string file = write_suite("matrix:\n  dataset.root: [" + data_.str() + ", " + dir_.str() +
                                       "/no-such-folder]\n  experiment.seed: [1, 2]\n");
  test::LdropResult r = test::run_ldrop("suite run " + file);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("2 finished, 2 failed"), std::string::npos) << r.output;
  ResultsDb db(dir_.str() + "/out/results.db");
  int failed = 0;
  for (const auto& rec : db.runs()) {
    if (rec.status != "failed") continue;
    ++failed;
    EXPECT_NE(rec.error.find("no-such-folder does not exist"), std::string::npos) << rec.error;
  }
  EXPECT_EQ(failed, 2);
  r = test::run_ldrop("suite run --stop-on-failure " + file);  // retries the failed runs only, stops at the first
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("0 finished, 1 failed, 2 skipped, 1 not started"), std::string::npos) << r.output;
}

// Issue 12, CLI finding 6: a report on a zero-byte file or a foreign SQLite
// database created LearnDrop's tables in it and exited 0.
TEST_F(Suites, ReportsOpenTheDatabaseReadOnlyAndRefuseForeignFiles) {
  const fs::path empty = dir_.path() / "empty.db";
  std::ofstream(empty).close();
  test::LdropResult r = test::run_ldrop("suite report " + empty.string() + " --out " + (dir_.path() / "r1").string());
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("not a LearnDrop results database"), std::string::npos) << r.output;
  EXPECT_EQ(fs::file_size(empty), 0u) << "the report wrote into its input";
  const fs::path foreign = dir_.path() / "foreign.db";
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(foreign.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1);", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  const auto size = fs::file_size(foreign);
  r = test::run_ldrop("suite report " + foreign.string() + " --out " + (dir_.path() / "r2").string());
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("not a LearnDrop results database"), std::string::npos) << r.output;
  EXPECT_EQ(fs::file_size(foreign), size);
  for (const char* side : {"-wal", "-shm"}) {
    EXPECT_FALSE(fs::exists(foreign.string() + side)) << side;
    EXPECT_FALSE(fs::exists(empty.string() + side)) << side;
  }
}

// Issue 12, CLI finding 7: corrupt JSON in a record gave a raw parser error
// naming neither the database nor the run, and suite run counted it finished.
TEST_F(Suites, ACorruptRecordIsNamedLeftOutOfReportsAndRunAgain) {
  const fs::path db_file = dir_.path() / "corrupt.db";
  {
    ResultsDb db(db_file);
    for (const std::string label : {"good", "bad"}) {
      RunRecord r;
      r.suite = "fixture";
      r.label = label;
      r.config_hash = label + "-hash";
      r.code_version = "test";
      r.baseline_hash = r.config_hash;
      r.is_baseline = true;
      r.values_json = R"({"experiment.seed": "1"})";
      r.config_yaml = "x";
      r.out_dir = "runs/" + label;
      const std::int64_t id = db.start(r);
      const json summary = {{"model", "vgg11_bn"}, {"dataset", "mnist"}, {"policy", "none"}, {"seed", 1},
                            {"test_accuracy", 0.9}, {"train_seconds", 10.0}, {"wall_seconds", 11.0},
                            {"forward_flops", 1}, {"forward_flops_full", 1}, {"flops_reduction", 0.0},
                            {"dropped_stages", 0}, {"num_stages", 8}};
      db.finish(id, label == "bad" ? std::string("{\"model\": \"vgg11_bn\", trunc") : summary.dump(), {"{}"});
    }
    EXPECT_TRUE(db.finished("good-hash", "test"));
    EXPECT_FALSE(db.finished("bad-hash", "test")) << "a corrupt record counted as finished";
    const auto records = db.runs();
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[1].status, "failed");
    EXPECT_NE(records[1].error.find("results database " + db_file.string() + ": run bad (id 2): its summary is not "
                                    "valid JSON"),
              std::string::npos)
        << records[1].error;
  }
  const test::LdropResult r =
      test::run_ldrop("suite report " + db_file.string() + " --out " + (dir_.path() / "report").string());
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("run bad (id 2): its summary is not valid JSON; left out"), std::string::npos) << r.output;
}

TEST_F(Suites, ReportPairsRunsWithTheirBaselinesAndAveragesSeeds) {
  // A database fixture: two seeds of a baseline and a Learn&Drop run.
  const fs::path db_file = dir_.path() / "fixture.db";
  {
    ResultsDb db(db_file);
    auto add = [&](const std::string& label, const std::string& hash, const std::string& baseline, bool is_baseline,
                   const std::string& policy, int seed, double acc, double seconds, double flops, int dropped,
                   const json& extra = json::object()) {
      RunRecord r;
      r.suite = "fixture";
      r.label = label;
      r.config_hash = hash;
      r.code_version = "test";
      r.baseline_hash = baseline;
      r.is_baseline = is_baseline;
      json values = {{"policy.plugin", policy}, {"experiment.seed", std::to_string(seed)}};
      values.update(extra);
      r.values_json = values.dump();
      r.config_yaml = "x";
      r.out_dir = "runs/" + label;
      std::int64_t id = db.start(r);
      json summary = {{"model", "vgg11_bn"},
                      {"dataset", "mnist"},
                      {"policy", policy},
                      {"seed", seed},
                      {"test_accuracy", acc},
                      {"train_seconds", seconds},
                      {"wall_seconds", seconds + 1},
                      {"forward_flops", 1},
                      {"forward_flops_full", 2},
                      {"flops_reduction", flops},
                      {"dropped_stages", dropped},
                      {"num_stages", 8}};
      json epoch = {{"epoch", 1}, {"test_accuracy", acc}, {"epoch_seconds", seconds}, {"cut", dropped}};
      db.finish(id, summary.dump(), {epoch.dump()});
    };
    add("none.1", "b1", "b1", true, "none", 1, 0.90, 100, 0.0, 0);
    add("none.2", "b2", "b2", true, "none", 2, 0.92, 120, 0.0, 0);
    add("ld.1", "l1", "b1", false, "learn-drop", 1, 0.89, 50, 0.40, 4);
    add("ld.2", "l2", "b2", false, "learn-drop", 2, 0.91, 60, 0.50, 6);
    // A named axis value with a key the others leave unset: its own row.
    add("ld-lr.1", "n1", "b1", false, "learn-drop", 1, 0.80, 90, 0.10, 1, {{"policy.normalize", "lr"}});
  }
  const std::string out = (dir_.path() / "report").string();
  test::LdropResult r = test::run_ldrop("suite report " + db_file.string() + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("| vgg11_bn | mnist | - | learn-drop | 2 | 91.00 ± 1.41 | 90.00 ± 1.41 | 110.0 ± 14.1 | "
                          "55.0 ± 7.1 | 2.00 ± 0.00x | - | 45.0 ± 7.1% | 5.0 ± 1.4 / 8 |"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("| vgg11_bn | mnist | policy.normalize=lr | learn-drop | 1 | 90.00 | 80.00 |"),
            std::string::npos)
      << r.output;
  std::ifstream csv(out + "/runs.csv");
  std::string header, line;
  std::getline(csv, header);
  int rows = 0;
  while (std::getline(csv, line)) ++rows;
  EXPECT_EQ(rows, 5);
  EXPECT_TRUE(fs::exists(out + "/report.md"));
  EXPECT_EQ(r.output.find("accuracy budget"), std::string::npos) << "no budget-matched runs, no budget columns";
  if (std::system("/usr/bin/python3 -c 'import matplotlib' 2> /dev/null") == 0) {
    EXPECT_TRUE(fs::exists(out + "/vgg11_bn_mnist_learn-drop.png")) << r.output;
  }

  // Budget-matched baselines (one per seed, full training of fewer epochs).
  {
    ResultsDb db(db_file);
    for (int seed : {1, 2}) {
      RunRecord b;
      b.suite = "fixture";
      b.label = "none." + std::to_string(seed) + ".budget5";
      b.config_hash = "u" + std::to_string(seed);
      b.code_version = "test";
      b.baseline_hash = "b" + std::to_string(seed);
      b.role = "budget";
      b.values_json = json({{"policy.plugin", "none"}, {"train.epochs", seed == 1 ? "5" : "6"}}).dump();
      b.config_yaml = "x";
      const std::int64_t id = db.start(b);
      json summary = {{"model", "vgg11_bn"}, {"dataset", "mnist"},  {"policy", "none"},     {"seed", seed},
                      {"epochs", seed == 1 ? 5 : 6}, {"test_accuracy", seed == 1 ? 0.85 : 0.87}, {"train_seconds", 50},
                      {"wall_seconds", 51}, {"forward_flops", 1}, {"forward_flops_full", 1}, {"flops_reduction", 0.0},
                      {"dropped_stages", 0}, {"num_stages", 8}};
      db.finish(id, summary.dump(), {});
      db.set_budget("l" + std::to_string(seed), "test", b.config_hash);
    }
  }
  r = test::run_ldrop("suite report " + db_file.string() + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("| accuracy full % | accuracy drop % | accuracy budget % | budget epochs | time full"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("| learn-drop | 2 | 91.00 ± 1.41 | 90.00 ± 1.41 | 86.00 ± 1.41 | 5.5 | 110.0 ± 14.1 |"),
            std::string::npos)
      << r.output;
}

// Issue 30, part 2: runs that differ from their baseline only in the policy
// branch from the baseline's kept checkpoint before their first drop, and
// their results are those of the same suite run with every run from its start.
TEST_F(Suites, RunsThatDifferOnlyInThePolicyBranchFromTheirBaselineWithTheSameResults) {
  const std::string matrix =
      "set: {train.epochs: 4}\nmatrix:\n  policy:\n"
      "    - {label: full, policy.plugin: none}\n"
      "    - {label: cut4, policy.plugin: fixed, policy.epoch: 3, policy.cut: 4, policy.cost_guard: false}\n"
      "    - {label: freeze2, policy.plugin: fixed, policy.epoch: 2, policy.cut: 2, policy.drop_mode: freeze}\n"
      "    - {label: first, policy.plugin: fixed, policy.epoch: 1, policy.cut: 2}\n"
      "  experiment.seed: [1, 2]\nbaseline: {policy.plugin: none}\n";
  const std::string shared = write_suite(matrix);
  const std::string plain = (dir_.path() / "plain.yaml").string();
  std::ofstream(plain) << "base: base.yaml\noutput: plain\n" << matrix;

  test::LdropResult dry = test::run_ldrop("suite run " + shared + " --dry-run");
  ASSERT_EQ(dry.code, 0) << dry.output;
  EXPECT_NE(dry.output.find("cut4.1 "), std::string::npos) << dry.output;
  EXPECT_NE(dry.output.find("to run  (branches from 1)"), std::string::npos) << dry.output;
  test::LdropResult r = test::run_ldrop("suite run " + shared + " --jobs 2");
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* label : {"cut4.1", "cut4.2", "freeze2.1", "first.2"}) {
    EXPECT_NE(r.output.find(std::string(label) + ": started, branching from full."), std::string::npos) << r.output;
  }
  test::LdropResult p = test::run_ldrop("suite run " + plain + " --jobs 2 --no-share");
  ASSERT_EQ(p.code, 0) << p.output;
  EXPECT_EQ(p.output.find("branching from"), std::string::npos) << p.output;

  // The same results, run by run; what each branched run took over.
  std::map<std::string, json> branched_from;
  auto results = [&](const std::string& out) {
    std::map<std::string, std::pair<json, std::vector<json>>> by_label;
    ResultsDb db(dir_.str() + "/" + out + "/results.db");
    for (const auto& rec : db.runs()) {
      EXPECT_EQ(rec.status, "finished") << rec.label;
      const json summary = json::parse(rec.summary_json);
      if (out == "out") branched_from[rec.label] = summary["branched_from"];
      std::vector<json> epochs;
      for (const auto& line : rec.epochs_json) epochs.push_back(test::without_timing(json::parse(line)));
      by_label[rec.label] = {test::without_timing(summary), epochs};
    }
    return by_label;
  };
  const auto a = results("out"), b = results("plain");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (const auto& [label, result] : a) {
    ASSERT_TRUE(b.count(label)) << label;
    EXPECT_EQ(result.first, b.at(label).first) << label;
    EXPECT_EQ(result.second, b.at(label).second) << label;
  }
  // cut 4 at epoch 3's end: from epoch 2's checkpoint; freeze at epoch 2's:
  // from epoch 1's; a drop at epoch 1's end has none before it.
  EXPECT_EQ(branched_from["cut4.1"]["epoch"], 2);
  EXPECT_EQ(branched_from["freeze2.2"]["epoch"], 1);
  EXPECT_TRUE(branched_from["first.1"].is_null());
  EXPECT_TRUE(branched_from["full.1"].is_null());
  EXPECT_TRUE(fs::exists(dir_.path() / "out" / "runs"));
  const std::string log = shell("cat " + dir_.str() + "/out/logs/first.1-*.log");
  EXPECT_NE(log.find("it kept no checkpoint before its first drop, at step 8 (epoch 1) (kept: epochs 1, 2, 3); "
                     "training from the start"),
            std::string::npos)
      << log;
}

TEST_F(Suites, BudgetMatchedBaselinesTrainTheBaselineForThePairsBudget) {
  // FLOPs make the budget exact: a drop of 4 of 8 stages after epoch 1 of 4.
  const std::string file =
      write_suite("set: {train.epochs: 4}\nmatrix:\n  policy:\n    - {policy.plugin: none}\n"
                  "    - {policy.plugin: fixed, policy.epoch: 1, policy.cut: 4}\n"
                  "baseline: {policy.plugin: none}\nbudget: flops\n");
  test::LdropResult r = test::run_ldrop("suite run " + file);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("1 pair(s) with finished runs; 1 further baseline run(s) to run"),
            std::string::npos)
      << r.output;
  ResultsDb db(dir_.str() + "/out/results.db");
  std::map<std::string, RunRecord> by_role;
  json drop, full;
  for (const auto& rec : db.runs()) {
    ASSERT_EQ(rec.status, "finished") << rec.label;
    const json s = json::parse(rec.summary_json);
    if (rec.role == "budget") by_role["budget"] = rec;
    if (rec.role.empty() && rec.is_baseline) full = s;
    if (rec.role.empty() && !rec.is_baseline) {
      drop = s;
      by_role["drop"] = rec;
    }
  }
  ASSERT_TRUE(by_role.count("budget") && by_role.count("drop"));
  const json budget = json::parse(by_role["budget"].summary_json);
  const std::int64_t want = budget_epochs(4, drop["forward_flops"], full["forward_flops"]);
  EXPECT_LT(want, 4);
  EXPECT_EQ(budget["epochs"], want);
  EXPECT_EQ(budget["policy"], "none");
  EXPECT_EQ(by_role["drop"].budget_hash, by_role["budget"].config_hash);
  EXPECT_EQ(by_role["budget"].label, "none.budget" + std::to_string(want));
  EXPECT_NE(by_role["budget"].config_yaml.find("epochs: " + std::to_string(want)), std::string::npos);
  // Nothing runs again, the budget run included.
  test::LdropResult again = test::run_ldrop("suite run " + file);
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_NE(again.output.find("; 0 further baseline run(s) to run"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("0 finished, 0 failed, 2 skipped"), std::string::npos) << again.output;
  EXPECT_EQ(budget_epochs(20, 10, 20), 10);
  EXPECT_EQ(budget_epochs(20, 0, 20), 1);
  EXPECT_EQ(budget_epochs(20, 30, 20), 20);
}

// Stages: a fine-tuning stage refers to the pretraining stage's run with the
// same labels on their shared axes; its weights path is that run's folder.
const char* kStages =
    "stages:\n"
    "  - name: pretrain\n"
    "    base: base.yaml\n"
    "    set: {train.epochs: 1}\n"
    "    matrix:\n"
    "      net: [{label: narrow, model.width: 0.0625}, {label: wide, model.width: 0.125}]\n"
    "  - name: finetune\n"
    "    base: base.yaml\n"
    "    set: {model.weights: \"@pretrain\", train.epochs: 2}\n"
    "    matrix:\n"
    "      net: [{label: narrow, model.width: 0.0625}, {label: wide, model.width: 0.125}]\n"
    "      policy: [{label: full, policy.plugin: none, model.freeze: '0'},\n"
    "               {label: probe, policy.plugin: none, model.freeze: all}]\n"
    "    baseline: {policy.plugin: none, model.freeze: '0'}\n";

TEST_F(Suites, AStageRefersToTheEarlierStagesRunWithTheSameLabels) {
  const std::string file = (dir_.path() / "staged.yaml").string();
  std::ofstream(file) << "output: out\n" << kStages;
  const Suite s = load_suite(file, *host_);
  ASSERT_EQ(s.stages.size(), 2u);
  ASSERT_EQ(s.runs.size(), 6u);
  EXPECT_EQ(s.runs[0].label, "pretrain.narrow");
  EXPECT_EQ(s.runs[2].label, "finetune.narrow.full");
  for (std::size_t i = 2; i < 6; ++i) {
    const SuiteRun& r = s.runs[i];
    ASSERT_EQ(r.needs.size(), 1u) << r.label;
    const SuiteRun& pre = s.runs[r.needs[0]];
    EXPECT_EQ(pre.stage, 0u);
    EXPECT_EQ(pre.axes[0].second, r.axes[0].second) << r.label;
    EXPECT_EQ(r.config.model_weights, fs::absolute(run_folder(s, pre)).lexically_normal().string());
  }
  EXPECT_TRUE(s.runs[2].is_baseline);
  EXPECT_EQ(s.runs[3].baseline_hash, s.runs[2].hash);
  EXPECT_EQ(s.runs[3].config.model_freeze, "all");
}

TEST_F(Suites, AReferenceToAMissingLaterOrAmbiguousStageIsAnError) {
  auto error = [&](const std::string& text) {
    const std::string file = (dir_.path() / "bad.yaml").string();
    std::ofstream(file) << "output: out\n" << text;
    return test::error_of([&] { load_suite(file, *host_); });
  };
  std::string stages = kStages;
  const std::string typo = std::string(kStages).replace(std::string(kStages).find("@pretrain"), 9, "@pretrian");
  std::string e = error(typo);
  EXPECT_NE(e.find("stage finetune: model.weights: '@pretrian' refers to stage 'pretrian', which is not an earlier "
                   "stage of this suite (earlier stages: 'pretrain'); did you mean 'pretrain'?"),
            std::string::npos)
      << e;
  e = error("stages:\n  - {name: first, base: base.yaml, set: {model.weights: \"@second\"}, matrix: {train.epochs: [1]}}\n"
            "  - {name: second, base: base.yaml, matrix: {train.epochs: [1]}}\n");
  EXPECT_NE(e.find("refers to stage 'second', which is not an earlier stage of this suite (it has none)"),
            std::string::npos)
      << e;
  // Two pretraining runs and no shared axis to choose between them.
  e = error("stages:\n  - {name: pre, base: base.yaml, matrix: {model.width: [0.0625, 0.125]}}\n"
            "  - {name: fine, base: base.yaml, set: {model.weights: \"@pre\"}, matrix: {train.epochs: [1]}}\n");
  EXPECT_NE(e.find("'@pre' for the run with train.epochs=1 matches 2 runs of stage 'pre'"), std::string::npos) << e;
  e = error("stages:\n  - {name: pre, base: base.yaml, matrix: {train.epochs: [1]}}\n"
            "  - {name: pre, base: base.yaml, matrix: {train.epochs: [2]}}\n");
  EXPECT_NE(e.find("stage 'pre' appears twice"), std::string::npos) << e;
  e = error("stages:\n  - {name: pre, base: base.yaml, matrix: {train.epochs: [1]}, output: x}\n");
  EXPECT_NE(e.find("output: unknown stage key (expected 'name', 'base'"), std::string::npos) << e;
}

TEST_F(Suites, AStageRunsAfterTheRunItNeedsAndFailsWhenThatRunFailed) {
  const std::string file = (dir_.path() / "staged.yaml").string();
  // The wide pretraining run reads a data folder that does not exist.
  std::string text = kStages;
  const std::string wide = "net: [{label: narrow, model.width: 0.0625}, {label: wide, model.width: 0.125}]";
  text.replace(text.find(wide), wide.size(),
               "net: [{label: narrow, model.width: 0.0625}, {label: wide, model.width: 0.125, dataset.root: "
               "/nonexistent}]");
  std::ofstream(file) << "output: out\n" << text;
  test::LdropResult r = test::run_ldrop("suite run " + file);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("[done] finetune.narrow.full"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[done] finetune.narrow.probe"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[FAILED] finetune.wide.full: not started: it needs run pretrain.wide of stage pretrain, "
                          "which failed"),
            std::string::npos)
      << r.output;
  EXPECT_LT(r.output.find("[done] pretrain.narrow"), r.output.find("[done] finetune.narrow.full")) << r.output;
  // A probe from the pretrained model keeps its stages: its weights log names the run.
  const fs::path log = dir_.path() / "out" / "logs";
  bool found = false;
  for (const auto& e : fs::directory_iterator(log)) {
    if (e.path().filename().string().rfind("finetune.narrow.probe", 0) != 0) continue;
    std::ifstream in(e.path());
    const std::string text_log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    found = text_log.find("tensors from run " + (fs::absolute(dir_.path() / "out" / "runs")).lexically_normal().string() +
                          "/pretrain.narrow-") != std::string::npos;
  }
  EXPECT_TRUE(found);
  // Run again: the finished stages are reused, only the failed runs run.
  EXPECT_NE(r.output.find("3 finished, 3 failed, 0 skipped, 0 not started"), std::string::npos) << r.output;
  r = test::run_ldrop("suite run " + file);
  EXPECT_NE(r.output.find("6 runs (0 excluded), 3 already finished"), std::string::npos) << r.output;
}

TEST_F(Suites, FreezeAndProbeBaselinesAreAddedAndReported) {
  const std::string file =
      write_suite("set: {train.epochs: 4}\nmatrix:\n  policy:\n    - {policy.plugin: none}\n"
                  "    - {policy.plugin: fixed, policy.epoch: 1, policy.cut: 4, policy.drop_mode: cache}\n"
                  "baseline: {policy.plugin: none}\ncompare: [freeze, probe]\nbudget: flops\n");
  // budget: flops matches K to the run's forward FLOPs: the same K on a
  // loaded machine (matched to time, a slow drop run gave K 0, the baseline).
  test::LdropResult r = test::run_ldrop("suite run " + file);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("1 pair(s) with finished runs; 3 further baseline run(s) to run"), std::string::npos)
      << r.output;
  ResultsDb db(dir_.str() + "/out/results.db");
  std::map<std::string, RunRecord> by_role;
  for (const auto& rec : db.runs()) by_role[rec.role.empty() ? (rec.is_baseline ? "full" : "drop") : rec.role] = rec;
  ASSERT_TRUE(by_role.count("freeze") && by_role.count("probe")) << r.output;
  const json links = json::parse(by_role["drop"].compare_json);
  EXPECT_EQ(links["freeze"], by_role["freeze"].config_hash);
  EXPECT_EQ(links["probe"], by_role["probe"].config_hash);
  EXPECT_EQ(json::parse(by_role["probe"].summary_json)["frozen_from_start"], 8);
  EXPECT_NE(by_role["freeze"].label.find("none.freeze"), std::string::npos);
  r = test::run_ldrop("suite report " + file);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("| accuracy freeze % | accuracy probe % |"), std::string::npos) << r.output;
  // K: the first K stages frozen cost closest to the run's time; here the
  // pair of FLOP figures decides it exactly.
  EXPECT_EQ(freeze_stages_for(1.0, {10, 10, 10}, 0), 0u);
  EXPECT_EQ(freeze_stages_for(7.0 / 9.0, {10, 10, 10}, 0), 1u);  // (10 + 3 * 20) / 90
  EXPECT_EQ(freeze_stages_for(0.1, {10, 10, 10}, 0), 2u);        // at most n - 1
}

}  // namespace ld::core
