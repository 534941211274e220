#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "learndrop/manifest.h"
#include "learndrop/options.h"

namespace ld::core {

class PluginHost;

/// A config file as loaded, with `--set` overrides applied, before validation.
struct ConfigTree {
  YAML::Node root;
  std::string file;                    ///< Path of the YAML file ("" for a string).
  std::vector<std::string> overrides;  ///< Dotted keys set with --set.
  /// Of each key in `overrides`: the folder a relative path value resolves
  /// against ("" = the working directory: `--set` on the command line).
  std::map<std::string, std::string> relative_to;
};

/// Loads a YAML config file. Throws ld::Error naming the file and line.
ConfigTree load_config(const std::string& file);

/// Parses YAML text; `origin` names it in errors.
ConfigTree parse_config(const std::string& text, const std::string& origin);

/// Applies `KEY=VALUE` (KEY dotted) to the tree: VALUE as written, in YAML
/// syntax only when it is a list, a mapping or a quoted string. A relative
/// path value resolves against `relative_to` ("" = the working directory).
void apply_override(ConfigTree& tree, const std::string& assignment, const std::string& relative_to = "");

/// Sets SECTION.KEY to `value` as it is (no text parsed as YAML: a path
/// stays the path); `origin` names the setting in errors.
void set_value(ConfigTree& tree, const std::string& key, const YAML::Node& value, const std::string& origin,
               const std::string& relative_to = "");

/// A plugin section: which plugin, and its validated options.
struct PluginChoice {
  std::string plugin;
  Options options;
};

/// Training settings (the `train` section).
struct TrainSettings {
  std::int64_t epochs = 0;
  std::int64_t batch_size = 0;
  std::int64_t eval_batch_size = 0;
  std::string optimizer;
  double lr = 0;
  double momentum = 0;
  bool nesterov = false;
  double weight_decay = 0;
  std::string lr_schedule;
  std::int64_t lr_step_epochs = 0;
  double lr_gamma = 0;
  double warmup_epochs = 0;
  std::int64_t eval_every = 1;  ///< Test evaluation every N epochs (and after the last).
  std::string precision = "fp32";  ///< fp32 | bf16 | fp16 (autocast).
  std::int64_t checkpoint_every = 1;  ///< Epochs between checkpoints (0 = none; not part of the hash).
  std::string checkpoint_keep = "last";  ///< last | all: keep each epoch's checkpoint (checkpoints/epoch-N).
};

/// Data that arrive over time (the `stream` section; docs/online.md).
struct StreamSettings {
  std::int64_t parts = 1;           ///< The training set arrives in this many equal parts.
  std::string order = "shuffle";    ///< shuffle | dataset | classes: which samples arrive in which part.
  std::int64_t epochs = 0;          ///< Epochs after each arrival (0 when parts is 1: train.epochs).
  std::string lr = "restart";       ///< restart | continue: the schedule per arrival or over the stream.
  bool enabled() const { return parts > 1; }
  /// The stream's epoch rule, in one place: a stream trains `epochs` after
  /// each arrival and parts x epochs in all; a run without one trains
  /// train.epochs as one part.
  std::int64_t epochs_per_part(std::int64_t train_epochs) const { return enabled() ? epochs : train_epochs; }
  std::int64_t total_epochs(std::int64_t per_part) const { return enabled() ? parts * per_part : per_part; }
};

/// A validated config: every key known, typed and in range, defaults filled.
struct RunConfig {
  std::string file;
  std::string name;
  std::uint64_t seed = 0;
  int threads = 1;                     ///< Resolved from runtime.threads (auto = hardware cores).
  std::string threads_setting;         ///< As written: "auto" or a number.
  int loader_threads = 1;              ///< Resolved from runtime.loader_threads (auto = threads).
  std::string loader_threads_setting;  ///< As written.
  std::int64_t prefetch = 2;           ///< Batches prepared ahead of training (0 = none).
  std::string device = "auto";         ///< runtime.device as written (resolved when a run starts).
  std::string dist_backend = "auto";   ///< runtime.dist_backend: auto | gloo | nccl (not part of the hash).
  double dist_timeout = 300;           ///< runtime.dist_timeout, seconds (not part of the hash).
  TrainSettings train;
  PluginChoice model, dataset, policy, cache;
  std::string model_weights;              ///< model.weights: trained weights to start from ("" = none).
  std::string model_head = "keep";        ///< model.head: keep | reset | probe.
  std::int64_t model_head_epochs = 5;     ///< model.head_epochs: epochs of the probe fit (head: probe).
  double model_head_lr = 0.1;             ///< model.head_lr: learning rate of the probe fit (head: probe).
  std::string model_freeze = "0";         ///< model.freeze: stages frozen from the start ("all" or a number).
  std::string dataset_classes_setting;    ///< dataset.classes as "5,6,7" ("" = every class).
  std::vector<std::int64_t> dataset_classes;  ///< dataset.classes parsed (empty = every class).
  StreamSettings stream;
  bool policy_shadow = false;             ///< policy.shadow: consult and log, never drop.
  std::string drop_mode = "auto";         ///< policy.drop_mode: auto | cache | freeze.
  bool cost_guard = true;                 ///< policy.cost_guard: drop only when it pays.
  std::int64_t probe_samples = 0;         ///< policy.probe_samples: the feature probe's batch (0 = when asked).
  /// The drop guards (ld::host_guard_keys) the host added to policy.options
  /// because the policy's manifest does not declare them: at their neutral
  /// value they stay out of the config hash, which older configs keep.
  std::vector<std::string> policy_guards_added;
  std::string cache_dtype;                ///< float32 | float16 | bfloat16 (auto resolved from train.precision)
  std::int64_t cache_views = 1;           ///< Augmented views cached per training sample (augment: views).
  std::string cache_dir;                  ///< cache.dir, absolute ("" = <run folder>/cache): cache_folder().
  std::string cache_augment = "auto";     ///< auto | feature | views
  std::vector<std::string> plugin_paths;  ///< Absolute paths from plugins.paths.
  std::vector<std::string> warnings;      ///< Keys left out (see resolve_config).

