#include "learndrop/core/config.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <regex>
#include <thread>
#include <type_traits>
#include <variant>

#include <nlohmann/json.hpp>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>

#include "learndrop/core/class_subset.h"
#include "learndrop/core/device.h"
#include "learndrop/core/files.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/text.h"
#include "learndrop/drop_guards.h"
#include "learndrop/error.h"

namespace ld::core {

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kSections = {"experiment", "runtime", "model",  "dataset", "train",
                                            "stream",     "policy",  "cache", "plugins"};
const std::vector<std::string> kPluginSections = {"model", "dataset", "policy", "cache"};  // model before policy
const char* const kPolicyWithWeights = "cka";
constexpr std::size_t kMaxConfigBytes = std::size_t{1} << 20;
// Plugin keys that say where or how fast, never what a run computes: out of
// the config hash, so that a resume may change them (a full cache disk
// swapped for another). The host's own such keys say so in their row.
const std::set<std::string> kNotIdentity = {"cache.prefetch", "cache.drop_page_cache"};

PluginKind kind_of(const std::string& section) {
  if (section == "model") return PluginKind::kModel;
  if (section == "dataset") return PluginKind::kDataset;
  if (section == "policy") return PluginKind::kPolicy;
  return PluginKind::kCache;
}

// "file:line: " for a node, or "file: " when it has no position (--set).
std::string where(const ConfigTree& tree, const YAML::Node& node, const std::string& key) {
  std::string w = tree.file.empty() ? "config" : tree.file;
  bool overridden = false;
  for (const auto& o : tree.overrides) overridden = overridden || o == key;
  if (overridden) return w + ": " + key + " (from --set)";
  if (node.IsDefined() && node.Mark().line >= 0) w += ":" + std::to_string(node.Mark().line + 1);
  return w + ": " + key;
}

std::string describe_expected(const ConfigKey& key) {
  std::string s = std::string(key.type == ValueType::kInt ? "an " : "a ") + to_string(key.type);
  if (!key.choices.empty()) s = "one of " + quoted_list(key.choices);
  if (key.min && key.max) {
    s += " in [" +
         value_to_string(key.type == ValueType::kInt ? Value(static_cast<std::int64_t>(*key.min)) : Value(*key.min)) +
         ", " +
         value_to_string(key.type == ValueType::kInt ? Value(static_cast<std::int64_t>(*key.max)) : Value(*key.max)) +
         "]";
  }
  return s;
}

// A thread count setting of section runtime: "auto" (= `automatic`) or a number in [1, 1024].
int thread_count(const ConfigTree& tree, const std::string& key, const std::string& setting, int automatic) {
  if (setting == "auto") return automatic;
  std::size_t used = 0;
  int n = 0;
  try {
    n = std::stoi(setting, &used);
  } catch (...) {
    used = 0;
  }
  if (used == 0 || used != setting.size() || n < 1 || n > 1024) {
    throw Error(where(tree, tree.root["runtime"][key], "runtime." + key) +
                ": expected 'auto' or a thread count in [1, 1024], got '" + clipped(setting) + "'");
  }
  return n;
}

}  // namespace

