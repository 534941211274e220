#include <algorithm>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "learndrop/core/config.h"
#include "learndrop/core/flops.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/text.h"
#include "learndrop/cache.h"
#include "learndrop/memory.h"
#include "learndrop/registrar.h"

namespace ld::cli {

namespace {

std::int64_t count_params(const std::shared_ptr<torch::nn::Module>& m) {
  std::int64_t n = 0;
  for (const auto& p : m->parameters()) n += p.numel();
  return n;
}

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out;
}

// The model plugin whose `variant` key accepts `variant`.
const core::PluginInfo& plugin_for(const core::PluginHost& host, const std::string& variant) {
  std::vector<std::string> all;
  for (const auto& info : host.plugins(PluginKind::kModel)) {
    for (const auto& k : info.manifest.keys) {
      if (k.name != "variant") continue;
      for (const auto& c : k.choices) {
        if (c == variant) return host.find(PluginKind::kModel, info.manifest.name);
        all.push_back(c);
      }
    }
  }
  throw Error("--variant: no model plugin has variant '" + variant + "'" + core::did_you_mean(variant, all) +
              " (known: " + core::quoted_list(all) + ")");
}

}  // namespace

std::shared_ptr<StagedModel> create_summary_model(const core::PluginHost& host, const ModelSummaryArgs& a) {
  const core::PluginInfo& info = plugin_for(host, a.variant);
  std::map<std::string, std::string> given;
  for (const auto& o : a.options) {
    const auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0) throw Error("--option '" + o + "': expected KEY=VALUE");
    given[o.substr(0, eq)] = o.substr(eq + 1);
  }
  std::map<std::string, Value> values;
  std::vector<std::string> names;
  for (const auto& k : info.manifest.keys) {
    names.push_back(k.name);
    std::string text = k.default_value;
    if (k.name == "variant") text = a.variant;
    if (k.name == "stem") text = a.stem;
    if (k.name == "width") text = a.width;
    auto it = given.find(k.name);
    if (it != given.end()) {
      text = it->second;
      given.erase(it);
    }
    values[k.name] = core::parse_value(k, text, "--" + k.name);
  }
  if (!given.empty()) {
    const std::string key = given.begin()->first;
    throw Error("--option: model plugin '" + info.manifest.name + "' has no key '" + key + "'" +
                core::did_you_mean(key, names) + " (keys: " + core::quoted_list(names) + ")");
  }
  return host.create_model(info.manifest.name, Options("model", values),
                           ModelContext::of({a.in_channels, a.input_size, a.input_size}, a.num_classes));
}

