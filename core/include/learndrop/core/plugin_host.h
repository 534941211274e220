#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "learndrop/abi.h"
#include "learndrop/error.h"
#include "learndrop/manifest.h"
#include "learndrop/options.h"

namespace ld {
class StagedModel;
class Dataset;
class DropPolicy;
class FeatureCache;
struct ModelContext;
struct DatasetContext;
struct PolicyContext;
struct CacheContext;
}  // namespace ld

namespace ld::core {

/// Why plugin `name` of `kind`, from a library stamped `plugin`, cannot be
/// used by this host: the interface of its extension point has another
/// version; "" when it can.
std::string interface_refusal(const AbiStamp& plugin, PluginKind kind, const std::string& name,
                              const std::string& library);

/// A registered plugin, as `ldrop plugins list` shows it.
struct PluginInfo {
  Manifest manifest;
  std::string library;  ///< Path of the shared library that registered it.
};

/// What the host throws when a call into a plugin fails: an ld::Error naming
/// the plugin, its library and the call. `unexpected()` is true when the
/// plugin threw something other than ld::Error (std::bad_alloc, a LibTorch
/// error, ...): a fault in the plugin rather than its refusal of bad input.
/// The fuzz targets (tests/fuzz) count those as crashes.
class PluginError : public Error {
 public:
  PluginError(const std::string& what, bool unexpected) : Error(what), unexpected_(unexpected) {}
  bool unexpected() const { return unexpected_; }

 private:
  bool unexpected_;
};

/// Loads plugin libraries with Boost.DLL and creates plugin objects.
///
/// Each library exports one entry (`learndrop_plugin_entry`) that reports the
/// ABI it was built for and registers its plugins on a registrar. Every object
/// created here keeps its library loaded until the object is destroyed. Every
/// failure is an ld::Error naming the library.
class PluginHost {
 public:
  PluginHost();
  ~PluginHost();
  PluginHost(const PluginHost&) = delete;
  PluginHost& operator=(const PluginHost&) = delete;

  /// Loads one library and registers its plugins (all or none of them).
  void load_library(const std::filesystem::path& file);

  /// Loads every `*.so` in `dir` (sorted by name). A missing folder is an error.
  void load_directory(const std::filesystem::path& dir);

  /// Loads a folder or a single library.
  void load_path(const std::filesystem::path& path);

  /// Loads the built-in folder, then every entry of `LEARNDROP_PLUGIN_PATH`
  /// (colon-separated folders or files).
  void load_standard_paths();

  /// The folder of the built-in plugins, next to the running executable.
  static std::filesystem::path builtin_directory();

  /// Why each plugin that a loaded library registered was refused: an
  /// interface it implements has another version than this host's
  /// (interface_refusal). Using one by name throws this reason.
  std::vector<std::string> refused() const;

  /// Every registered plugin, optionally of one kind, sorted by kind and name.
  std::vector<PluginInfo> plugins(std::optional<PluginKind> kind = std::nullopt) const;

  /// The plugin `name` of `kind`; the error lists the known names.
  const PluginInfo& find(PluginKind kind, const std::string& name) const;

  /// Plugins of any kind called `name`.
  std::vector<PluginInfo> find_any(const std::string& name) const;

  std::shared_ptr<StagedModel> create_model(const std::string& name, const Options& options,
                                            const ModelContext& context) const;
  std::shared_ptr<Dataset> create_dataset(const std::string& name, const Options& options,
                                          const DatasetContext& context) const;
  std::shared_ptr<DropPolicy> create_policy(const std::string& name, const Options& options,
                                            const PolicyContext& context) const;
  std::shared_ptr<FeatureCache> create_cache(const std::string& name, const Options& options,
                                             const CacheContext& context) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ld::core