std::string value_to_string(const Value& value) {
  if (auto* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
  if (auto* i = std::get_if<std::int64_t>(&value)) return std::to_string(*i);
  if (auto* d = std::get_if<double>(&value)) {
    YAML::Emitter e;
    e << *d;
    return e.c_str();
  }
  return std::get<std::string>(value);
}

Value parse_value(const ConfigKey& key, const std::string& text, const std::string& where_text) {
  auto fail = [&](const std::string& got) -> Error {
    return Error(where_text + ": expected " + describe_expected(key) + ", got " + clipped(got));
  };
  Value v;
  switch (key.type) {
    case ValueType::kBool:
      if (text == "true" || text == "yes" || text == "on") {
        v = true;
      } else if (text == "false" || text == "no" || text == "off") {
        v = false;
      } else {
        throw fail("'" + text + "'");
      }
      break;
    case ValueType::kInt: {
      std::size_t used = 0;
      std::int64_t i = 0;
      try {
        i = std::stoll(text, &used);
      } catch (...) {
        used = 0;
      }
      if (used == 0 || used != text.size()) throw fail("'" + text + "'");
      v = i;
      if ((key.min && i < *key.min) || (key.max && i > *key.max)) throw fail(text);
      break;
    }
    case ValueType::kFloat: {
      std::size_t used = 0;
      double d = 0;
      try {
        d = std::stod(text, &used);
      } catch (...) {
        used = 0;
      }
      if (used == 0 || used != text.size() || !std::isfinite(d)) throw fail("'" + text + "'");
      v = d;
      if ((key.min && d < *key.min) || (key.max && d > *key.max)) throw fail(text);
      break;
    }
    case ValueType::kString:
    case ValueType::kPath:
      if (!key.choices.empty() && std::find(key.choices.begin(), key.choices.end(), text) == key.choices.end()) {
        throw Error(where_text + ": expected one of " + quoted_list(key.choices) + ", got '" + clipped(text) + "'" +
                    did_you_mean(text, key.choices));
      }
      v = text;
      break;
  }
  return v;
}

namespace {
// yaml-cpp keeps both entries of a repeated key, and lookups then disagree
// (a repeated section resolved to the first, a repeated key inside a section
// to the last). A repeated key is an error naming both lines.
//
// Aliases make the tree a graph: "a: &x {b: *x}" is a mapping that contains
// itself, and every walk over it (this one, YAML::Clone, the emitter) recursed
// until the stack overflowed; a few anchors that each alias the one before
// ten times expand to billions of values. Both are refused here, before
// anything else walks the tree (found by tools/fuzz.sh, config target).
constexpr std::size_t kMaxConfigValues = 100000;

struct KeyCheck {
  const std::string& origin;
  std::vector<YAML::Node> ancestors;
  std::size_t visited = 0;

  void check(const YAML::Node& node, int line) {
    for (const auto& a : ancestors) {
      if (a.is(node)) {
        throw Error(origin + ":" + std::to_string(line) +
                    ": an alias refers to a mapping or list that contains it (a cycle)");
      }
    }
    if (++visited > kMaxConfigValues) {
      throw Error(origin + ":" + std::to_string(line) + ": the config expands to more than " +
                  std::to_string(kMaxConfigValues) + " values (through aliases)");
    }
    if (!node.IsMap() && !node.IsSequence()) return;
    ancestors.push_back(node);
    if (node.IsMap()) {
      std::map<std::string, int> seen;
      for (const auto& kv : node) {
        const int key_line = kv.first.Mark().line + 1;
        // A complex key ("? [a, b]: 1") or an empty one reached
        // YAML::Node::as<std::string>() later and escaped as yaml-cpp's "bad
        // conversion" (found by tools/fuzz.sh, config and suite targets).
        if (!kv.first.IsScalar()) {
          throw Error(origin + ":" + std::to_string(key_line) + ": expected a key name, got " +
                      (kv.first.IsNull()  ? "an empty key"
                       : kv.first.IsMap() ? "a mapping"
                                          : "a list") +
                      " as a key");
        }
        auto [it, inserted] = seen.emplace(kv.first.Scalar(), key_line);
        if (!inserted) {
          throw Error(origin + ":" + std::to_string(key_line) + ": key '" + kv.first.Scalar() +
                      "' appears twice in the same mapping (first on line " + std::to_string(it->second) + ")");
        }
        check(kv.second, key_line);
      }
    } else {
      for (const auto& item : node) check(item, item.Mark().line >= 0 ? item.Mark().line + 1 : line);
    }
    ancestors.pop_back();
  }
};
// Counts the documents of a YAML text, stopping at two. yaml-cpp's own
// LoadAll never ends on a stray ',' at the top level: its parser yields an
// empty document there without moving on (found by tools/fuzz.sh, config
// target; a 1-byte input ran the process out of memory). A document that
// starts where the one before started is that case: refused, with the place.
class DocumentCount : public YAML::EventHandler {
 public:
  static int count(const std::string& text, const std::string& origin) {
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentCount handler;
    int documents = 0;
    YAML::Mark previous = YAML::Mark::null_mark();
    while (documents < 3 && parser.HandleNextDocument(handler)) {
      if (documents > 0 && handler.start_.pos == previous.pos) {
        const auto at = static_cast<std::size_t>(handler.start_.pos);
        const char c = at < text.size() ? text[at] : '\0';
        const std::string what = c > ' ' && c < 0x7f ? std::string("'") + c + "'" : "token";
        throw Error(origin + ":" + std::to_string(handler.start_.line + 1) + ": invalid YAML: unexpected " + what +
                    " at column " + std::to_string(handler.start_.column + 1) + ", outside any [...] or {...}");
      }
      previous = handler.start_;
      ++documents;
    }
    return documents;
  }

 private:
  YAML::Mark start_ = YAML::Mark::null_mark();
  void OnDocumentStart(const YAML::Mark& mark) override { start_ = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};
}  // namespace

ConfigTree parse_config(const std::string& text, const std::string& origin) {
  ConfigTree tree;
  tree.file = origin;
  // yaml-cpp reads a text that starts with NUL bytes as UTF-16 or UTF-32.
  if (const auto nul = text.find('\0'); nul != std::string::npos) {
    throw Error(origin + ": holds a NUL byte (offset " + std::to_string(nul) + "); a config is UTF-8 text");
  }
  try {
    // One document: a second one after '---' was ignored in silence.
    if (DocumentCount::count(text, origin) > 1) {
      throw Error(origin + ": holds more than one YAML document (separated by '---'); a config is one document");
    }
    tree.root = YAML::Load(text);
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp's message for this is "bad file".
    throw Error(origin + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: nested more than " +
                std::to_string(e.depth()) + " levels deep");
  } catch (const YAML::Exception& e) {
    throw Error(origin + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  if (tree.root.IsNull()) tree.root = YAML::Node(YAML::NodeType::Map);
  if (!tree.root.IsMap()) throw Error(origin + ": expected a mapping of sections at the top level");
  KeyCheck{origin}.check(tree.root, 1);
  return tree;
}

ConfigTree load_config(const std::string& file) {
  std::error_code ec;
  const auto status = fs::status(file, ec);
  if (status.type() == fs::file_type::not_found) throw Error(file + ": config file does not exist");
  // e.g. a name too long for the file system (found by tools/fuzz.sh, suite target)
  if (ec) throw Error(file + ": cannot read the config file: " + ec.message());
  if (fs::is_directory(status)) throw Error(file + ": is a folder, not a config file");
  // Special files such as /dev/stdin are read like regular ones, but never
  // past kMaxConfigBytes (/dev/zero would take all memory).
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(file + ": cannot read the config file: " + std::strerror(errno));
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > kMaxConfigBytes) {
    throw Error(file + ": larger than " + std::to_string(kMaxConfigBytes >> 20) +
                " MiB; a config is a few KiB of YAML (is it the right file?)");
  }
  if (in.bad()) throw Error(file + ": cannot read the config file: " + std::strerror(errno));
  return parse_config(text, file);
}

void apply_override(ConfigTree& tree, const std::string& assignment, const std::string& relative_to) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw Error("--set " + assignment + ": expected KEY=VALUE, e.g. --set train.epochs=3");
  }
  std::string key = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    auto dot = key.find('.', start);
    parts.push_back(key.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (const auto& p : parts) {
    if (p.empty()) throw Error("--set " + assignment + ": empty component in key '" + key + "'");
  }
  if (parts.size() != 2) {
    throw Error("--set " + assignment + ": expected SECTION.KEY=VALUE (e.g. train.epochs=3), got key '" + key + "'");
  }
  // The text is the value as written: a path such as "/runs/exp #2" keeps
  // its " #2" (YAML would read a comment there and load another file). Only
  // a list or mapping ("[5, 6]", "{...}") or a quoted string is YAML.
  YAML::Node value(text);
  const char first = text.empty() ? '\0' : text[0];
  if (first == '[' || first == '{' || first == '"' || first == '\'') {
    try {
      value = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      throw Error("--set " + assignment + ": invalid value: " + e.msg);
    }
  }
  set_value(tree, parts[0] + "." + parts[1], value, "--set " + assignment, relative_to);
}

void set_value(ConfigTree& tree, const std::string& key, const YAML::Node& value, const std::string& origin,
               const std::string& relative_to) {
  const auto dot = key.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == key.size() || key.find('.', dot + 1) != std::string::npos) {
    throw Error(origin + ": expected SECTION.KEY, got key '" + key + "'");
  }
  const std::string section_name = key.substr(0, dot), name = key.substr(dot + 1);
  YAML::Node section = tree.root[section_name];
  if (section.IsDefined() && !section.IsNull() && !section.IsMap()) {
    throw Error(origin + ": section '" + section_name + "' is not a mapping");
  }
  tree.root[section_name][name] = value;
  tree.overrides.push_back(key);
  tree.relative_to[key] = relative_to;
}

namespace {

// Every host key, one row each: its declaration (name, type, default, range,
// help), the RunConfig field it sets, and whether it belongs to the run's
// identity. Validation (host_section_keys), reading (read_host_keys), the
// effective config and the config hash (emit_yaml) all walk these rows, so
// a key is declared, read, written and hashed in one place (issue 22).
template <class T>
using FieldRef = T& (*)(RunConfig&);
using HostField = std::variant<FieldRef<std::int64_t>, FieldRef<std::uint64_t>, FieldRef<double>, FieldRef<bool>,
                               FieldRef<std::string>>;

struct HostKey {
  ConfigKey key;
  HostField field;
  /// False for keys that do not change what a run computes (how often it
  /// checkpoints, how ranks talk): in the effective config, not in the
  /// config hash nor in cache keys.
  bool identity = true;
  /// True for keys added after configs were hashed: at their default they
  /// stay out of the identity, so that every older config keeps its hash.
  bool identity_when_set = false;
};

// The RunConfig field `Member`, or `Member` of the RunConfig struct `Section`.
template <auto Member>
HostField field() {
  return +[](RunConfig& c) -> auto& { return c.*Member; };
}
template <auto Section, auto Member>
HostField field() {
  return +[](RunConfig& c) -> auto& { return (c.*Section).*Member; };
}

using HostTable = std::vector<std::pair<std::string, std::vector<HostKey>>>;

// In the order the effective config is written.
const HostTable& host_table() {
  static const HostTable table = {
      {"experiment",
       {{ConfigKey("name", ValueType::kString, "run", "name of the experiment (default run folder runs/<name>)"),
         field<&RunConfig::name>()},
        {ConfigKey("seed", ValueType::kInt, "0", "seed of initialisation, shuffling and augmentation").range(0, 9.0e18),
         field<&RunConfig::seed>()}}},
      {"runtime",
       {{ConfigKey("threads", ValueType::kString, "auto",
                   "intra-op threads for LibTorch and TBB: auto (hardware cores) or a number"),
         field<&RunConfig::threads_setting>()},
        {ConfigKey("loader_threads", ValueType::kString, "auto",
                   "TBB threads decoding and transforming samples: auto (= threads) or a number; not part of the "
                   "config hash (the batches are the same at any count)"),
         field<&RunConfig::loader_threads_setting>(), false},
        {ConfigKey("prefetch", ValueType::kInt, "2",
                   "batches prepared in the background while the model trains (0 = load in the training thread); "
                   "not part of the config hash")
             .range(0, 64),
         field<&RunConfig::prefetch>(), false},
        {ConfigKey("device", ValueType::kString, "auto",
                   "where the model trains: auto (the first CUDA GPU if LibTorch sees one, else the CPU) | cpu | "
                   "cuda | cuda:N"),
         field<&RunConfig::device>()},
        {ConfigKey("dist_backend", ValueType::kString, "auto",
                   "collectives of a distributed run (ldrop run --nproc N, or RANK/WORLD_SIZE from torchrun): auto "
                   "(nccl on CUDA, else gloo) | gloo | nccl (CUDA builds)")
             .one_of({"auto", "gloo", "nccl"}),
         field<&RunConfig::dist_backend>(), false},
        {ConfigKey("dist_timeout", ValueType::kFloat, "300",
                   "seconds a rank waits for the others (rendezvous, every collective) before it stops with an "
                   "error naming the rank it lost")
             .range(1, 86400),
         field<&RunConfig::dist_timeout>(), false}}},
      {"model",
       {{ConfigKey("plugin", ValueType::kString, "vgg", "model plugin"), field<&RunConfig::model, &PluginChoice::plugin>()},
        {ConfigKey("weights", ValueType::kPath, "",
                   "start from trained weights: a LearnDrop run folder, its model.pt, or a torchvision state dict "
                   "saved with torch.save (docs/finetune.md)"),
         field<&RunConfig::model_weights>()},
        {ConfigKey("head", ValueType::kString, "keep",
                   "with weights: keep = load the classifier too; reset = train a new one (another class count); "
                   "probe = a new one, first fitted to the loaded stages' features as a linear probe, then "
                   "fine-tuned with them (LP-FT, docs/finetune.md)")
             .one_of({"keep", "reset", "probe"}),
         field<&RunConfig::model_head>()},
        {ConfigKey("head_epochs", ValueType::kInt, "5",
                   "head: probe: epochs of fitting the head over the stages' cached features")
             .range(1, 1000),
         field<&RunConfig::model_head_epochs>(), true, true},
        {ConfigKey("head_lr", ValueType::kFloat, "0.1",
                   "head: probe: learning rate of that fit (SGD with train.momentum, nesterov and weight_decay, "
                   "cosine to 0)")
             .range(0.0001, 100),
         field<&RunConfig::model_head_lr>(), true, true},
        {ConfigKey("freeze", ValueType::kString, "0",
                   "the first N stages (or all) frozen from the first step: no gradients, eval mode, the forward "
                   "still runs (fixed partial freezing; all = a linear probe of the head)"),
         field<&RunConfig::model_freeze>()}}},
      {"dataset",
       {{ConfigKey("plugin", ValueType::kString, "mnist", "dataset plugin"),
         field<&RunConfig::dataset, &PluginChoice::plugin>()},
        {ConfigKey("classes", ValueType::kString, "",
                   "keep only these classes, relabelled 0, 1, ... in the listed order, e.g. [5, 6, 7, 8, 9] (empty = "
                   "every class; any dataset plugin)"),
         field<&RunConfig::dataset_classes_setting>(), true, true}}},
      {"train", {
      {ConfigKey("epochs", ValueType::kInt, "10", "number of training epochs").range(1, 100000),
       field<&RunConfig::train, &TrainSettings::epochs>()},
      {ConfigKey("batch_size", ValueType::kInt, "128", "training batch size").range(2, 1 << 20),
       field<&RunConfig::train, &TrainSettings::batch_size>()},
      {ConfigKey("eval_batch_size", ValueType::kInt, "512", "test batch size").range(1, 1 << 20),
       field<&RunConfig::train, &TrainSettings::eval_batch_size>()},
      {ConfigKey("optimizer", ValueType::kString, "sgd", "sgd | adam | adamw").one_of({"sgd", "adam", "adamw"}),
       field<&RunConfig::train, &TrainSettings::optimizer>()},
      {ConfigKey("lr", ValueType::kFloat, "0.05", "base learning rate").range(0, 100), field<&RunConfig::train, &TrainSettings::lr>()},
      {ConfigKey("momentum", ValueType::kFloat, "0.9", "SGD momentum").range(0, 1), field<&RunConfig::train, &TrainSettings::momentum>()},
      {ConfigKey("nesterov", ValueType::kBool, "false", "Nesterov momentum (sgd)"), field<&RunConfig::train, &TrainSettings::nesterov>()},
      {ConfigKey("weight_decay", ValueType::kFloat, "0.0005", "L2 weight decay").range(0, 1),
       field<&RunConfig::train, &TrainSettings::weight_decay>()},
      {ConfigKey("lr_schedule", ValueType::kString, "cosine",
                 "constant | step (x lr_gamma every lr_step_epochs) | cosine (to 0 at the last epoch)")
           .one_of({"constant", "step", "cosine"}),
       field<&RunConfig::train, &TrainSettings::lr_schedule>()},
      {ConfigKey("lr_step_epochs", ValueType::kInt, "30", "epochs between steps of the step schedule").range(1, 100000),
       field<&RunConfig::train, &TrainSettings::lr_step_epochs>()},
      {ConfigKey("lr_gamma", ValueType::kFloat, "0.1", "factor of the step schedule").range(0, 1),
       field<&RunConfig::train, &TrainSettings::lr_gamma>()},
      {ConfigKey("warmup_epochs", ValueType::kFloat, "0", "linear learning-rate warm-up, in epochs").range(0, 100000),
       field<&RunConfig::train, &TrainSettings::warmup_epochs>()},
      {ConfigKey("eval_every", ValueType::kInt, "1",
                 "evaluate the test set every N epochs and after the last (test time is not training time)")
           .range(1, 100000),
       field<&RunConfig::train, &TrainSettings::eval_every>()},
      {ConfigKey("precision", ValueType::kString, "fp32",
                 "fp32 | bf16 | fp16: autocast computes convolutions and matrix products in this type (fp16 with "
                 "loss scaling; CUDA only; bf16 on CPUs with native bfloat16)")
           .one_of({"fp32", "bf16", "fp16"}),
       field<&RunConfig::train, &TrainSettings::precision>()},
      {ConfigKey("checkpoint_every", ValueType::kInt, "1",
                 "write checkpoint/ in the run folder every N epochs, and on SIGINT/SIGTERM at the next step (0 = "
                 "never; a resumed run ends bit-identical to one not interrupted: docs/checkpoints.md)")
           .range(0, 100000),
       field<&RunConfig::train, &TrainSettings::checkpoint_every>(), false},
      {ConfigKey("checkpoint_keep", ValueType::kString, "last",
                 "last = the newest epoch checkpoint only (removed when the run finishes) | all = also keep each "
                 "epoch's in checkpoints/epoch-N, for runs that branch from this one (ldrop run --branch-from; "
                 "docs/suites.md); not part of the config hash")
           .one_of({"last", "all"}),
       field<&RunConfig::train, &TrainSettings::checkpoint_keep>(), false},
}},
      {"stream",
       {{ConfigKey("parts", ValueType::kInt, "1",
                   "the training set arrives in this many equal parts (1 = all at once; docs/online.md)")
             .range(1, 100000),
         field<&RunConfig::stream, &StreamSettings::parts>()},
        {ConfigKey("order", ValueType::kString, "shuffle",
                   "which samples arrive in which part: shuffle = a permutation seeded by experiment.seed, dataset "
                   "= the data set's order, classes = class by class in label order (the parts bring new classes: "
                   "class-incremental), shuffled within a class")
             .one_of({"shuffle", "dataset", "classes"}),
         field<&RunConfig::stream, &StreamSettings::order>()},
        {ConfigKey("epochs", ValueType::kInt, "0",
                   "epochs trained after each arrival, over every sample arrived so far (required with parts > 1; "
                   "train.epochs is then parts x epochs)")
             .range(0, 100000),
         field<&RunConfig::stream, &StreamSettings::epochs>()},
        {ConfigKey("lr", ValueType::kString, "restart",
                   "restart = train.lr_schedule over each arrival's epochs (the warm-up once, at the start); "
                   "continue = one schedule over the whole stream")
             .one_of({"restart", "continue"}),
         field<&RunConfig::stream, &StreamSettings::lr>()}}},
      {"policy",
       {{ConfigKey("plugin", ValueType::kString, "learn-drop",
                   "drop policy plugin (none = full training); the default is cka when model.weights is set "
                   "(docs/policies/cka.md: the change score does not see a fitting backbone's stages settle)"),
         field<&RunConfig::policy, &PluginChoice::plugin>()},
        {ConfigKey("shadow", ValueType::kBool, "false",
                   "consult the policy as if its drops happened, log them (stats.jsonl, summary.json) but drop "
                   "nothing: see where a criterion would cut a training before trusting it"),
         field<&RunConfig::policy_shadow>()},
        {ConfigKey("drop_mode", ValueType::kString, "auto",
                   "what a drop does with the frozen prefix: cache = compute its output once and train the rest "
                   "from the cache; freeze = keep running it forward on real (augmented) inputs, without backward "
                   "or optimizer; auto = whichever the cost model predicts is cheaper over the remaining schedule")
             .one_of({"auto", "cache", "freeze"}),
         field<&RunConfig::drop_mode>()},
        {ConfigKey("cost_guard", ValueType::kBool, "true",
                   "drop only when the predicted saving over the remaining schedule exceeds the drop's cost (cache "
                   "build, rows of later arrivals); the host's guard for every policy"),
         field<&RunConfig::cost_guard>()},
        {ConfigKey("probe_samples", ValueType::kInt, "0",
                   "training samples whose features the host compares between evaluation points (linear CKA per "
                   "stage: feature_similarity in stats.jsonl and PolicyInput) and, when set or asked for, whose "
                   "loss it measures with each prefix of stages as at the start (the freeze probe: "
                   "frozen_probe_loss); 0 = 128 when the policy asks for it, else none. Recording it in a "
                   "full-training run lets `ldrop policy replay` judge criteria that read them")
             .range(0, 4096),
         field<&RunConfig::probe_samples>(), false}}},
      {"cache",
       {{ConfigKey("plugin", ValueType::kString, "ram", "feature-cache plugin"),
         field<&RunConfig::cache, &PluginChoice::plugin>()},
        {ConfigKey("dtype", ValueType::kString, "auto",
                   "storage type of cached features: auto (the compute type of train.precision) | float32 | float16 "
                   "| bfloat16")
             .one_of({"auto", "float32", "float16", "bfloat16"}),
         field<&RunConfig::cache_dtype>()},
        {ConfigKey("views", ValueType::kInt, "1",
                   "augment: views: augmented views of each training sample cached at a drop; each epoch draws one "
                   "per sample (1 = every epoch after a drop sees the same augmentation)")
             .range(1, 64),
         field<&RunConfig::cache_views>()},
        {ConfigKey("augment", ValueType::kString, "auto",
                   "how training keeps augmenting after a drop: feature = cache the untransformed sample and its "
                   "mirror, shift the cached maps like the input (datasets whose transform is a shift/flip); "
                   "views = cache `views` draws of the transform; auto = feature when the dataset allows it and "
                   "views is 1, else views")
             .one_of({"auto", "feature", "views"}),
         field<&RunConfig::cache_augment>()},
        // Where the files of a cache that stores files go: the host's, so
        // that the plan, the plugin and the clean-up read one setting.
        {ConfigKey("dir", ValueType::kPath, "",
                   "folder for the files of a cache that stores them (disk, auto's disk tier); default <run "
                   "folder>/cache; put it on a fast local disk"),
         field<&RunConfig::cache_dir>(), false}}},
      {"plugins", {}},  // plugins.paths: read by plugin_paths(), before any plugin is loaded
  };
  return table;
}

const std::vector<HostKey>& host_rows(const std::string& section) {
  for (const auto& [name, rows] : host_table()) {
    if (name == section) return rows;
  }
  throw Error("no config section named '" + section + "'");
}

// The plugin chosen in a plugin section (model, dataset, policy, cache);
// nullptr for the host's own sections.
PluginChoice* plugin_choice(RunConfig& rc, const std::string& section) {
  if (section == "model") return &rc.model;
  if (section == "dataset") return &rc.dataset;
  if (section == "policy") return &rc.policy;
  if (section == "cache") return &rc.cache;
  return nullptr;
}

// Sets the RunConfig field of every row of `section` from validated options.
void read_host_keys(const std::string& section, const Options& o, RunConfig& rc) {
  for (const auto& row : host_rows(section)) {
    const std::string& name = row.key.name;
    std::visit(
        [&](auto ref) {
          auto& value = ref(rc);
          using T = std::decay_t<decltype(value)>;
          if constexpr (std::is_same_v<T, std::int64_t>) value = o.get_int(name);
          if constexpr (std::is_same_v<T, std::uint64_t>) value = static_cast<std::uint64_t>(o.get_int(name));
          if constexpr (std::is_same_v<T, double>) value = o.get_float(name);
          if constexpr (std::is_same_v<T, bool>) value = o.get_bool(name);
          if constexpr (std::is_same_v<T, std::string>) value = o.get_string(name);
        },
        row.field);
  }
}

}  // namespace

const std::vector<ConfigKey>& host_section_keys(const std::string& section) {
  static const std::map<std::string, std::vector<ConfigKey>> keys = [] {
    std::map<std::string, std::vector<ConfigKey>> out;
    for (const auto& [name, rows] : host_table()) {
      auto& list = out[name];
      for (const auto& row : rows) list.push_back(row.key);
    }
    return out;
  }();
  auto it = keys.find(section);
  if (it == keys.end()) throw Error("no config section named '" + section + "'");
  return it->second;
}

std::string host_keys_markdown() {
  auto cell = [](std::string text) {
    for (std::size_t i = 0; (i = text.find('|', i)) != std::string::npos; i += 2) text.insert(i, "\\");
    return text;
  };
  auto number = [](const ConfigKey& k, double v) {
    return value_to_string(k.type == ValueType::kInt ? Value(static_cast<std::int64_t>(v)) : Value(v));
  };
  std::string out = "| key | type | default | meaning |\n| --- | --- | --- | --- |\n";
  for (const auto& section : kSections) {
    const auto& table = host_table();
    if (std::none_of(table.begin(), table.end(), [&](const auto& t) { return t.first == section; })) {
      continue;  // plugins: its one key is read apart
    }
    for (const auto& k : host_section_keys(section)) {
      std::string type = to_string(k.type);
      if (!k.choices.empty()) {
        type.clear();
        for (const auto& c : k.choices) type += (type.empty() ? "" : ", ") + c;
      } else if (k.min && k.max && *k.max < 1e15) {
        type += " " + number(k, *k.min) + ".." + number(k, *k.max);
      } else if (k.min) {
        type += " >= " + number(k, *k.min);
      }
      out += "| `" + section + "." + k.name + "` | " + cell(type) + " | " +
             (k.default_value.empty() ? std::string("\"\"") : cell(k.default_value)) + " | " + cell(k.meaning) + " |\n";
    }
  }
  return out;
}

namespace {
// Host keys whose value is a list (written as a YAML list or "a,b,c").
bool list_key(const std::string& dotted) { return dotted == "dataset.classes"; }
}  // namespace

namespace {

// A YAML node as JSON: mappings, lists, and scalars as numbers or booleans
// where they read as such (unless quoted), else strings.
nlohmann::json yaml_to_json(const YAML::Node& node) {
  if (node.IsMap()) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& kv : node) out[kv.first.Scalar()] = yaml_to_json(kv.second);
    return out;
  }
  if (node.IsSequence()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& item : node) out.push_back(yaml_to_json(item));
    return out;
  }
  if (!node.IsScalar()) return nullptr;
  const std::string& text = node.Scalar();
  if (node.Tag() == "!") return text;  // quoted
  if (text == "true" || text == "false") return text == "true";
  char* end = nullptr;
  const long long i = std::strtoll(text.c_str(), &end, 10);
  if (!text.empty() && *end == '\0') return i;
  const double d = std::strtod(text.c_str(), &end);
  if (!text.empty() && *end == '\0' && std::isfinite(d)) return d;
  return text;
}

}  // namespace

