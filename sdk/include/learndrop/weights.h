#pragma once

#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <string>

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/unpickler.h>
#include <torch/nn/module.h>

#include "learndrop/error.h"

namespace ld {

namespace detail {

/// `torch.save(model.state_dict())` pickles a `collections.OrderedDict`,
/// which LibTorch 1.13's unpickler turns into None (pytorch#100741, fixed in
/// 2.6). This rewrites the pickle program: every `OrderedDict()` call (the
/// GLOBAL memoised as 0, then BINGET 0, EMPTY_TUPLE, REDUCE) becomes
/// EMPTY_DICT, and the program stops before the BUILD that would set the
/// dict's `_metadata` attribute (module versions, not needed here, and
/// written with SETITEM, which that unpickler does not know either).
/// Returns false (and changes nothing) unless the pickle starts with an
/// OrderedDict.
inline bool plain_dict_pickle(std::string& pkl) {
  static const std::string head(
      "\x80\x02"
      "ccollections\nOrderedDict\nq\x00)R",
      31);
  if (pkl.size() < head.size() + 2 || pkl.compare(0, head.size(), head) != 0) return false;
  // The BUILD state: EMPTY_DICT, BINPUT or LONG_BINPUT, BINUNICODE '_metadata', ...
  static const std::string metadata("X\x09\x00\x00\x00_metadata", 14);
  std::size_t end = pkl.rfind(metadata);
  if (end != std::string::npos) {
    if (end >= 3 && pkl[end - 2] == 'q' && pkl[end - 3] == '}') {
      end -= 3;
    } else if (end >= 6 && pkl[end - 5] == 'r' && pkl[end - 6] == '}') {
      end -= 6;
    } else {
      end = std::string::npos;
    }
  }
  if (end == std::string::npos) end = pkl.size() - 1;  // no metadata: keep all but STOP
  static const std::string call("h\x00)R", 4);         // BINGET 0, EMPTY_TUPLE, REDUCE
  std::string out("\x80\x02}", 3);
  std::size_t pos = head.size();
  for (std::size_t hit = pkl.find(call, pos); hit != std::string::npos && hit < end; hit = pkl.find(call, pos)) {
    out.append(pkl, pos, hit - pos).push_back('}');
    pos = hit + call.size();
  }
  out.append(pkl, pos, end - pos).push_back('.');
  pkl = std::move(out);
  return true;
}

/// Reads a file written by `torch.save` (zip format) into an IValue.
inline c10::IValue read_torch_save(const std::string& path) {
  caffe2::serialize::PyTorchStreamReader reader(path);
  at::DataPtr data;
  std::size_t size = 0;
  std::tie(data, size) = reader.getRecord("data.pkl");
  std::string pkl(static_cast<const char*>(data.get()), size);
  const bool rewritten = plain_dict_pickle(pkl);
  std::size_t pos = 0;
  auto read = [&](char* out, std::size_t n) {
    std::size_t k = std::min(n, pkl.size() - pos);
    std::memcpy(out, pkl.data() + pos, k);
    pos += k;
    return k;
  };
  auto read_record = [&](const std::string& name) { return std::get<0>(reader.getRecord("data/" + name)); };
  torch::jit::Unpickler unpickler(read, nullptr, nullptr, read_record, c10::nullopt);
  unpickler.set_version(reader.version());
  try {
    return unpickler.parse_ivalue();
  } catch (const std::exception& e) {
    if (!rewritten) throw;
    std::string what = e.what();
    throw Error("cannot read its OrderedDict (" + what.substr(0, what.find('\n')) +
                "); save it as a plain dict: torch.save(dict(model.state_dict()), path)");
  }
}

}  // namespace detail

/// Loads a state dict saved by PyTorch (`torch.save(model.state_dict(), path)`,
/// an OrderedDict, or a plain dict) into `module`. `to_file_name` maps each of
/// the module's parameter and buffer names to the name it has in the file
/// (e.g. torchvision's). Every name must be present with the same shape; keys
/// of the file that are not used are an error too, so a wrong architecture
/// cannot load silently.
///
/// Example:
/// ```
/// ld::load_state_dict(*this, path, [](const std::string& n) { return rename(n); });
/// ```
inline void load_state_dict(torch::nn::Module& module, const std::string& path,
                            const std::function<std::string(const std::string&)>& to_file_name) {
  if (!std::ifstream(path)) throw Error("weights: cannot read " + path);
  c10::IValue loaded;
  try {
    loaded = detail::read_torch_save(path);
  } catch (const std::exception& e) {
    std::string what = e.what();
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
