#pragma once

#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <string>

#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/nn/module.h>

#include "learndrop/error.h"

namespace ld {

/// Loads a state dict saved by PyTorch as a plain dict
/// (`torch.save(dict(model.state_dict()), path)`; LibTorch 1.13 cannot read
/// the OrderedDict that `state_dict()` returns, see pytorch#100741) into `module`. `to_file_name` maps each of the module's parameter and
/// buffer names to the name it has in the file (e.g. torchvision's). Every
/// name must be present with the same shape; keys of the file that are not
/// used are an error too, so a wrong architecture cannot load silently.
///
/// Example:
/// ```
/// ld::load_state_dict(*this, path, [](const std::string& n) { return rename(n); });
/// ```
inline void load_state_dict(torch::nn::Module& module, const std::string& path,
                            const std::function<std::string(const std::string&)>& to_file_name) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("weights: cannot read " + path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  c10::IValue loaded;
  try {
    loaded = torch::jit::pickle_load(bytes);
  } catch (const std::exception& e) {
    std::string what = e.what();
    if (what.find("Expected GenericDict but got None") != std::string::npos) {
      // LibTorch before 2.6 unpickles collections.OrderedDict as None (pytorch#100741).
      throw Error("weights: " + path +
                  " holds an OrderedDict, which LibTorch 1.13 cannot read; save it as a plain dict: "
                  "torch.save(dict(model.state_dict()), path)");
    }
    throw Error("weights: " + path + " is not a state dict saved with torch.save: " + what.substr(0, what.find('\n')));
  }
  if (!loaded.isGenericDict()) throw Error("weights: " + path + " does not hold a dict of tensors");
  std::map<std::string, at::Tensor> file;
  for (const auto& kv : loaded.toGenericDict()) {
    if (kv.key().isString() && kv.value().isTensor()) file[kv.key().toStringRef()] = kv.value().toTensor();
  }
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  auto assign = [&](const std::string& name, at::Tensor& target) {
    std::string key = to_file_name(name);
    auto it = file.find(key);
    if (it == file.end() && name.find("num_batches_tracked") != std::string::npos) return;  // older saves
    if (it == file.end()) throw Error("weights: " + path + " has no '" + key + "' (for " + name + ")");
    if (it->second.sizes() != target.sizes()) {
      throw Error("weights: " + path + ": '" + key + "' has shape " + c10::str(it->second.sizes()) + ", expected " +
                  c10::str(target.sizes()));
    }
    target.copy_(it->second.to(target.scalar_type()));
    used.insert(key);
  };
  for (auto& p : module.named_parameters()) assign(p.key(), p.value());
  for (auto& b : module.named_buffers()) assign(b.key(), b.value());
  for (const auto& kv : file) {
    if (!used.count(kv.first) && kv.first.find("num_batches_tracked") == std::string::npos) {
      throw Error("weights: " + path + " has '" + kv.first + "', which this model does not use");
    }
  }
}

}  // namespace ld