// A path key's value as the plugin receives it: absolute, a relative one
// resolved against the folder of the file that set it (the config, a suite)
// or, set on the command line, the working directory. "" (unset) and a
// suite's "@stage" reference stay as written.
std::string resolve_path(const ConfigTree& tree, const std::string& dotted, const std::string& value) {
  if (value.empty() || value[0] == '@') return value;
  const fs::path p(value);
  if (p.is_absolute()) return p.lexically_normal().string();
  fs::path base;
  if (auto it = tree.relative_to.find(dotted); it != tree.relative_to.end()) {
    base = it->second.empty() ? fs::current_path() : fs::absolute(it->second);
  } else {
    base = tree.file.empty() ? fs::current_path() : fs::absolute(tree.file).parent_path();
  }
  return (base / p).lexically_normal().string();
}

Options validate_section(const ConfigTree& tree, const std::string& section, const YAML::Node& node,
                         const std::vector<ConfigKey>& keys, const std::string& label,
                         const std::vector<std::string>& skip) {
  std::map<std::string, Value> values;
  std::vector<std::string> names;
  for (const auto& k : keys) names.push_back(k.name);
  if (node.IsDefined() && !node.IsNull()) {
    if (!node.IsMap()) throw Error(where(tree, node, section) + ": expected a mapping of keys");
    for (const auto& kv : node) {
      std::string name = kv.first.as<std::string>();
      if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
      std::string dotted = section + "." + name;
      auto key = std::find_if(keys.begin(), keys.end(), [&](const ConfigKey& k) { return k.name == name; });
      if (key == keys.end()) {
        std::vector<std::string> all = names;
        all.insert(all.end(), skip.begin(), skip.end());
        throw Error(where(tree, kv.first, dotted) + ": unknown key for " + label + did_you_mean(name, all) +
                    (all.empty() ? " (it accepts no keys)" : " (known: " + quoted_list(all) + ")"));
      }
      if (kv.second.IsSequence() && list_key(dotted)) {
        // A list key written as a YAML list: its items joined by commas.
        std::string joined;
        for (const auto& item : kv.second) {
          if (!item.IsScalar()) throw Error(where(tree, item, dotted) + ": expected a list of numbers");
          joined += (joined.empty() ? "" : ",") + item.Scalar();
        }
        values[name] = parse_value(*key, joined, where(tree, kv.second, dotted));
        continue;
      }
      if (key->type == ValueType::kString && (kv.second.IsMap() || kv.second.IsSequence())) {
        // A plugin's structured option (the python policy's `options: {...}`):
        // the plugin receives it as JSON text.
        try {
          values[name] = Value(yaml_to_json(kv.second).dump());
        } catch (const nlohmann::json::exception&) {  // JSON text is UTF-8; the YAML's bytes need not be
          throw Error(where(tree, kv.second, dotted) + ": expected " + describe_expected(*key) +
                      " in UTF-8, got bytes that are not UTF-8");
        }
        continue;
      }
      if (!kv.second.IsScalar()) {
        throw Error(where(tree, kv.second, dotted) + ": expected " + describe_expected(*key) + ", got a " +
                    (kv.second.IsSequence() ? "list"
                     : kv.second.IsMap()    ? "mapping"
                                            : "null"));
      }
      values[name] = parse_value(*key, kv.second.Scalar(), where(tree, kv.second, dotted));
      if (key->type == ValueType::kPath) values[name] = resolve_path(tree, dotted, kv.second.Scalar());
    }
  }
  for (const auto& k : keys) {
    if (values.count(k.name)) continue;
    if (k.default_value.empty() && k.type != ValueType::kString && k.type != ValueType::kPath) {
      throw Error(where(tree, node, section + "." + k.name) + ": required key is missing for " + label + " (" +
                  k.meaning + ")");
    }
    values[k.name] = parse_value(k, k.default_value, label + " default of " + k.name);
  }
  return Options(section, std::move(values));
}