int model_summary(const core::PluginHost& host, const ModelSummaryArgs& a) {
  const core::PluginInfo& info = plugin_for(host, a.variant);
  // Parameters grow with width squared: estimate them from width 1 before
  // allocating (resnet152 at width 16 is 15 billion of them).
  double width = 1.0;
  try {
    width = std::stod(a.width);
  } catch (...) {
    throw Error("--width: expected a number, got '" + a.width + "'");
  }
  if (width > 1.0) {
    ModelSummaryArgs narrow = a;
    narrow.width = "1.0";
    const double estimate = static_cast<double>(count_params(create_summary_model(host, narrow))) * width * width * 4;
    const double budget = static_cast<double>(ld::available_memory()) / 2;
    if (budget > 0 && estimate > budget) {
      throw Error("--width " + a.width + ": about " + core::format_bytes(estimate) + " of float32 parameters (" +
                  core::format_bytes(estimate / (width * width)) + " at width 1, times width squared), more than " +
                  "half of the available memory (" + core::format_bytes(budget) + ")");
    }
  }
  auto model = create_summary_model(host, a);
  // The summary runs one real forward pass. At a large input it holds
  // activations that grow with the input area (vgg19_bn at 4096 px: 4 GiB per
  // feature map), so a pass at 64 px, scaled by the area, must fit first.
  // (LibTorch 1.13 cannot move a module to the meta device.)
  const std::int64_t probe = 64;
  if (a.input_size > probe) {
    core::ModelProfile small;
    bool probed = true;
    try {
      small = core::profile_model(*model, {a.in_channels, probe, probe});
    } catch (const std::exception&) {
      probed = false;  // a model built for its input size only: profiled as it is
    }
    if (probed) {
      double largest = static_cast<double>(a.in_channels * probe * probe);
      for (const auto& shape : small.stage_output_shapes) {
        double n = 1;
        for (auto d : shape) n *= static_cast<double>(d);
        largest = std::max(largest, n);
      }
      const double area = static_cast<double>(a.input_size) * static_cast<double>(a.input_size) / (probe * probe);
      const double bytes = 3 * 4 * largest * area;  // input, output and one temporary of the largest stage
      const double budget = static_cast<double>(ld::available_memory()) / 2;
      if (budget > 0 && bytes > budget) {
        throw Error("--input-size " + std::to_string(a.input_size) + ": the forward pass would hold about " +
                    core::format_bytes(bytes) + " of feature maps, more than half of the available memory (" +
                    core::format_bytes(budget) + "); forward FLOPs would be about " +
                    core::format_flops(static_cast<double>(small.flops_from(0)) * area) + " per image");
      }
    }
  }
  core::ModelProfile profile = core::profile_model(*model, {a.in_channels, a.input_size, a.input_size});
  const std::int64_t params = count_params(model->shared_from_this());
  const double total = static_cast<double>(profile.flops_from(0));

  nlohmann::json stages = nlohmann::json::array();
  for (std::size_t i = 0; i < model->num_stages(); ++i) {
    stages.push_back({{"index", i},
                      {"name", model->stage_name(i)},
                      {"output_shape", profile.stage_output_shapes[i]},
                      {"params", count_params(model->stage_module(i))},
                      {"forward_flops", profile.stage_flops[i]}});
  }
  nlohmann::json head = {{"params", count_params(model->head_module())}, {"forward_flops", profile.head_flops}};
  if (a.json) {
    nlohmann::json out = {{"variant", a.variant},
                          {"plugin", info.manifest.name},
                          {"input", {a.in_channels, a.input_size, a.input_size}},
                          {"num_classes", a.num_classes},
                          {"params", params},
                          {"forward_flops", profile.flops_from(0)},
                          {"num_stages", model->num_stages()},
                          {"stages", stages},
                          {"head", head},
                          {"flop_convention", "2 x multiply-accumulates of conv and linear layers, per image"}};
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("%s (%s plugin), input %lldx%lldx%lld, %lld classes, %zu stages + head\n", a.variant.c_str(),
              info.manifest.name.c_str(), static_cast<long long>(a.in_channels), static_cast<long long>(a.input_size),
              static_cast<long long>(a.input_size), static_cast<long long>(a.num_classes), model->num_stages());
  std::printf("%5s  %-12s %-14s %12s %16s %7s\n", "stage", "name", "output", "params", "forward FLOPs", "share");
  for (const auto& s : stages) {
    double f = s["forward_flops"].get<double>();
    std::printf("%5zu  %-12s %-14s %12lld %16lld %6.2f%%\n", s["index"].get<std::size_t>(),
                s["name"].get<std::string>().c_str(), shape_text(s["output_shape"]).c_str(),
                static_cast<long long>(s["params"].get<std::int64_t>()), static_cast<long long>(f), 100.0 * f / total);
  }
  std::printf("%5s  %-12s %-14s %12lld %16lld %6.2f%%\n", "", "head", shape_text({a.num_classes}).c_str(),
              static_cast<long long>(head["params"].get<std::int64_t>()), static_cast<long long>(profile.head_flops),
              100.0 * profile.head_flops / total);
  std::printf("total: %lld parameters, %lld forward FLOPs per image (%s; 2 x MACs of conv and linear layers)\n",
              static_cast<long long>(params), static_cast<long long>(profile.flops_from(0)),
              core::format_flops(total).c_str());
  return 0;
}

}  // namespace ld::cli
