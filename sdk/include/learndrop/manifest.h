#pragma once

#include <optional>
#include <string>
#include <vector>

#include "learndrop/export.h"

namespace ld {

/// The four extension points.
enum class PluginKind { kModel, kDataset, kPolicy, kCache };

/// Returns "model", "dataset", "policy" or "cache".
inline const char* to_string(PluginKind kind) {
  switch (kind) {
    case PluginKind::kModel:
      return "model";
    case PluginKind::kDataset:
      return "dataset";
    case PluginKind::kPolicy:
      return "policy";
    case PluginKind::kCache:
      return "cache";
  }
  return "?";
}

/// Type of a config value. A path is a string that names a file or folder:
/// the host resolves a relative one against the folder of the config file
/// that sets it (a `--set` one against the working directory), so the
/// plugin receives an absolute path (kPath: SDK ABI 12).
enum class ValueType { kBool, kInt, kFloat, kString, kPath };

/// Returns "bool", "int", "float", "string" or "path".
inline const char* to_string(ValueType type) {
  switch (type) {
    case ValueType::kBool:
      return "bool";
    case ValueType::kInt:
      return "int";
    case ValueType::kFloat:
      return "float";
    case ValueType::kString:
      return "string";
    case ValueType::kPath:
      return "path";
  }
  return "?";
}

/// One config key a plugin accepts.
///
/// Example:
/// ```
/// ConfigKey("threshold", ValueType::kFloat, "0.3", "score below which a stage may stop")
///     .range(0.0, 10.0)
/// ```
struct LEARNDROP_VISIBLE ConfigKey {
  ConfigKey(std::string name, ValueType type, std::string default_value, std::string meaning)
      : name(std::move(name)), type(type), default_value(std::move(default_value)), meaning(std::move(meaning)) {}

  /// Inclusive numeric bounds (int and float keys).
  ConfigKey& range(double lo, double hi) {
    min = lo;
    max = hi;
    return *this;
  }
  /// Allowed values of a string key.
  ConfigKey& one_of(std::vector<std::string> values) {
    choices = std::move(values);
    return *this;
  }

  std::string name;
  ValueType type;
  std::string default_value;  ///< In YAML scalar syntax; "" means no default (required).
  std::string meaning;
  std::optional<double> min;
  std::optional<double> max;
  std::vector<std::string> choices;
};

/// What a plugin is, readable without creating it.
struct LEARNDROP_VISIBLE Manifest {
  PluginKind kind = PluginKind::kModel;
  std::string name;
  std::string version;
  std::string description;
  std::vector<ConfigKey> keys;
};

}  // namespace ld