std::vector<std::string> plugin_paths(const ConfigTree& tree) {
  std::vector<std::string> out;
  YAML::Node section = tree.root["plugins"];
  if (!section.IsDefined() || section.IsNull()) return out;
  if (!section.IsMap()) throw Error(where(tree, section, "plugins") + ": expected a mapping with key 'paths'");
  for (const auto& kv : section) {
    std::string name = kv.first.as<std::string>();
    if (name != "paths") {
      throw Error(where(tree, kv.first, "plugins." + name) + ": unknown key for plugins" +
                  did_you_mean(name, {"paths"}) + " (known: 'paths')");
    }
  }
  YAML::Node paths = section["paths"];
  fs::path base = tree.file.empty() ? fs::current_path() : fs::absolute(tree.file).parent_path();
  auto add = [&](const std::string& p) {
    out.push_back((fs::path(p).is_absolute() ? fs::path(p) : base / p).string());
  };
  if (paths.IsScalar()) {
    add(paths.Scalar());
  } else if (paths.IsSequence()) {
    for (const auto& p : paths) {
      if (!p.IsScalar()) throw Error(where(tree, p, "plugins.paths") + ": expected a list of paths");
      add(p.Scalar());
    }
  } else if (!paths.IsNull()) {
    throw Error(where(tree, paths, "plugins.paths") + ": expected a list of paths");
  }
  return out;
}

