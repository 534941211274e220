// The SDK's conformance suites (learndrop/testing/conformance.h), run on
// every built-in cache backend and drop policy exactly as a plugin author
// runs them on theirs.
#include "learndrop/testing/conformance.h"

#include "learndrop/registrar.h"
#include "test_env.h"

namespace ld::core {

namespace {

PluginHost& host() {
  static auto h = test::builtin_host();
  return *h;
}

ld::testing::CacheFactory cache(const std::string& plugin, std::map<std::string, std::string> keys = {}) {
  return {plugin + (keys.count("ram_budget") ? (keys["ram_budget"] == "0" ? "Disk" : "Ram") : ""), [plugin, keys] {
            static test::TempDir dir;
            CacheContext ctx{dir.str(), 2};
            ctx.dir = dir.str();
            return host().create_cache(plugin, test::plugin_options(host(), PluginKind::kCache, plugin, keys), ctx);
          }};
}

ld::testing::PolicyFactory policy(const std::string& plugin) {
  return {plugin, [plugin](const PolicyContext& ctx) {
            return host().create_policy(plugin, test::plugin_options(host(), PluginKind::kPolicy, plugin, {}), ctx);
          }};
}

std::string name_of(const std::string& n) {
  std::string out;
  for (char c : n) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

}  // namespace

using ld::testing::CacheConformance;
using ld::testing::PolicyConformance;

INSTANTIATE_TEST_SUITE_P(Builtin, CacheConformance,
                         ::testing::Values(cache("device"), cache("ram"), cache("disk", {{"prefetch", "3"}}),
                                           cache("auto", {{"ram_budget", "0"}}),
                                           cache("auto", {{"ram_budget", "1GiB"}})),
                         [](const auto& info) { return name_of(info.param.name); });

INSTANTIATE_TEST_SUITE_P(Builtin, PolicyConformance,
                         ::testing::Values(policy("learn-drop"), policy("none"), policy("fixed"), policy("freezeout"),
                                           policy("autofreeze")),
                         [](const auto& info) { return name_of(info.param.name); });

// The built-in caches grow in place, through the host's guard too (a guard
// that did not forward grow() made every arrival copy the cache).
TEST(BuiltinCaches, GrowInPlaceThroughTheHost) {
  for (const auto& f : {cache("device"), cache("ram"), cache("disk"), cache("auto", {{"ram_budget", "0"}}),
                        cache("auto", {{"ram_budget", "1GiB"}})}) {
    SCOPED_TRACE(f.name);
    auto c = f.make();
    ld::testing::fill_cache(*c, at::ones({10, 2}), at::kFloat);
    EXPECT_TRUE(c->grow(12));
    c->put({10, 11}, at::zeros({2, 2}).to(c->device()));
    c->finish();
    EXPECT_TRUE(c->get({0, 11}).cpu().equal(at::tensor({1.0f, 1.0f, 0.0f, 0.0f}).view({2, 2})));
  }
}

// auto declines to grow a RAM cut past its ram_budget, so that the host's
// copy goes to the tier that fits (disk).
TEST(BuiltinCaches, AutoDeclinesToGrowPastItsTier) {
  auto c = cache("auto", {{"ram_budget", "200B"}}).make();
  ld::testing::fill_cache(*c, at::ones({10, 2}), at::kFloat);  // 80 bytes: RAM
  EXPECT_NE(c->describe().find("ram"), std::string::npos) << c->describe();
  EXPECT_TRUE(c->grow(20));    // 160 bytes: still RAM
  c->put({10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, at::ones({10, 2}));
  c->finish();
  EXPECT_FALSE(c->grow(40));  // 320 bytes: past the budget
}

}  // namespace ld::core
