#include <gtest/gtest.h>

#include "learndrop/drop_guards.h"

#include <filesystem>
#include <fstream>
#include <thread>

#include "learndrop/core/config.h"
#include "learndrop/error.h"
#include "test_env.h"

namespace ld::core {

namespace {

// The message of the ld::Error that resolving `yaml` (with `sets`) throws.
std::string error_of(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  static auto host = test::builtin_host();
  try {
    ConfigTree tree = parse_config(yaml, "cfg.yaml");
    for (const auto& s : sets) apply_override(tree, s);
    resolve_config(tree, *host);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

RunConfig resolve(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  static auto host = test::builtin_host();
  ConfigTree tree = parse_config(yaml, "cfg.yaml");
  for (const auto& s : sets) apply_override(tree, s);
  return resolve_config(tree, *host);
}

}  // namespace

TEST(Config, UnknownKeyNamesFileLineKeyAndSuggestion) {
  std::string e = error_of("policy:\n  plugin: learn-drop\n  treshold: 0.3\n");
  EXPECT_NE(e.find("cfg.yaml:3"), std::string::npos) << e;
  EXPECT_NE(e.find("policy.treshold"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key for policy 'learn-drop'"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'threshold'?"), std::string::npos) << e;
}

// Found by fuzz_config: a structured option (the python policy's `options`)
// with bytes that are not UTF-8 escaped as a JSON exception, not an ld::Error.
TEST(Config, AStructuredOptionThatIsNotUtf8IsNamed) {
  const std::string e = error_of("policy:\n  plugin: python\n  options: {a: \"\xff\xfe\"}\n");
  EXPECT_NE(e.find("policy.options: expected"), std::string::npos) << e;
  EXPECT_NE(e.find("got bytes that are not UTF-8"), std::string::npos) << e;
}

// Issue 30: the drop guards are the host's. Every policy takes them; one
// that does not declare them gets their neutral values, which stay out of
// the config hash (older configs keep theirs), while a value set enters it.
TEST(Config, EveryPolicyTakesTheDropGuardsAndTheirNeutralValuesKeepTheHash) {
  const RunConfig fixed = resolve("policy:\n  plugin: fixed\n");
  for (const auto& k : ld::host_guard_keys()) EXPECT_TRUE(fixed.policy.options.has(k.name)) << k.name;
  EXPECT_DOUBLE_EQ(fixed.policy.options.get_float("min_progress"), 0.0);
  EXPECT_EQ(fixed.policy.options.get_int("keep_stages"), 0);
  EXPECT_DOUBLE_EQ(fixed.policy.options.get_float("max_fraction"), 1.0);
  EXPECT_EQ(fixed.identity_yaml().find("min_progress"), std::string::npos) << fixed.identity_yaml();
  EXPECT_NE(fixed.effective_yaml().find("min_progress"), std::string::npos) << fixed.effective_yaml();
  EXPECT_EQ(resolve(fixed.effective_yaml()).hash(), fixed.hash());
  const RunConfig held = resolve("policy:\n  plugin: fixed\n  min_progress: 0.5\n");
  EXPECT_NE(held.hash(), fixed.hash());
  EXPECT_EQ(resolve(held.effective_yaml()).hash(), held.hash());
  // A policy that declares a guard gives its default, and it is hashed as before.
  const RunConfig learn_drop = resolve("policy:\n  plugin: learn-drop\n");
  EXPECT_DOUBLE_EQ(learn_drop.policy.options.get_float("min_progress"), 0.4);
  EXPECT_NE(learn_drop.identity_yaml().find("min_progress"), std::string::npos);
  // A bad value is named like any key's.
  const std::string e = error_of("policy:\n  plugin: fixed\n  cooldown: 2\n");
  EXPECT_NE(e.find("cfg.yaml:3: policy.cooldown"), std::string::npos) << e;
}

TEST(Config, WrongTypeNamesExpectedType) {
  std::string e = error_of("train:\n  epochs: many\n");
  EXPECT_NE(e.find("cfg.yaml:2: train.epochs"), std::string::npos) << e;
  EXPECT_NE(e.find("expected an int"), std::string::npos) << e;
  EXPECT_NE(e.find("'many'"), std::string::npos) << e;
  EXPECT_NE(error_of("train:\n  epochs: 2.5\n").find("expected an int"), std::string::npos);
  EXPECT_NE(error_of("train:\n  nesterov: maybe\n").find("expected a bool"), std::string::npos);
  EXPECT_NE(error_of("train:\n  lr: [1, 2]\n").find("got a list"), std::string::npos);
}

TEST(Config, OutOfRangeNamesTheRange) {
  std::string e = error_of("policy:\n  plugin: learn-drop\n  max_fraction: 1.5\n");
  EXPECT_NE(e.find("policy.max_fraction"), std::string::npos) << e;
  EXPECT_NE(e.find("in [0, 1]"), std::string::npos) << e;
  EXPECT_NE(e.find("got 1.5"), std::string::npos) << e;
  EXPECT_NE(error_of("train:\n  epochs: 0\n").find("in [1, 100000]"), std::string::npos);
}

TEST(Config, ChoiceKeysListTheChoices) {
  std::string e = error_of("train:\n  optimizer: sdg\n");
  EXPECT_NE(e.find("one of 'sgd', 'adam', 'adamw'"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'sgd'?"), std::string::npos) << e;
}

TEST(Config, UnknownPluginAndSectionAreNamed) {
  std::string e = error_of("model:\n  plugin: vgj\n");
  EXPECT_NE(e.find("cfg.yaml:2: model.plugin"), std::string::npos) << e;
  EXPECT_NE(e.find("no model plugin named 'vgj'; did you mean 'vgg'?"), std::string::npos) << e;
  e = error_of("trian:\n  epochs: 1\n");
  EXPECT_NE(e.find("unknown section; did you mean 'train'?"), std::string::npos) << e;
}

TEST(Config, ThreadsAreAutoOrAPositiveCount) {
  EXPECT_EQ(resolve("runtime:\n  threads: 3\n").threads, 3);
  EXPECT_EQ(resolve("runtime:\n  threads: auto\n").threads,
            static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  EXPECT_NE(error_of("runtime:\n  threads: three\n").find("expected 'auto' or a thread count"), std::string::npos);
  EXPECT_NE(error_of("runtime:\n  threads: 0\n").find("runtime.threads"), std::string::npos);
  // Loader threads default to the training threads.
  EXPECT_EQ(resolve("runtime:\n  threads: 3\n").loader_threads, 3);
  EXPECT_EQ(resolve("runtime:\n  threads: 3\n  loader_threads: 1\n").loader_threads, 1);
  EXPECT_NE(error_of("runtime:\n  loader_threads: -2\n").find("runtime.loader_threads: expected 'auto'"),
            std::string::npos);
  EXPECT_NE(error_of("runtime:\n  prefetch: 100\n").find("runtime.prefetch"), std::string::npos);
}

TEST(Config, CacheViewsArePartOfTheEffectiveConfig) {
  RunConfig rc = resolve("cache:\n  views: 4\n");
  EXPECT_EQ(rc.cache_views, 4);
  EXPECT_NE(rc.effective_yaml().find("views: 4"), std::string::npos) << rc.effective_yaml();
  EXPECT_NE(rc.hash(), resolve("cache:\n  views: 2\n").hash());
  EXPECT_NE(error_of("cache:\n  views: 0\n").find("cache.views"), std::string::npos);
}

TEST(Config, SetOverridesAnyKeyAndIsNamedInErrors) {
  RunConfig rc = resolve("train:\n  epochs: 5\n", {"train.epochs=3", "policy.plugin=none", "model.width=0.25"});
  EXPECT_EQ(rc.train.epochs, 3);
  EXPECT_EQ(rc.policy.plugin, "none");
  EXPECT_DOUBLE_EQ(rc.model.options.get_float("width"), 0.25);
  std::string e = error_of("", {"train.epochs=x"});
  EXPECT_NE(e.find("train.epochs (from --set)"), std::string::npos) << e;
  EXPECT_NE(error_of("", {"train.epochs"}).find("expected KEY=VALUE"), std::string::npos);
  EXPECT_NE(error_of("", {"epochs=3"}).find("expected SECTION.KEY=VALUE"), std::string::npos);
}

TEST(Config, SwitchingPluginWithSetLeavesOutTheOldPluginsKeys) {
  RunConfig rc = resolve("policy:\n  plugin: learn-drop\n  threshold: 0.3\n", {"policy.plugin=none"});
  EXPECT_EQ(rc.policy.plugin, "none");
  ASSERT_EQ(rc.warnings.size(), 1u);
  EXPECT_NE(rc.warnings[0].find("policy.threshold: ignored"), std::string::npos) << rc.warnings[0];
  // Without a switch the same key for the wrong plugin stays an error.
  EXPECT_NE(error_of("policy:\n  plugin: none\n  threshold: 0.3\n").find("unknown key"), std::string::npos);
}

TEST(Config, DefaultsAreFilledFromManifests) {
  RunConfig rc = resolve("policy:\n  plugin: learn-drop\n");
  EXPECT_EQ(rc.policy.options.get_int("window"), 1);
  EXPECT_DOUBLE_EQ(rc.policy.options.get_float("threshold"), 0.5);
  EXPECT_EQ(rc.policy.options.get_string("reference"), "peak");
  EXPECT_EQ(rc.train.optimizer, "sgd");
  EXPECT_EQ(rc.cache.plugin, "ram");
  EXPECT_EQ(rc.cache_dtype, "float32");
}

// Issue 30: a plugin's string key given a mapping (the python policy's
// `options: {...}`) receives it as JSON text, from the file or --set.
TEST(Config, AMappingForAPluginsStringKeyArrivesAsJson) {
  const RunConfig from_file =
      resolve("policy:\n  plugin: python\n  file: x.py\n  options: {threshold: 0.5, name: a, on: true, "
              "quoted: '7', list: [1, 2]}\n");
  EXPECT_EQ(from_file.policy.options.get_string("options"),
            R"({"list":[1,2],"name":"a","on":true,"quoted":"7","threshold":0.5})");
  const RunConfig from_set = resolve("policy:\n  plugin: python\n  file: x.py\n",
                                     {R"(policy.options={"threshold":0.3})"});
  EXPECT_EQ(from_set.policy.options.get_string("options"), R"({"threshold":0.3})");
  EXPECT_NE(error_of("train:\n  epochs: {a: 1}\n").find("expected an int"), std::string::npos)
      << "only string keys take a mapping";
}

// Issue 29: from trained weights the default criterion is cka; a policy
// named in the config or with --set stays, and without weights learn-drop.
TEST(Config, TheDefaultPolicyIsCkaFromTrainedWeightsAndLearnDropOtherwise) {
  EXPECT_EQ(resolve("train:\n  epochs: 2\n").policy.plugin, "learn-drop");
  const std::string weights = "model:\n  weights: runs/pretrain\n";
  const RunConfig from_weights = resolve(weights);
  EXPECT_EQ(from_weights.policy.plugin, "cka");
  EXPECT_EQ(from_weights.policy.options.get_float("start_threshold"), 0.995) << "cka's own defaults";
  EXPECT_EQ(resolve(weights + "policy:\n  plugin: learn-drop\n").policy.plugin, "learn-drop");
  EXPECT_EQ(resolve(weights, {"policy.plugin=none"}).policy.plugin, "none");
  EXPECT_NE(resolve(weights).effective_yaml().find("plugin: cka"), std::string::npos);
}

// Issue 31: docs/config.md's table of host keys is the key table itself.
TEST(Config, TheHostKeyTableInDocsConfigMdIsTheOneTheHostValidates) {
  std::ifstream in(std::string(LEARNDROP_SOURCE_DIR) + "/docs/config.md");
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string begin = "<!-- generated by `ldrop keys`: begin -->\n";
  const std::string end = "<!-- generated by `ldrop keys`: end -->";
  const auto b = doc.find(begin), e = doc.find(end);
  ASSERT_NE(b, std::string::npos);
  ASSERT_NE(e, std::string::npos);
  const std::string table = host_keys_markdown();
  EXPECT_EQ(doc.substr(b + begin.size(), e - b - begin.size()), table)
      << "docs/config.md is out of date: put the output of 'build/bin/ldrop keys' between its markers";
  EXPECT_NE(table.find("| `policy.plugin` | string | learn-drop | drop policy plugin"), std::string::npos) << table;
  EXPECT_NE(table.find("| `runtime.prefetch` | int 0..64 | 2 |"), std::string::npos) << table;
}

// Issue 31, defect 10: a second YAML document was ignored, /dev/zero was
// read until memory ran out, and an error echoed a 10 MB value whole.
TEST(Config, OneDocumentOfBoundedSizeAndErrorsQuoteLongValuesClipped) {
  EXPECT_NE(error_of("train:\n  epochs: 2\n---\ntrain:\n  epochs: 3\n")
                .find("cfg.yaml: holds more than one YAML document (separated by '---'); a config is one document"),
            std::string::npos);
  // yaml-cpp's LoadAll never returned on a stray ',' (tools/fuzz.sh, CI of
  // stop 32): each call gave an empty document at the same place.
  EXPECT_NE(error_of(",").find("cfg.yaml:1: invalid YAML: unexpected ',' at column 1, outside any [...] or {...}"),
            std::string::npos)
      << error_of(",");
  EXPECT_NE(error_of("train:\n  epochs: [2],\n").find("invalid YAML"), std::string::npos);
  EXPECT_NE(error_of(std::string("\0\0\0a: 1\n", 8)).find("cfg.yaml: holds a NUL byte (offset 0); a config is UTF-8 text"),
            std::string::npos);
  EXPECT_NE(error_of("[1, 2],").find("cfg.yaml:1: invalid YAML: unexpected ',' at column 7"), std::string::npos)
      << error_of("[1, 2],");
  EXPECT_NE(test::error_of([] { load_config("/dev/zero"); })
                .find("/dev/zero: larger than 1 MiB; a config is a few KiB of YAML"),
            std::string::npos);
  const std::string e = error_of("train:\n  lr_schedule: " + std::string(10 << 20, 'x') + "\n");
  EXPECT_LT(e.size(), 400u) << e.substr(0, 400);
  EXPECT_NE(e.find("... (10485760 characters)"), std::string::npos) << e.substr(0, 400);
}

TEST(Config, DeviceAndPrecisionAreCheckedAndCacheDtypeFollowsPrecision) {
  RunConfig rc = resolve("");
  EXPECT_EQ(rc.device, "auto");
  EXPECT_EQ(rc.train.precision, "fp32");
  EXPECT_EQ(resolve("train:\n  precision: bf16\n").cache_dtype, "bfloat16");
  EXPECT_EQ(resolve("train:\n  precision: fp16\n").cache_dtype, "float16");
  EXPECT_EQ(resolve("train:\n  precision: bf16\ncache:\n  dtype: float32\n").cache_dtype, "float32")
      << "an explicit cache.dtype wins";
  const std::string e = error_of("runtime:\n  device: gpu\n");
  EXPECT_NE(e.find("cfg.yaml:2"), std::string::npos) << e;
  EXPECT_NE(e.find("runtime.device"), std::string::npos) << e;
  EXPECT_NE(e.find("expected auto, cpu, cuda or cuda:N, got 'gpu'"), std::string::npos) << e;
  EXPECT_NE(error_of("train:\n  precision: fp8\n").find("fp32"), std::string::npos);
  const RunConfig gpu = resolve("runtime:\n  device: cuda:1\ntrain:\n  precision: fp16\n");
  EXPECT_NE(gpu.effective_yaml().find("device: cuda:1"), std::string::npos);
  EXPECT_NE(gpu.effective_yaml().find("precision: fp16"), std::string::npos);
  EXPECT_NE(gpu.hash(), rc.hash());
}

// Issue 12, CLI finding 4: repeated keys were accepted silently, a repeated
// section resolving to the first and a repeated key to the last.
TEST(Config, ARepeatedKeyOrSectionIsAnErrorNamingBothLines) {
  std::string e = error_of("train:\n  epochs: 3\n  epochs: 5\n");
  EXPECT_NE(e.find("cfg.yaml:3: key 'epochs' appears twice in the same mapping (first on line 2)"), std::string::npos)
      << e;
  e = error_of("train:\n  epochs: 3\npolicy:\n  plugin: none\ntrain:\n  epochs: 5\n");
  EXPECT_NE(e.find("cfg.yaml:5: key 'train' appears twice in the same mapping (first on line 1)"), std::string::npos)
      << e;
  EXPECT_EQ(resolve("train:\n  epochs: 3\npolicy:\n  plugin: none\n").train.epochs, 3);
}

// Found by tools/fuzz.sh (config and suite targets): a complex or empty key
// escaped as yaml-cpp's "bad conversion", an exception that is not ld::Error.
TEST(Config, AKeyThatIsNotANameIsRefusedNamingTheLine) {
  std::string e = error_of("model:\n  plugin: resnet\n? variant: resnet18\n");
  EXPECT_NE(e.find("cfg.yaml:3: expected a key name, got a mapping as a key"), std::string::npos) << e;
  e = error_of("train:\n  ? [epochs, lr]\n  : 1\n");
  EXPECT_NE(e.find("cfg.yaml:2: expected a key name, got a list as a key"), std::string::npos) << e;
  e = error_of("train:\n  epochs: 2\n  ~: 1\n");
  EXPECT_NE(e.find("expected a key name, got an empty key"), std::string::npos) << e;
}

// Found by tools/fuzz.sh (config target, CI): an alias to a mapping or list
// that contains it made the tree cyclic, and the key check recursed until the
// stack overflowed. An alias bomb expands to billions of values.
TEST(Config, ACyclicAliasOrAnAliasBombIsRefusedNotWalked) {
  std::string e = error_of("train: &x\n  a: *x\n");
  EXPECT_NE(e.find("cfg.yaml:2: an alias refers to a mapping or list that contains it (a cycle)"), std::string::npos)
      << e;
  e = error_of("model: &m\n  plugin: vgg\ndataset:\n  z: [1, *m, [*m]]\n  y: &s [*s]\n");
  EXPECT_NE(e.find("contains it (a cycle)"), std::string::npos) << e;
  std::string bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 9; ++i) {
    const std::string prev = "*a" + std::to_string(i - 1);
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) bomb += (j ? ", " : "") + prev;
    bomb += "]\n";
  }
  e = error_of(bomb);
  EXPECT_NE(e.find("the config expands to more than 100000 values (through aliases)"), std::string::npos) << e;
  // An alias that only repeats a value is YAML, and fine.
  const RunConfig shared = resolve("train:\n  epochs: &n 4\n  lr_step_epochs: *n\n");
  EXPECT_EQ(shared.train.epochs, 4);
  EXPECT_EQ(shared.train.lr_step_epochs, 4);
}

// Issue 12, CLI finding 11: the name became a path, runs/../../escape.
TEST(Config, ExperimentNameIsAFolderNameNotAPath) {
  for (const char* bad : {"../../escape", "a/b", ".hidden", "", "-rf", "two words"}) {
    const std::string e = error_of(std::string("experiment:\n  name: '") + bad + "'\n");
    EXPECT_NE(e.find("experiment.name: expected a name of letters, digits"), std::string::npos) << bad << ": " << e;
  }
  EXPECT_EQ(resolve("experiment:\n  name: cifar10-resnet18_v2.1\n").name, "cifar10-resnet18_v2.1");
  EXPECT_NE(error_of("", {"experiment.name=../x"}).find("(from --set)"), std::string::npos);
}

// Issue 12, CLI finding 12: deep nesting got "invalid YAML: bad file".
TEST(Config, DeepNestingIsNamedAsSuch) {
  const std::string e = error_of("a: " + std::string(5000, '[') + std::string(5000, ']') + "\n");
  EXPECT_NE(e.find("invalid YAML: nested more than"), std::string::npos) << e;
  EXPECT_EQ(e.find("bad file"), std::string::npos) << e;
}

// Issue 12, CLI finding 12: a folder got "does not exist".
TEST(Config, AConfigPathThatIsAFolderOrMissingIsNamedForWhatItIs) {
  test::TempDir dir;
  EXPECT_NE(test::error_of([&] { load_config(dir.str()); }).find(": is a folder, not a config file"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { load_config(dir.str() + "/none.yaml"); }).find("config file does not exist"),
            std::string::npos);
  // Not "does not exist" for a name the file system refuses (found by tools/fuzz.sh).
  const std::string e_long = test::error_of([&] { load_config(dir.str() + "/" + std::string(300, 'c') + ".yaml"); });
  EXPECT_NE(e_long.find(": cannot read the config file: File name too long"), std::string::npos) << e_long;
  std::ofstream(dir.path() / "dup.yaml") << "train:\n  lr: 0.1\n  lr: 0.2\n";
  const std::string e = test::error_of([&] { load_config((dir.path() / "dup.yaml").string()); });
  EXPECT_NE(e.find("dup.yaml:3: key 'lr' appears twice"), std::string::npos) << e;
}

// Issue 31, defect 6: a relative path resolved against the working
// directory, so a config's data or weights depended on where ldrop ran.
TEST(Config, RelativePathsResolveAgainstTheConfigsFolderSetOnesAgainstTheirOwn) {
  namespace fs = std::filesystem;
  static auto host = test::builtin_host();
  test::TempDir dir;
  const fs::path folder = dir.path() / "configs" / "sub";
  fs::create_directories(folder);
  const std::string file = (folder / "run.yaml").string();
  std::ofstream(file) << "model:\n  weights: ../pretrained/model.pt\n  head: reset\n"
                         "dataset:\n  plugin: mnist\n  root: data\n"
                         "cache:\n  plugin: disk\n  dir: /tmp/./x/../cache\npolicy:\n  plugin: python\n  file: p.py\n";
  const RunConfig rc = resolve_config(load_config(file), *host);
  EXPECT_EQ(rc.model_weights, (dir.path() / "configs" / "pretrained" / "model.pt").lexically_normal().string());
  EXPECT_EQ(rc.dataset.options.get_string("root"), (folder / "data").lexically_normal().string());
  EXPECT_EQ(rc.cache_dir, "/tmp/cache");
  EXPECT_EQ(rc.policy.options.get_string("file"), (folder / "p.py").lexically_normal().string());
  // The effective config (a run folder's config.yaml) holds them absolute:
  // read from anywhere, it names the same files and is the same run.
  const RunConfig again = resolve(rc.effective_yaml());
  EXPECT_EQ(again.model_weights, rc.model_weights);
  EXPECT_EQ(again.hash(), rc.hash());
  // --set on the command line: against the working directory; a suite's
  // set: against the suite file's folder.
  ConfigTree t = load_config(file);
  apply_override(t, "model.weights=w.pt");
  apply_override(t, "dataset.root=d", "/srv/suites");
  const RunConfig set = resolve_config(t, *host);
  EXPECT_EQ(set.model_weights, (fs::current_path() / "w.pt").string());
  EXPECT_EQ(set.dataset.options.get_string("root"), "/srv/suites/d");
  // Unset stays unset.
  EXPECT_EQ(resolve("model:\n  plugin: vgg\n").model_weights, "");
}

TEST(Config, EffectiveConfigResolvesToTheSameRun) {
  RunConfig a = resolve("experiment:\n  seed: 7\ntrain:\n  epochs: 4\n", {"policy.window=3"});
  RunConfig b = resolve(a.effective_yaml());
  EXPECT_EQ(a.hash(), b.hash());
  EXPECT_EQ(b.seed, 7u);
  EXPECT_EQ(b.policy.options.get_int("window"), 3);
  RunConfig c = resolve(a.effective_yaml(), {"experiment.seed=8"});
  EXPECT_NE(a.hash(), c.hash());
}

TEST(Config, InvalidYamlNamesTheLine) {
  std::string e;
  try {
    parse_config("train:\n  epochs: [1\n", "bad.yaml");
  } catch (const Error& err) {
    e = err.what();
  }
  EXPECT_NE(e.find("bad.yaml:"), std::string::npos) << e;
  EXPECT_NE(e.find("invalid YAML"), std::string::npos) << e;
}

// Issue 22: a warm-up longer than the run was accepted without a word.
TEST(Config, AWarmUpLongerThanTheRunIsWarnedAbout) {
  const RunConfig rc = resolve("model: {plugin: vgg}\ntrain: {epochs: 2, warmup_epochs: 50}\n");
  ASSERT_EQ(rc.warnings.size(), 1u);
  EXPECT_NE(rc.warnings[0].find("cfg.yaml:2: train.warmup_epochs: 50 epochs of warm-up in a run of 2 epochs: the "
                                "learning rate never reaches train.lr"),
            std::string::npos)
      << rc.warnings[0];
  EXPECT_TRUE(resolve("model: {plugin: vgg}\ntrain: {epochs: 2, warmup_epochs: 1}\n").warnings.empty());
}

}  // namespace ld::core