namespace {

// resolve_config, one section at a time.

void resolve_experiment(const ConfigTree& tree, RunConfig& rc) {
  Options experiment = validate_section(tree, "experiment", tree.root["experiment"], host_section_keys("experiment"),
                                        "section 'experiment'");
  read_host_keys("experiment", experiment, rc);
  // The name becomes a folder name (runs/<name>-<hash>): no path separators,
  // no leading dot ("..", hidden folders), nothing a shell would mangle.
  static const std::regex safe_name("[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}");
  if (!std::regex_match(rc.name, safe_name)) {
    throw Error(where(tree, tree.root["experiment"]["name"], "experiment.name") +
                ": expected a name of letters, digits, '_', '.', '+' or '-' (not starting with '.' or '-', at most "
                "128 characters; it names the run folder runs/<name>-<hash>), got '" + clipped(rc.name) + "'");
  }

}

void resolve_runtime(const ConfigTree& tree, RunConfig& rc) {
  Options runtime =
      validate_section(tree, "runtime", tree.root["runtime"], host_section_keys("runtime"), "section 'runtime'");
  read_host_keys("runtime", runtime, rc);
  rc.threads = thread_count(tree, "threads", rc.threads_setting,
                            static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  rc.loader_threads = thread_count(tree, "loader_threads", rc.loader_threads_setting, rc.threads);
  if (!is_device_setting(rc.device)) {
    throw Error(where(tree, tree.root["runtime"]["device"], "runtime.device") +
                ": expected auto, cpu, cuda or cuda:N, got '" + clipped(rc.device) + "'");
  }
}

void resolve_train(const ConfigTree& tree, RunConfig& rc) {
  Options train = validate_section(tree, "train", tree.root["train"], host_section_keys("train"), "section 'train'");
  read_host_keys("train", train, rc);
  const TrainSettings& t = rc.train;
  if (t.nesterov && (t.optimizer != "sgd" || t.momentum == 0)) {
    throw Error(where(tree, tree.root["train"]["nesterov"], "train.nesterov") +
                ": Nesterov momentum needs optimizer 'sgd' with momentum > 0");
  }

}

// The stream section: with parts > 1 the run trains stream.epochs after each
// arrival, train.epochs = parts x stream.epochs in all.
void resolve_stream(const ConfigTree& tree, RunConfig& rc) {
  Options stream =
      validate_section(tree, "stream", tree.root["stream"], host_section_keys("stream"), "section 'stream'");
  read_host_keys("stream", stream, rc);
  StreamSettings& st = rc.stream;
  const YAML::Node section = tree.root["stream"];
  const YAML::Node epochs_node = section.IsDefined() && section.IsMap() ? section["epochs"] : YAML::Node(YAML::NodeType::Undefined);
  if (st.parts == 1) {
    if (st.epochs != 0 && st.epochs != rc.train.epochs) {
      throw Error(where(tree, epochs_node, "stream.epochs") + ": applies to a stream (stream.parts > 1); with "
                  "stream.parts 1 the run trains train.epochs (" + std::to_string(rc.train.epochs) + ")");
    }
    st.epochs = 0;  // the run's epochs are train.epochs
    return;
  }
  if (st.epochs == 0) {
    throw Error(where(tree, epochs_node, "stream.epochs") + ": required with stream.parts " +
                std::to_string(st.parts) + ": the epochs trained after each arrival (expected an int in [1, 100000])");
  }
  const std::int64_t total = st.total_epochs(st.epochs);
  const YAML::Node train = tree.root["train"];
  const YAML::Node train_epochs = train.IsDefined() && train.IsMap() ? train["epochs"] : YAML::Node(YAML::NodeType::Undefined);
  if (train_epochs.IsDefined() && rc.train.epochs != total) {
    throw Error(where(tree, train_epochs, "train.epochs") + ": a stream of " + std::to_string(st.parts) +
                " parts with stream.epochs " + std::to_string(st.epochs) + " trains " + std::to_string(total) +
                " epochs; leave train.epochs out or set it to " + std::to_string(total));
  }
  rc.train.epochs = total;
}

// A plugin section (model, dataset, policy, cache): the host's keys, the
// plugin it names and that plugin's keys from its manifest.
void resolve_plugin_section(const ConfigTree& tree, const PluginHost& host, const std::string& section,
                            RunConfig& rc) {
  const TrainSettings& t = rc.train;
  YAML::Node node = tree.root[section];
  std::vector<ConfigKey> host_keys = host_section_keys(section);
  // From trained weights the default criterion is the one that sees their
  // stages keep their function (issue 29, docs/transfer.md).
  if (section == "policy" && !rc.model_weights.empty()) {
    for (auto& k : host_keys) {
      if (k.name == "plugin") k.default_value = kPolicyWithWeights;
    }
  }
  std::vector<std::string> plugin_keys;
  if (node.IsDefined() && node.IsMap()) {
    for (const auto& kv : node) {
      std::string k = kv.first.as<std::string>();
      bool is_host = std::any_of(host_keys.begin(), host_keys.end(), [&](const ConfigKey& h) { return h.name == k; });
      if (!is_host) plugin_keys.push_back(k);
    }
  }
  Options host_opts = validate_section(tree, section, node, host_keys, "section '" + section + "'", plugin_keys);
  std::string plugin = host_opts.get_string("plugin");
  const PluginInfo* info = nullptr;
  try {
    info = &host.find(kind_of(section), plugin);
  } catch (const Error& e) {
    throw Error(where(tree, node.IsDefined() && node.IsMap() ? node["plugin"] : node, section + ".plugin") + ": " +
                e.what());
  }
  std::vector<std::string> host_names;
  for (const auto& h : host_keys) host_names.push_back(h.name);
  // `--set SECTION.plugin=X` switches plugins: the file's keys for the
  // previous plugin that X does not accept are left out, with a warning.
  const bool switched =
      std::find(tree.overrides.begin(), tree.overrides.end(), section + ".plugin") != tree.overrides.end();
  // Every policy takes the drop guards, which the host applies to its
  // answer (drop_guards.h): a manifest that declares one gives its default,
  // the others come at their neutral values.
  std::vector<ConfigKey> plugin_keys_all = info->manifest.keys;
  if (section == "policy") {
    for (auto& g : undeclared_guard_keys(info->manifest.keys)) {
      rc.policy_guards_added.push_back(g.name);
      plugin_keys_all.push_back(std::move(g));
    }
  }
  std::vector<std::string> ignored = host_names;
  for (const auto& k : plugin_keys) {
    bool known = std::any_of(plugin_keys_all.begin(), plugin_keys_all.end(),
                             [&](const ConfigKey& m) { return m.name == k; });
    bool overridden =
        std::find(tree.overrides.begin(), tree.overrides.end(), section + "." + k) != tree.overrides.end();
    if (switched && !known && !overridden) {
      ignored.push_back(k);
      rc.warnings.push_back(where(tree, node[k], section + "." + k) + ": ignored, not a key of " + section + " '" +
                            plugin + "' (the plugin was changed with --set)");
    }
  }
  Options plugin_options =
      validate_section(tree, section, node, plugin_keys_all, section + " '" + plugin + "'", ignored);
  read_host_keys(section, host_opts, rc);  // `plugin` and the host's keys of the section
  plugin_choice(rc, section)->options = std::move(plugin_options);
  if (section == "model") {
    static const std::regex count("all|0|[1-9][0-9]{0,5}");
    if (!std::regex_match(rc.model_freeze, count)) {
      throw Error(where(tree, node["freeze"], "model.freeze") +
                  ": expected a number of stages or 'all', got '" + clipped(rc.model_freeze) + "'");
    }
    if (rc.model_head != "keep" && rc.model_weights.empty()) {
      throw Error(where(tree, node["head"], "model.head") + ": " + rc.model_head +
                  " applies to a model started from model.weights (a new model's head is new anyway)");
    }
    if (rc.model_head != "probe" && (rc.model_head_epochs != 5 || rc.model_head_lr != 0.1)) {
      const bool epochs = rc.model_head_epochs != 5;
      throw Error(where(tree, node[epochs ? "head_epochs" : "head_lr"],
                        epochs ? "model.head_epochs" : "model.head_lr") +
                  ": applies to model.head: probe (model.head is " + rc.model_head + ")");
    }
    if (rc.model_head == "probe" && rc.model_freeze == "all") {
      throw Error(where(tree, node["head"], "model.head") +
                  ": probe with model.freeze: all fits the head twice; model.freeze: all alone is a linear probe");
    }
  }
  if (section == "dataset") {
    const YAML::Node classes = node.IsDefined() && node.IsMap() ? node["classes"] : YAML::Node();
    rc.dataset_classes = parse_class_list(rc.dataset_classes_setting, where(tree, classes, "dataset.classes"));
    // As the effective config writes it: "5,6,7", spaces removed.
    std::string canonical;
    for (std::int64_t c : rc.dataset_classes) canonical += (canonical.empty() ? "" : ",") + std::to_string(c);
    rc.dataset_classes_setting = canonical;
  }
  if (section == "cache") {
    if (rc.cache_dtype == "auto") {
      rc.cache_dtype = t.precision == "bf16" ? "bfloat16" : t.precision == "fp16" ? "float16" : "float32";
    }
    if (rc.cache_augment == "feature" && rc.cache_views != 1) {
      throw Error(where(tree, node["views"], "cache.views") +
                  ": cache.views applies to cache.augment: views; feature augmentation caches the sample and "
                  "its mirror (set views: 1 or augment: views)");
    }
  }
}

}  // namespace

RunConfig resolve_config(const ConfigTree& tree, const PluginHost& host) {
  for (const auto& kv : tree.root) {
    std::string name = kv.first.as<std::string>();
    if (std::find(kSections.begin(), kSections.end(), name) == kSections.end()) {
      throw Error(where(tree, kv.first, name) + ": unknown section" + did_you_mean(name, kSections) +
                  " (known: " + quoted_list(kSections) + ")");
    }
  }
  RunConfig rc;
  rc.file = tree.file;
  rc.plugin_paths = plugin_paths(tree);
  resolve_experiment(tree, rc);
  resolve_runtime(tree, rc);
  resolve_train(tree, rc);  // before the cache section, whose dtype follows train.precision
  resolve_stream(tree, rc);
  if (rc.train.warmup_epochs > static_cast<double>(rc.train.epochs)) {
    rc.warnings.push_back(where(tree, tree.root["train"]["warmup_epochs"], "train.warmup_epochs") + ": " +
                          value_to_string(rc.train.warmup_epochs) + " epochs of warm-up in a run of " +
                          std::to_string(rc.train.epochs) + " epochs: the learning rate never reaches train.lr");
  }
  for (const auto& section : kPluginSections) resolve_plugin_section(tree, host, section, rc);
  return rc;
}

namespace {
// A row's current value as its default is written.
std::string value_text(const HostKey& row, RunConfig& rc) {
  std::string out;
  std::visit(
      [&](auto ref) {
        const auto& v = ref(rc);
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          out = v;
        } else if constexpr (std::is_same_v<T, bool>) {
          out = v ? "true" : "false";
        } else {
          out = value_to_string(Value(static_cast<std::conditional_t<std::is_same_v<T, double>, double, std::int64_t>>(v)));
        }
      },
      row.field);
  return out;
}
}  // namespace

