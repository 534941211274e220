#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <optional>

#include "cifar_fixture.h"
#include "idx_fixture.h"
#include "jpeg_fixture.h"
#include "learndrop/abi.h"
#include "learndrop/core/config.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/option_table.h"
#include "learndrop/registrar.h"
#include "test_env.h"

namespace ld::core {

namespace {

std::string load_error(const std::string& plugin) {
  auto host = test::builtin_host();
  try {
    host->load_library(test::test_plugin(plugin));
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(PluginHost, LoadsEveryBuiltinPlugin) {
  auto host = test::builtin_host();
  std::vector<std::string> names;
  for (const auto& p : host->plugins())
    names.push_back(std::string(to_string(p.manifest.kind)) + "/" + p.manifest.name);
  std::vector<std::string> expected = {"model/resnet",      "model/vgg",        "dataset/cifar10",
                                       "dataset/imagenette", "dataset/mnist",    "policy/autofreeze",
                                       "policy/cka",         "policy/fixed",     "policy/freeze-probe", "policy/freezeout",
                                       "policy/learn-drop",  "policy/none",      "policy/python",
                                       "cache/auto",         "cache/device",     "cache/disk",
                                       "cache/ram"};
  EXPECT_EQ(names, expected);
  for (const auto& p : host->plugins()) {
    EXPECT_FALSE(p.manifest.version.empty()) << p.manifest.name;
    EXPECT_FALSE(p.manifest.description.empty()) << p.manifest.name;
    EXPECT_NE(p.library.find("ldp_"), std::string::npos) << p.library;
  }
}

// Issue 31, defect 9: a plugin key with a host key's name was silently
// never given to the plugin.
TEST(PluginHost, APluginKeyWithAHostKeysNameIsRefusedNamingBoth) {
  const std::string e = load_error("host_key_clash");
  EXPECT_NE(e.find("ldp_host_key_clash.so: policy 'clash' declares key 'shadow', which is the host's policy.shadow ("),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("the plugin would never see its value; rename the plugin's key"), std::string::npos) << e;
}

// Issue 30: the drop guards are the host's, applied to every policy; a
// policy may declare one only to give its default, with the host's type.
TEST(PluginHost, APolicyDeclaringADropGuardWithAnotherTypeIsRefusedNamingBoth) {
  const std::string e = load_error("guard_key_clash");
  EXPECT_NE(e.find("ldp_guard_key_clash.so: policy 'guard-clash' declares key 'cooldown' as int, which is the host's "
                   "drop guard policy.cooldown (a float: "),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("declare it as a float to give its default, or rename the plugin's key"), std::string::npos) << e;
  // The built-in policies declare guards with the host's types: they load (LoadsEveryBuiltinPlugin).
}

TEST(PluginHost, MissingEntrySymbolIsNamed) {
  std::string e = load_error("missing_symbol");
  EXPECT_NE(e.find("ldp_missing_symbol.so"), std::string::npos) << e;
  EXPECT_NE(e.find("does not export 'learndrop_plugin_entry'"), std::string::npos) << e;
}

// Issue 12, CLI finding 3: these crashed the host (exit 139).
TEST(PluginHost, AnEntryThatIsNullOrAFunctionIsRefusedNotCalled) {
  std::string e = load_error("null_entry");
  EXPECT_NE(e.find("ldp_null_entry.so"), std::string::npos) << e;
  EXPECT_NE(e.find("is a null pointer"), std::string::npos) << e;
  e = load_error("function_entry");
  EXPECT_NE(e.find("ldp_function_entry.so"), std::string::npos) << e;
  EXPECT_NE(e.find("as a function, not as the entry pointer"), std::string::npos) << e;
}

// Issue 12, CLI finding 12: load errors ended with a spurious ": Bad file descriptor".
TEST(PluginHost, AFileThatIsNoLibraryGetsTheLoadersOwnReason) {
  test::TempDir dir;
  const std::string file = dir.str() + "/ldp_text.so";
  std::ofstream(file) << "not a library";
  auto host = test::builtin_host();
  const std::string e = test::error_of([&] { host->load_library(file); });
  EXPECT_NE(e.find("cannot load plugin library " + file + ": "), std::string::npos) << e;
  EXPECT_NE(e.find("file too short"), std::string::npos) << e;
  EXPECT_EQ(e.find("Bad file descriptor"), std::string::npos) << e;
  EXPECT_EQ(e.find("boost::dll"), std::string::npos) << e;
}

// Issue 12, one plugin boundary: whatever a plugin's call throws becomes an
// ld::Error naming the plugin, its library, the config section and the call.
TEST(PluginHost, EveryCallIntoAPluginNamesThePluginItsLibraryAndTheCall) {
  auto host = test::builtin_host();
  const std::string lib = test::test_plugin("throwing_calls");
  host->load_library(lib);
  auto dataset = host->create_dataset("throwing-calls", Options(), DatasetContext{});
  EXPECT_EQ(dataset->size(Split::kTrain), 4) << "calls that do not throw pass through";
  std::string e = test::error_of([&] { dataset->get_batch(Split::kTrain, {0}, 0); });
  EXPECT_NE(e.find("dataset plugin 'throwing-calls' (" + lib + ", section dataset) failed in get_batch: a plain "
                   "std::runtime_error from get_batch"),
            std::string::npos)
      << e;
  auto policy = host->create_policy("throwing-calls", Options(), PolicyContext{});
  e = test::error_of([&] { policy->decide(PolicyInput{}); });
  EXPECT_NE(e.find("policy plugin 'throwing-calls' (" + lib + ", section policy) failed in decide with an unknown "
                   "exception"),
            std::string::npos)
      << e;
  auto cache = host->create_cache("throwing-calls", Options(), CacheContext{});
  e = test::error_of([&] { cache->get({7}); });
  EXPECT_NE(e.find("cache plugin 'throwing-calls' (" + lib + ", section cache) failed in get: row 7 is unreadable"),
            std::string::npos)
      << e;
  // A reader from the default implementation goes through the boundary too.
  auto reader = cache->reader({0, 1}, 2);
  e = test::error_of([&] { reader->next(); });
  EXPECT_NE(e.find("failed in reader next: "), std::string::npos) << e;
}

// An ld::Error is a plugin's refusal of its input; anything else it throws is
// a fault in the plugin, and the error says which (the fuzz targets rely on it).
TEST(PluginHost, PluginErrorsTellARefusalFromAFault) {
  auto host = test::builtin_host();
  host->load_library(test::test_plugin("throwing_calls"));
  auto unexpected = [](const std::function<void()>& f) -> std::optional<bool> {
    try {
      f();
    } catch (const PluginError& e) {
      return e.unexpected();
    } catch (...) {
    }
    return std::nullopt;
  };
  auto dataset = host->create_dataset("throwing-calls", Options(), DatasetContext{});
  auto policy = host->create_policy("throwing-calls", Options(), PolicyContext{});
  auto cache = host->create_cache("throwing-calls", Options(), CacheContext{});
  EXPECT_EQ(unexpected([&] { dataset->get_batch(Split::kTrain, {0}, 0); }), true) << "std::runtime_error";
  EXPECT_EQ(unexpected([&] { policy->decide(PolicyInput{}); }), true) << "throw 42";
  EXPECT_EQ(unexpected([&] { cache->get({7}); }), false) << "ld::Error";
  EXPECT_EQ(unexpected([&] { host->create_dataset("mnist", test::plugin_options(*host, PluginKind::kDataset, "mnist",
                                                                                {{"root", "/nonexistent/x"}}),
                                                  DatasetContext{}); }),
            false)
      << "a factory's ld::Error";
}

TEST(PluginHost, AnUnresolvedSymbolIsAnErrorAtLoadTime) {
  const std::string e = load_error("unresolved_symbol");
  EXPECT_NE(e.find("cannot load plugin library"), std::string::npos) << e;
  EXPECT_NE(e.find("ldp_unresolved_symbol.so"), std::string::npos) << e;
  EXPECT_NE(e.find("ld_test_function_that_nobody_defines"), std::string::npos) << e;
}

TEST(PluginHost, NewerAbiIsRefusedWithBothVersions) {
  std::string e = load_error("newer_abi");
  EXPECT_NE(e.find("ldp_newer_abi.so"), std::string::npos) << e;
  EXPECT_NE(e.find("SDK ABI " + std::to_string(kSdkAbiVersion + 1)), std::string::npos) << e;
  EXPECT_NE(e.find("this host has SDK ABI " + std::to_string(kSdkAbiVersion)), std::string::npos) << e;
}

TEST(PluginHost, ALibraryOfTheOldestSdkAbiStillLoadsAndItsPolicyWorks) {
  // ABI 12 only added ValueType::kPath, which an ABI 11 library cannot use.
  ASSERT_EQ(kSdkAbiVersion, 12u);
  ASSERT_EQ(kOldestSdkAbiVersion, 11u);
  auto host = test::builtin_host();
  host->load_library(test::test_plugin("older_abi"));
  auto policy = host->create_policy("older-abi", Options(), PolicyContext{});
  EXPECT_EQ(policy->decide(PolicyInput{}).cut, 0u);
  // The refusal of a newer one names the range this host loads.
  EXPECT_NE(load_error("newer_abi").find("(it loads 11 to 12)"), std::string::npos) << load_error("newer_abi");
}

TEST(PluginHost, APluginLoadsWhenOnlyAnotherExtensionPointsInterfaceChanged) {
  // The library was built against an SDK whose cache interface was one
  // version older: its policy loads and decides, its cache is refused by name.
  core::PluginHost host;
  host.load_library(test::test_plugin("older_cache_interface"));
  auto policy = host.create_policy("older-sdk", Options(), PolicyContext{});
  PolicyInput in;
  in.cut = 2;
  EXPECT_EQ(policy->decide(in).cut, 3u);
  const std::string e =
      test::error_of([&] { host.create_cache("older-sdk", Options(), CacheContext{}); });
  EXPECT_NE(e.find("cache plugin 'older-sdk'"), std::string::npos) << e;
  EXPECT_NE(e.find("cache interface version " + std::to_string(kCacheInterfaceVersion - 1)), std::string::npos) << e;
  EXPECT_NE(e.find("this host has version " + std::to_string(kCacheInterfaceVersion)), std::string::npos) << e;
  ASSERT_EQ(host.refused().size(), 1u);
  EXPECT_EQ(host.plugins(PluginKind::kCache).size(), 0u);
}

TEST(PluginHost, APolicyBuiltAgainstAnotherPolicyInterfaceIsRefusedNamingBothVersions) {
  core::PluginHost host;
  host.load_library(test::test_plugin("older_policy_interface"));
  const std::string e = test::error_of([&] { host.create_policy("older-sdk", Options(), PolicyContext{}); });
  EXPECT_NE(e.find("policy interface version " + std::to_string(kPolicyInterfaceVersion - 1)), std::string::npos)
      << e;
  EXPECT_NE(e.find("this host has version " + std::to_string(kPolicyInterfaceVersion)), std::string::npos) << e;
  EXPECT_EQ(host.plugins(PluginKind::kPolicy).size(), 0u);
}

TEST(PluginHost, OtherLibTorchIsRefused) {
  std::string e = load_error("other_torch");
  EXPECT_NE(e.find("ldp_other_torch.so"), std::string::npos) << e;
  EXPECT_NE(e.find("built against LibTorch " + std::to_string(TORCH_VERSION_MAJOR) + "." +
                   std::to_string(TORCH_VERSION_MINOR + 1)),
            std::string::npos)
      << e;
}

TEST(PluginHost, DuplicateNameNamesBothLibraries) {
  std::string e = load_error("duplicate_name");
  EXPECT_NE(e.find("ldp_duplicate_name.so registers policy 'none'"), std::string::npos) << e;
  EXPECT_NE(e.find("ldp_none.so already registered"), std::string::npos) << e;
}

TEST(PluginHost, FailedLibraryAddsNothing) {
  auto host = test::builtin_host();
  std::size_t before = host->plugins().size();
  EXPECT_THROW(host->load_library(test::test_plugin("duplicate_name")), Error);
  EXPECT_EQ(host->plugins().size(), before);
  EXPECT_NE(host->find(PluginKind::kPolicy, "none").library.find("ldp_none.so"), std::string::npos);
}

TEST(PluginHost, ThrowingFactoryIsNamedWithItsLibrary) {
  auto host = test::builtin_host();
  host->load_library(test::test_plugin("throwing_factory"));
  try {
    host->create_policy("throwing", Options(), PolicyContext{});
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("policy plugin 'throwing'"), std::string::npos) << m;
    EXPECT_NE(m.find("ldp_throwing_factory.so"), std::string::npos) << m;
    EXPECT_NE(m.find("this test plugin always fails"), std::string::npos) << m;
  }
}

TEST(PluginHost, UnknownNameListsKnownOnes) {
  auto host = test::builtin_host();
  try {
    host->find(PluginKind::kPolicy, "learndrop");
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("did you mean 'learn-drop'?"), std::string::npos) << m;
    EXPECT_NE(m.find("known: 'autofreeze', 'cka', 'fixed', 'freeze-probe', 'freezeout', 'learn-drop', 'none', 'python'"), std::string::npos) << m;
  }
}

TEST(PluginHost, MissingFileAndFolderAreNamed) {
  PluginHost host;
  EXPECT_THROW(host.load_library("/nonexistent/ldp_x.so"), Error);
  try {
    host.load_directory("/nonexistent-plugins");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-plugins does not exist"), std::string::npos);
  }
}

TEST(PluginHost, ObjectsKeepTheirLibraryLoaded) {
  std::shared_ptr<DropPolicy> policy;
  {
    PluginHost host;
    host.load_library(test::test_plugin("scripted_policy"));
    policy = host.create_policy(
        "scripted", test::plugin_options(host, PluginKind::kPolicy, "scripted", {{"cuts", "2,5"}}), PolicyContext{});
  }  // the host and its registry are gone; the library must not be
  PolicyInput in;
  in.eval_point = 2;
  EXPECT_EQ(policy->decide(in).cut, 5u);
  EXPECT_EQ(policy->decide(in).reason, "scripted");
}

TEST(PluginHost, EnvironmentPathAddsPlugins) {
  setenv("LEARNDROP_PLUGIN_PATH", (std::string(LEARNDROP_TEST_PLUGIN_DIR) + "/scripted_policy:").c_str(), 1);
  PluginHost host;
  host.load_standard_paths();
  unsetenv("LEARNDROP_PLUGIN_PATH");
  EXPECT_NO_THROW(host.find(PluginKind::kPolicy, "scripted"));
  EXPECT_NO_THROW(host.find(PluginKind::kModel, "vgg"));
}

// Caffe's habit: every registered plugin can be created from its defaults.
TEST(PluginHost, EveryBuiltinPluginCreatesFromItsDefaults) {
  test::TempDir dir;
  test::write_idx_fixture(dir.str());
  test::write_cifar_fixture(dir.str());       // all three read the same root
  test::write_imagenette_fixture(dir.str());  // (as its imagenette2/ subfolder)
  auto host = test::builtin_host();
  for (const auto& info : host->plugins()) {
    SCOPED_TRACE(info.manifest.name);
    switch (info.manifest.kind) {
      case PluginKind::kModel: {
        auto model =
            host->create_model(info.manifest.name, test::plugin_options(*host, info.manifest.kind, info.manifest.name),
                               ModelContext{3, 32, 32, 10});
        EXPECT_GT(model->num_stages(), 0u);
        break;
      }
      case PluginKind::kDataset: {
        auto ds = host->create_dataset(
            info.manifest.name,
            test::plugin_options(*host, info.manifest.kind, info.manifest.name, {{"root", dir.str()}}),
            DatasetContext{});
        EXPECT_GT(ds->size(Split::kTrain), 0);
        break;
      }
      case PluginKind::kPolicy: {
        std::map<std::string, std::string> set;
        if (info.manifest.name == "python") {  // its one required key: a criterion that never drops
          std::ofstream(dir.path() / "never.py") << "class Policy:\n  def __init__(self, context, options): pass\n"
                                                    "  def decide(self, input): return input.cut\n";
          set["file"] = (dir.path() / "never.py").string();
        }
        auto p = host->create_policy(info.manifest.name,
                                     test::plugin_options(*host, info.manifest.kind, info.manifest.name, set),
                                     PolicyContext{8, 10, 3});
        PolicyInput in;
        in.eval_point = 1;
        in.stages.resize(8);
        if (p->wants_feature_similarity())  // what the host measures for such a policy
          for (auto& s : in.stages) s.feature_similarity = s.feature_similarity_start = 0.5;
        if (p->wants_freeze_probe()) {  // freezing any prefix would have doubled the probe's loss
          in.probe_loss = 1.0;
          for (auto& s : in.stages) s.frozen_probe_loss = 2.0;
        }
        EXPECT_EQ(p->decide(in).cut, 0u);  // nothing has stopped learning at the first point
        break;
      }
      case PluginKind::kCache: {
        auto c =
            host->create_cache(info.manifest.name, test::plugin_options(*host, info.manifest.kind, info.manifest.name),
                               CacheContext{dir.str(), 1});
        c->begin(CacheLayout{1, 2, {3}, at::kFloat, "0123456789abcdef"});
        c->put({1, 0}, at::arange(6, at::kFloat).reshape({2, 3}));
        c->finish();
        EXPECT_TRUE(c->get({0}).equal(at::tensor({3.f, 4.f, 5.f}).reshape({1, 3})));
        break;
      }
    }
  }
}

}  // namespace ld::core

namespace ld::core {

// The SDK's OptionTable: one table of keys and the members they set.
namespace {
struct TableOptions {
  std::int64_t window = 0;
  double threshold = 0;
  float scale = 0;
  bool flag = false;
  std::string mode;
};
}  // namespace

TEST(OptionTable, KeysComeInOrderAndReadFillsEveryMember) {
  const auto table = OptionTable<TableOptions>()
                         .add(ConfigKey("window", ValueType::kInt, "5", "w"), &TableOptions::window)
                         .add(ConfigKey("threshold", ValueType::kFloat, "0.5", "t"), &TableOptions::threshold)
                         .add(ConfigKey("scale", ValueType::kFloat, "2", "s"), &TableOptions::scale)
                         .add(ConfigKey("flag", ValueType::kBool, "true", "f"), &TableOptions::flag)
                         .add(ConfigKey("mode", ValueType::kString, "a", "m"), &TableOptions::mode)
                         .add_unbound({ConfigKey("extra", ValueType::kInt, "1", "read elsewhere")});
  std::vector<std::string> names;
  for (const auto& k : table.keys()) names.push_back(k.name);
  EXPECT_EQ(names, (std::vector<std::string>{"window", "threshold", "scale", "flag", "mode", "extra"}));
  std::map<std::string, Value> values;
  for (const auto& k : table.keys()) values[k.name] = parse_value(k, k.default_value, k.name);
  values["window"] = parse_value(table.keys()[0], "7", "window");
  const TableOptions o = table.read(Options("policy", values));
  EXPECT_EQ(o.window, 7);
  EXPECT_DOUBLE_EQ(o.threshold, 0.5);
  EXPECT_FLOAT_EQ(o.scale, 2.0f);
  EXPECT_TRUE(o.flag);
  EXPECT_EQ(o.mode, "a");
}

TEST(OptionTable, AKeyOfAnotherTypeThanItsMemberIsRefused) {
  EXPECT_THROW(OptionTable<TableOptions>().add(ConfigKey("window", ValueType::kFloat, "5", "w"), &TableOptions::window),
               Error);
  EXPECT_THROW(OptionTable<TableOptions>().add(ConfigKey("mode", ValueType::kBool, "true", "m"), &TableOptions::mode),
               Error);
}

}  // namespace ld::core
