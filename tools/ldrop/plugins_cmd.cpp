#include <algorithm>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/text.h"
#include "learndrop/drop_guards.h"
#include "learndrop/error.h"

namespace ld::cli {

namespace {

nlohmann::json to_json(const core::PluginInfo& info) {
  const Manifest& m = info.manifest;
  nlohmann::json keys = nlohmann::json::array();
  for (const auto& k : m.keys) {
    nlohmann::json key = {
        {"name", k.name}, {"type", to_string(k.type)}, {"default", k.default_value}, {"meaning", k.meaning}};
    if (k.min) key["min"] = *k.min;
    if (k.max) key["max"] = *k.max;
    if (!k.choices.empty()) key["choices"] = k.choices;
    keys.push_back(key);
  }
  return {{"kind", to_string(m.kind)},    {"name", m.name},          {"version", m.version},
          {"description", m.description}, {"library", info.library}, {"keys", keys}};
}

}  // namespace

int plugins_list(const core::PluginHost& host, bool json) {
  auto all = host.plugins();
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& p : all) out.push_back(to_json(p));
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("%-8s %-12s %-8s %s\n", "KIND", "NAME", "VERSION", "DESCRIPTION");
  for (const auto& p : all) {
    std::printf("%-8s %-12s %-8s %s\n", to_string(p.manifest.kind), p.manifest.name.c_str(), p.manifest.version.c_str(),
                p.manifest.description.c_str());
  }
  return 0;
}

int plugins_describe(const core::PluginHost& host, const std::string& name, bool json) {
  auto found = host.find_any(name);
  if (found.empty()) {
    std::vector<std::string> names;
    for (const auto& p : host.plugins()) names.push_back(p.manifest.name);
    throw Error("no plugin named '" + name + "'" + core::did_you_mean(name, names) +
                " (known: " + core::quoted_list(names) + ")");
  }
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& p : found) out.push_back(to_json(p));
    std::cout << (found.size() == 1 ? out[0] : out).dump(2) << "\n";
    return 0;
  }
  for (const auto& p : found) {
    const Manifest& m = p.manifest;
    std::printf("%s %s %s\n  %s\n  library: %s\n", to_string(m.kind), m.name.c_str(), m.version.c_str(),
                m.description.c_str(), p.library.c_str());
    auto print_keys = [](const std::vector<ConfigKey>& keys) {
      for (const auto& k : keys) {
        std::string type = to_string(k.type);
        if (!k.choices.empty()) type = core::quoted_list(k.choices);
        std::string range;
        if (k.min && k.max) {
          char buf[96];
          std::snprintf(buf, sizeof buf, " in [%g, %g]", *k.min, *k.max);
          range = buf;
        }
        std::printf("    %-14s %s%s, default %s\n      %s\n", k.name.c_str(), type.c_str(), range.c_str(),
                    k.default_value.empty() ? "(none)" : k.default_value.c_str(), k.meaning.c_str());
      }
    };
    if (m.keys.empty()) {
      std::printf("  config keys: none\n");
    } else {
      std::printf("  config keys (section '%s'):\n", to_string(m.kind));
      print_keys(m.keys);
    }
    // The drop guards the policy does not declare: the host's, at neutral values.
    const std::vector<ConfigKey> guards =
        m.kind == PluginKind::kPolicy ? undeclared_guard_keys(m.keys) : std::vector<ConfigKey>{};
    if (!guards.empty()) {
      std::printf("  drop guards the host applies to its answer (docs/plugins.md#drop-guards):\n");
      print_keys(guards);
    }
  }
  return 0;
}

}  // namespace ld::cli
