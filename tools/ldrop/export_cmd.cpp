// ldrop export RUN_DIR --format torchvision: the trained model.pt as a state
// dict with torchvision's parameter names, which `torch.load` reads in
// Python (docs/checkpoints.md, "Export").

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/serialize.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "learndrop/core/class_subset.h"
#include "learndrop/core/config.h"
#include "learndrop/core/files.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/dataset.h"
#include "learndrop/error.h"
#include "learndrop/model.h"

namespace ld::cli {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string pickled(const c10::IValue& value) {
  const std::vector<char> bytes = torch::pickle_save(value);
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace

int export_run(core::PluginHost& host, const core::RunConfig& cfg, const ExportArgs& a) {
  const fs::path dir = a.run_dir;
  const fs::path model_file = dir / "model.pt", summary_file = dir / "summary.json";
  if (!fs::exists(model_file) || !fs::exists(summary_file)) {
    throw Error("export: " + dir.string() + " has no model.pt and summary.json: the run has not finished");
  }
  const json summary = json::parse(core::read_file(summary_file), nullptr, false);
  if (summary.is_discarded() || !summary.is_object()) {
    throw Error("export: " + summary_file.string() + " is not a JSON object (a damaged run folder?)");
  }
  ModelContext ctx;
  if (summary.contains("input_shape") && summary.contains("num_classes")) {
    const auto shape = summary["input_shape"].get<std::vector<std::int64_t>>();
    ctx = ModelContext::of(shape, summary["num_classes"].get<std::int64_t>());
  } else {  // a run of an older version: the shapes come from the data set
    auto dataset = core::open_dataset(cfg, host);
    const auto shape = dataset->sample_shape();
    ctx = ModelContext::of(shape, dataset->num_classes());
  }
  auto model = host.create_model(cfg.model.plugin, cfg.model.options, ctx);
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(model_file.string());
    model->load(archive);
  } catch (const c10::Error& e) {
    const std::string what = e.what();
    throw Error("export: cannot load " + model_file.string() + " into model '" + cfg.model.plugin +
                "': " + what.substr(0, what.find('\n')));
  }
  model->eval();

  c10::Dict<std::string, at::Tensor> state;
  auto add = [&](const std::string& name, const at::Tensor& t) {
    const std::string theirs = model->torchvision_name(name);
    if (theirs.empty()) {
      throw Error("export: model plugin '" + cfg.model.plugin + "' gives no torchvision name for '" + name +
                  "' (StagedModel::torchvision_name): it follows no torchvision architecture");
    }
    if (state.contains(theirs)) throw Error("export: two parameters map to torchvision's '" + theirs + "'");
    state.insert(theirs, t.detach().contiguous());  // channels-last weights in PyTorch's default layout
  };
  for (const auto& kv : model->named_parameters()) add(kv.key(), kv.value());
  for (const auto& kv : model->named_buffers()) add(kv.key(), kv.value());
  const fs::path out = a.out.empty() ? dir / "model.torchvision.pt" : fs::path(a.out);
  core::atomic_write(out, pickled(state));
  std::printf("wrote %s: %zu tensors with torchvision's names (%s, %lld classes, input %lldx%lldx%lld)\n",
              out.string().c_str(), state.size(), summary.value("model", cfg.model.plugin).c_str(),
              static_cast<long long>(ctx.num_classes), static_cast<long long>(ctx.in_channels),
              static_cast<long long>(ctx.height), static_cast<long long>(ctx.width));

  if (a.probe > 0) {
    // Inputs and LearnDrop's logits on them, for tools/export/check_torchvision.py.
    at::manual_seed(0);
    at::Tensor inputs = at::randn({a.probe, ctx.in_channels, ctx.height, ctx.width});
    at::Tensor logits;
    {
      at::NoGradGuard no_grad;
      logits = model->forward(inputs.contiguous(at::MemoryFormat::ChannelsLast), 0).contiguous();
    }
    c10::impl::GenericDict probe(c10::StringType::get(), c10::AnyType::get());
    probe.insert("inputs", inputs);
    probe.insert("logits", logits);
    probe.insert("model", summary.value("model", cfg.model.plugin));
    probe.insert("num_classes", ctx.num_classes);
    probe.insert("in_channels", ctx.in_channels);
    c10::Dict<std::string, std::string> options;
    for (const auto& [key, value] : cfg.model.options.values()) options.insert(key, core::value_to_string(value));
    probe.insert("options", options);
    fs::path probe_file = out;
    probe_file.replace_extension(".probe.pt");
    core::atomic_write(probe_file, pickled(probe));
    std::printf(
        "wrote %s: %lld inputs and LearnDrop's logits; check with: /usr/bin/python3 "
        "tools/export/check_torchvision.py %s %s\n",
        probe_file.string().c_str(), static_cast<long long>(a.probe), out.string().c_str(),
        probe_file.string().c_str());
  }
  return 0;
}

}  // namespace ld::cli
