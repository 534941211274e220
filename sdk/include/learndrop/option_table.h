#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "learndrop/error.h"
#include "learndrop/manifest.h"
#include "learndrop/options.h"

namespace ld {

/// A plugin's config keys, each written once with the member of the plugin's
/// options struct it sets: the manifest's keys and the reading of the
/// validated Options both come from the one table.
///
/// Example:
/// ```
/// struct MyOptions { std::int64_t window = 0; double threshold = 0; };
/// const ld::OptionTable<MyOptions>& table() {
///   static const auto t = ld::OptionTable<MyOptions>()
///       .add(ld::ConfigKey("window", ld::ValueType::kInt, "5", "evaluation points compared").range(1, 100),
///            &MyOptions::window)
///       .add(ld::ConfigKey("threshold", ld::ValueType::kFloat, "0.5", "drop below this score"),
///            &MyOptions::threshold);
///   return t;
/// }
/// // manifest: m.keys = table().keys();   factory: MyOptions o = table().read(options);
/// ```
template <class T>
class OptionTable {
 public:
  using Member = std::variant<std::int64_t T::*, int T::*, double T::*, float T::*, bool T::*, std::string T::*>;

  /// Adds `key`, read into `member` (an integer member needs an int key, a
  /// floating one a float key, and so on; checked when the table is built).
  OptionTable& add(ConfigKey key, Member member) {
    const bool matches = std::visit(
        [&](auto m) {
          using V = std::decay_t<decltype(std::declval<T&>().*m)>;
          if constexpr (std::is_same_v<V, bool>) return key.type == ValueType::kBool;
          if constexpr (std::is_same_v<V, std::string>) return key.type == ValueType::kString || key.type == ValueType::kPath;
          if constexpr (std::is_floating_point_v<V>) return key.type == ValueType::kFloat;
          if constexpr (std::is_integral_v<V> && !std::is_same_v<V, bool>) return key.type == ValueType::kInt;
        },
        member);
    if (!matches) throw Error("OptionTable: key '" + key.name + "' has another type than its member");
    rows_.push_back({std::move(key), member});
    return *this;
  }

  /// Adds keys that no member takes (read by the plugin itself, e.g. shared
  /// keys such as sample_limit_keys() when it keeps them elsewhere).
  OptionTable& add_unbound(std::vector<ConfigKey> keys) {
    for (auto& k : keys) rows_.push_back({std::move(k), std::nullopt});
    return *this;
  }

  /// The keys, in the order added: the manifest's `keys`.
  std::vector<ConfigKey> keys() const {
    std::vector<ConfigKey> out;
    for (const auto& r : rows_) out.push_back(r.key);
    return out;
  }

  /// Every bound member of a T read from validated options.
  T read(const Options& options) const {
    T out{};
    for (const auto& r : rows_) {
      if (!r.member) continue;
      std::visit(
          [&](auto m) {
            using V = std::decay_t<decltype(out.*m)>;
            if constexpr (std::is_same_v<V, bool>) {
              out.*m = options.get_bool(r.key.name);
            } else if constexpr (std::is_same_v<V, std::string>) {
              out.*m = options.get_string(r.key.name);
            } else if constexpr (std::is_floating_point_v<V>) {
              out.*m = static_cast<V>(options.get_float(r.key.name));
            } else {
              out.*m = static_cast<V>(options.get_int(r.key.name));
            }
          },
          *r.member);
    }
    return out;
  }

 private:
  struct Row {
    ConfigKey key;
    std::optional<Member> member;
  };
  std::vector<Row> rows_;
};

}  // namespace ld
