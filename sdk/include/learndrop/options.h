#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>

#include "learndrop/error.h"
#include "learndrop/export.h"

namespace ld {

/// A validated config value.
using Value = std::variant<bool, std::int64_t, double, std::string>;

/// Read-only view of one plugin's config section, validated against its
/// manifest and completed with the manifest's defaults by the host.
///
/// Example:
/// ```
/// double threshold = options.get_float("threshold");
/// ```
class LEARNDROP_VISIBLE Options {
 public:
  Options() = default;
  Options(std::string section, std::map<std::string, Value> values)
      : section_(std::move(section)), values_(std::move(values)) {}

  bool has(const std::string& key) const { return values_.count(key) != 0; }
  bool get_bool(const std::string& key) const { return get<bool>(key, "bool"); }
  std::int64_t get_int(const std::string& key) const { return get<std::int64_t>(key, "int"); }
  double get_float(const std::string& key) const {
    const Value& v = at(key);
    if (auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
    return get<double>(key, "float");
  }
  std::string get_string(const std::string& key) const { return get<std::string>(key, "string"); }
  /// The config section these options come from, e.g. "policy".
  const std::string& section() const { return section_; }
  const std::map<std::string, Value>& values() const { return values_; }

 private:
  const Value& at(const std::string& key) const {
    auto it = values_.find(key);
    if (it == values_.end()) throw Error(section_ + "." + key + ": key is not set");
    return it->second;
  }
  template <typename T>
  T get(const std::string& key, const char* type) const {
    const Value& v = at(key);
    if (auto* p = std::get_if<T>(&v)) return *p;
    throw Error(section_ + "." + key + ": expected a " + type);
  }

  std::string section_;
  std::map<std::string, Value> values_;
};

}  // namespace ld
