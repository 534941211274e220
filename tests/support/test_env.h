#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "learndrop/core/plugin_host.h"

namespace ld::test {

/// A fresh temporary folder, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

/// Sets an environment variable for its lifetime (unset: nullptr), then
/// restores the previous value.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const char* value);
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  bool had_ = false;
  std::string old_;
};

/// A plugin host with the built-in plugins loaded.
std::unique_ptr<core::PluginHost> builtin_host();

/// Options of plugin `name` of `kind`: the manifest's defaults with `set`
/// (key -> YAML scalar) applied.
Options plugin_options(const core::PluginHost& host, PluginKind kind, const std::string& name,
                       const std::map<std::string, std::string>& set = {});

/// Path of test plugin `name` (built into tests/plugins/<name>/ldp_<name>.so).
std::string test_plugin(const std::string& name);

/// What a run of the ldrop command line printed (stdout and stderr) and its exit code.
struct LdropResult {
  int code = -1;
  std::string output;
};

/// Runs `ldrop ARGS`, with `env` (e.g. "NAME=value ") before the command.
LdropResult run_ldrop(const std::string& args, const std::string& env = "");

/// Runs `bash -c SCRIPT` (SCRIPT without single quotes): its output (stdout
/// and stderr) and exit code.
LdropResult run_shell(const std::string& script);

/// The message of the ld::Error `f` throws, or "(no error)".
std::string error_of(const std::function<void()>& f);

/// A config for a tiny VGG on the idx fixture in `data_dir` (YAML text).
std::string tiny_config(const std::string& data_dir, const std::string& extra = "");

/// A run's summary or metrics line without what measures time or the I/O of
/// the processes that ran it, and without where it was resumed or branched
/// from: what two runs of one config and seed must have equal.
nlohmann::json without_timing(nlohmann::json j);

}  // namespace ld::test
