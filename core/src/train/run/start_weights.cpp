#include "run/start_weights.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/serialize/input-archive.h>

#include "learndrop/core/files.h"
#include "learndrop/error.h"
#include "learndrop/weights.h"

namespace ld::core {

namespace fs = std::filesystem;

namespace {

bool is_head(const std::string& name) { return name.rfind("head.", 0) == 0; }

std::string shape_text(const at::Tensor& t) { return c10::str(t.sizes()); }

// Every tensor of a LibTorch archive (StagedModel::save), by dotted name.
void archive_tensors(torch::serialize::InputArchive& archive, const std::string& prefix,
                     std::map<std::string, at::Tensor>& out) {
  for (const std::string& key : archive.keys()) {
    c10::IValue value;
    if (!archive.try_read(key, value)) continue;
    if (value.isTensor()) {
      out[prefix + key] = value.toTensor();
    } else if (value.isObject()) {
      torch::serialize::InputArchive child;
      if (archive.try_read(key, child)) archive_tensors(child, prefix + key + ".", out);
    }
  }
}

// The file's tensors, and whether their names are LearnDrop's (a model.pt)
// or torchvision's (a state dict saved by PyTorch).
struct WeightsFile {
  std::map<std::string, at::Tensor> tensors;
  bool ours = false;
  std::string what;  // for messages
};

WeightsFile read_weights(const std::string& given) {
  fs::path path = given;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (status.type() == fs::file_type::not_found) {
    throw Error("model.weights: " + given + " does not exist (expected a LearnDrop run folder, its model.pt, or a "
                "torchvision state dict saved with torch.save)");
  }
  WeightsFile file;
  if (fs::is_directory(status)) {
    path /= "model.pt";
    if (!fs::exists(path)) {
      throw Error("model.weights: " + given + " is a folder without model.pt" +
                  (fs::exists(fs::path(given) / "config.yaml") ? " (the run has not finished)" : "") +
                  ": expected a finished LearnDrop run folder");
    }
    file.what = "run " + given;
  } else {
    file.what = given;
  }
  if (!std::ifstream(path)) throw Error("model.weights: cannot read " + path.string());
  // A LearnDrop model.pt (a LibTorch archive of the module) ...
  std::string archive_error;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string());
    archive_tensors(archive, "", file.tensors);
    file.ours = true;
    return file;
  } catch (const std::exception& e) {
    archive_error = e.what();
  }
  // ... or a state dict written by torch.save.
  c10::IValue loaded;
  try {
    loaded = detail::read_torch_save(path.string());
  } catch (const std::exception& e) {
    const std::string what = e.what();
    throw Error("model.weights: " + path.string() +
                " is neither a LearnDrop model.pt nor a state dict saved with torch.save (" +
                what.substr(0, what.find('\n')) + ")");
  }
  if (!loaded.isGenericDict()) throw Error("model.weights: " + path.string() + " does not hold a dict of tensors");
  for (const auto& kv : loaded.toGenericDict()) {
    if (kv.key().isString() && kv.value().isTensor()) file.tensors[kv.key().toStringRef()] = kv.value().toTensor();
  }
  return file;
}

}  // namespace

std::string load_start_weights(StagedModel& model, const std::string& path, bool reset_head) {
  WeightsFile file = read_weights(path);
  // The file's name of each of the model's tensors.
  std::function<std::string(const std::string&)> name_in_file = [](const std::string& n) { return n; };
  if (!file.ours) {
    name_in_file = [&model](const std::string& n) { return model.torchvision_name(n); };
  }
  // Names the head has in the file: with a reset, the file's tensors under
  // the same top-level name ("fc", "classifier", "head") are left unused.
  std::set<std::string> head_roots;
  std::set<std::string> used;
  std::int64_t loaded = 0, head_tensors = 0;
  at::NoGradGuard no_grad;
  auto assign = [&](const std::string& name, at::Tensor& target) {
    const std::string key = name_in_file(name);
    if (is_head(name)) {
      if (!key.empty()) head_roots.insert(key.substr(0, key.find('.')));
      if (reset_head) {
        ++head_tensors;
        return;
      }
    }
    if (key.empty()) {
      throw Error("model.weights: " + file.what + ": this model's " + name + " has no torchvision counterpart" +
                  (is_head(name) ? "; set model.head: reset to train a new head" : ""));
    }
    auto it = file.tensors.find(key);
    if (it == file.tensors.end() && name.find("num_batches_tracked") != std::string::npos) return;  // older saves
    if (it == file.tensors.end()) {
      throw Error("model.weights: " + file.what + " has no '" + key + "' (for " + name + ")" +
                  (is_head(name) ? "; set model.head: reset to train a new head" : ""));
    }
    if (it->second.sizes() != target.sizes()) {
      std::string hint;
      if (is_head(name)) {
        hint = "; the head differs (another class count?): set model.head: reset to train a new head";
      } else {
        hint = "; the file holds another architecture or width";
      }
      throw Error("model.weights: " + file.what + ": '" + key + "' has shape " + shape_text(it->second) +
                  ", this model's " + name + " " + shape_text(target) + hint);
    }
    // A diverged run's weights would train into NaN again, in silence.
    if (it->second.is_floating_point() && !at::isfinite(it->second).all().item<bool>()) {
      throw Error("model.weights: " + file.what + ": '" + key +
                  "' holds non-finite values (NaN or inf): the run that saved it diverged");
    }
    target.copy_(it->second.to(target.scalar_type()));
    used.insert(key);
    ++loaded;
  };
  for (auto& p : model.named_parameters()) assign(p.key(), p.value());
  for (auto& b : model.named_buffers()) assign(b.key(), b.value());
  for (const auto& kv : file.tensors) {
    if (used.count(kv.first) || kv.first.find("num_batches_tracked") != std::string::npos) continue;
    if (reset_head && head_roots.count(kv.first.substr(0, kv.first.find('.')))) continue;
    throw Error("model.weights: " + file.what + " has '" + kv.first + "', which this model does not use");
  }
  std::string out = std::to_string(loaded) + " tensors from " + file.what +
                    (file.ours ? " (LearnDrop names)" : " (torchvision names)");
  if (reset_head) out += ", head reset (" + std::to_string(head_tensors) + " tensors newly initialised)";
  return out;
}

}  // namespace ld::core