  /// The effective config as YAML (every key, defaults included).
  std::string effective_yaml() const;
  /// The effective config without the keys that do not change what the
  /// run computes (train.checkpoint_every, runtime.dist_*): what hash() and cache keys digest.
  std::string identity_yaml() const;
  /// Stable hash of the identity config (identifies a run with its seed).
  std::string hash() const;

 private:
  std::string emit_yaml(bool all_keys) const;
};

/// The keys of the host's own sections (experiment, runtime, train, plugins)
/// and of the host keys in plugin sections (`plugin`, `cache.dtype`).
const std::vector<ConfigKey>& host_section_keys(const std::string& section);

/// Every host key of every section as a Markdown table (key, type, default,
/// meaning): `ldrop keys` prints it and docs/config.md holds it (a test
/// compares them).
std::string host_keys_markdown();

/// Whether the dotted key (e.g. "train.checkpoint_every") changes what a run
/// computes: false for the keys that stay out of the config hash.
bool is_identity_key(const std::string& dotted);

/// Reads `plugins.paths` (resolved against the config file's folder).
std::vector<std::string> plugin_paths(const ConfigTree& tree);

/// Validates the tree against the host's keys and the chosen plugins'
/// manifests. Throws ld::Error naming file, line, key and what was expected.
RunConfig resolve_config(const ConfigTree& tree, const PluginHost& host);

/// Validates one mapping against `keys` (unknown keys, types, ranges) and
/// returns the options with defaults filled. `label` names the owner in
/// messages, e.g. "policy 'learn-drop'". Keys in `skip` are ignored.
Options validate_section(const ConfigTree& tree, const std::string& section, const YAML::Node& node,
                         const std::vector<ConfigKey>& keys, const std::string& label,
                         const std::vector<std::string>& skip = {});

/// Parses a default or override value written as a YAML scalar into `key`'s type.
Value parse_value(const ConfigKey& key, const std::string& text, const std::string& where);

/// Renders a Value as YAML/JSON-compatible text.
std::string value_to_string(const Value& value);

}  // namespace ld::core
