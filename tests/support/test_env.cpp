#include "test_env.h"

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <random>

#include <sys/wait.h>
#include <unistd.h>

#include "learndrop/core/config.h"

namespace ld::test {

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() / ("learndrop-test-" + std::to_string(::getpid()) + "-" +
                                                    std::to_string(counter++) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::unique_ptr<core::PluginHost> builtin_host() {
  auto host = std::make_unique<core::PluginHost>();
  host->load_directory(core::PluginHost::builtin_directory());
  return host;
}

Options plugin_options(const core::PluginHost& host, PluginKind kind, const std::string& name,
                       const std::map<std::string, std::string>& set) {
  const core::PluginInfo& info = host.find(kind, name);
  std::map<std::string, Value> values;
  for (const auto& k : info.manifest.keys) {
    auto it = set.find(k.name);
    values[k.name] = core::parse_value(k, it != set.end() ? it->second : k.default_value, k.name);
  }
  for (const auto& [k, v] : set) {
    if (!values.count(k)) throw Error("test: plugin " + name + " has no key " + k);
  }
  return Options(to_string(kind), values);
}

std::string test_plugin(const std::string& name) {
  return std::string(LEARNDROP_TEST_PLUGIN_DIR) + "/" + name + "/ldp_" + name + ".so";
}

namespace {
// Output and exit code of a shell command line.
LdropResult capture(const std::string& cmd) {
  LdropResult r;
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), p) != nullptr) r.output += buf.data();
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}
}  // namespace

LdropResult run_ldrop(const std::string& args, const std::string& env) {
  return capture(env + LDROP_EXE + " " + args + " 2>&1");
}

LdropResult run_shell(const std::string& script) { return capture("bash -c '" + script + "' 2>&1"); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

ScopedEnv::ScopedEnv(std::string name, const char* value) : name_(std::move(name)) {
  if (const char* old = std::getenv(name_.c_str())) {
    had_ = true;
    old_ = old;
  }
  if (value != nullptr) {
    setenv(name_.c_str(), value, 1);
  } else {
    unsetenv(name_.c_str());
  }
}

ScopedEnv::~ScopedEnv() {
  if (had_) {
    setenv(name_.c_str(), old_.c_str(), 1);
  } else {
    unsetenv(name_.c_str());
  }
}

std::string tiny_config(const std::string& data_dir, const std::string& extra) {
  return "experiment:\n  name: tiny\n  seed: 3\n"
         "runtime:\n  threads: 1\n"
         "model:\n  plugin: vgg\n  variant: vgg11_bn\n  width: 0.0625\n  classifier: compact\n  dropout: 0.0\n"
         "dataset:\n  plugin: mnist\n  root: " +
         data_dir +
         "\n"
         "train:\n  epochs: 3\n  batch_size: 32\n  lr: 0.05\n  lr_schedule: constant\n"
         "policy:\n  plugin: none\n"
         "cache:\n  plugin: ram\n" +
         extra;
}

nlohmann::json without_timing(nlohmann::json j) {
  // A resumed epoch re-reads the batches read ahead before the interruption.
  static const char* const kTimingFields[] = {"epoch_seconds",
                                              "train_seconds",
                                              "train_seconds_total",
                                              "images_per_second",
                                              "cache_wait_seconds",
                                              "cache_read_bytes",
                                              "wall_seconds",
                                              "cache_build_seconds",
                                              "cache_allocate_seconds",
                                              "checkpoint_seconds",
                                              "predicted_saving_seconds",
                                              "full_images_per_second",
                                              "self_speedup",
                                              "measured_saving_seconds",
                                              "cache_seconds",
                                              "fit_seconds"};
  if (j.is_object()) {
    for (const char* f : kTimingFields) j.erase(f);
    j.erase("resumes");        // where the run was resumed
    j.erase("branched_from");  // and where it branched from another run
    j.erase("cache");          // the cache's description names its file (with the pid)
    for (auto& [k, v] : j.items()) v = without_timing(v);
  } else if (j.is_array()) {
    for (auto& v : j) v = without_timing(v);
  }
  return j;
}

}  // namespace ld::test