namespace {
// A drop guard the host added to a policy that does not declare it, at its
// neutral value: it holds nothing back, as before guards were the host's.
bool is_neutral_added_guard(const RunConfig& rc, const std::string& key, const Value& v) {
  const auto& added = rc.policy_guards_added;
  if (std::find(added.begin(), added.end(), key) == added.end()) return false;
  for (const auto& g : host_guard_keys()) {
    if (g.name == key) return v == parse_value(g, g.default_value, "policy." + key);
  }
  return false;
}
}  // namespace

bool is_identity_key(const std::string& dotted) {
  if (kNotIdentity.count(dotted)) return false;
  for (const auto& [section, rows] : host_table()) {
    for (const auto& row : rows) {
      if (section + "." + row.key.name == dotted) return row.identity;
    }
  }
  return true;
}

std::string RunConfig::effective_yaml() const { return emit_yaml(true); }

std::string RunConfig::identity_yaml() const { return emit_yaml(false); }

std::string RunConfig::emit_yaml(bool all_keys) const {
  // The rows read fields through non-const references; emitting only reads them.
  RunConfig& self = const_cast<RunConfig&>(*this);
  YAML::Emitter e;
  e << YAML::BeginMap;
  for (const auto& [section, rows] : host_table()) {
    if (section == "plugins") continue;
    e << YAML::Key << section << YAML::Value << YAML::BeginMap;
    for (const auto& row : rows) {
      if (!all_keys && !row.identity) continue;
      if (!all_keys && row.identity_when_set && value_text(row, self) == row.key.default_value) continue;
      e << YAML::Key << row.key.name << YAML::Value;
      std::visit([&](auto ref) { e << ref(self); }, row.field);
    }
    // A plugin section: the plugin's own keys after the host's.
    if (const PluginChoice* choice = plugin_choice(self, section)) {
      for (const auto& [k, v] : choice->options.values()) {
        if (!all_keys && kNotIdentity.count(section + "." + k)) continue;
        if (!all_keys && section == "policy" && is_neutral_added_guard(self, k, v)) continue;
        e << YAML::Key << k << YAML::Value;
        std::visit([&](const auto& x) { e << x; }, v);
      }
    }
    e << YAML::EndMap;
  }
  if (!plugin_paths.empty()) {
    e << YAML::Key << "plugins" << YAML::Value << YAML::BeginMap << YAML::Key << "paths" << YAML::Value << plugin_paths
      << YAML::EndMap;
  }
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

std::string RunConfig::hash() const { return fnv1a_hex(identity_yaml()); }

}  // namespace ld::core
