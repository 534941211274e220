#include "drop/feature_probe.h"

#include <cmath>

#include <ATen/ATen.h>

#include "learndrop/core/checkpoint.h"
#include "learndrop/error.h"

namespace ld::core {

at::Tensor centred_gram(const at::Tensor& features) {
  // The product in float (a double one took most of a point's time), then
  // centred and compared in double.
  const at::Tensor x = features.reshape({features.size(0), -1}).to(at::kFloat).contiguous();
  const at::Tensor k = at::mm(x, x.t()).to(at::kCPU).to(at::kDouble);
  // H K H with H = I - 11ᵀ/n: subtract row and column means, add the grand mean.
  return k - k.mean(0, true) - k.mean(1, true) + k.mean();
}

double linear_cka(const at::Tensor& k, const at::Tensor& l) {
  const double kl = (k * l).sum().item<double>();
  const double kk = (k * k).sum().item<double>(), ll = (l * l).sum().item<double>();
  if (kk <= 0 && ll <= 0) return 1.0;
  if (kk <= 0 || ll <= 0) return 0.0;
  return kl / std::sqrt(kk * ll);
}

FeatureProbe::FeatureProbe(StagedModel& model, const Dataset& dataset, const std::vector<std::int64_t>& samples,
                           at::Device device, Precision precision)
    : model_(model), device_(device), precision_(precision) {
  if (samples.size() < 2) throw Error("policy.probe_samples: the probe batch needs at least 2 samples");
  at::Tensor x = dataset.get_batch(Split::kTrain, samples, 0).images;
  if (x.dim() == 4) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  inputs_ = x.to(device_);
}

std::vector<at::Tensor> FeatureProbe::grams() {
  at::NoGradGuard no_grad;
  model_.eval();
  AutocastGuard autocast(device_, precision_);
  std::vector<at::Tensor> out;
  at::Tensor h = inputs_;
  for (std::size_t s = 0; s < model_.num_stages(); ++s) {
    h = model_.forward_stage(s, h);
    out.push_back(centred_gram(h.to(at::kFloat)));
  }
  return out;
}

void FeatureProbe::measure(std::vector<StageStats>* stages) {
  std::vector<at::Tensor> now = grams();
  if (start_.empty()) {
    start_ = now;
    previous_ = now;
  }
  if (stages != nullptr) {
    for (std::size_t s = 0; s < now.size() && s < stages->size(); ++s) {
      (*stages)[s].feature_similarity = linear_cka(previous_[s], now[s]);
      (*stages)[s].feature_similarity_start = linear_cka(start_[s], now[s]);
    }
  }
  previous_ = std::move(now);
}

void FeatureProbe::save(Checkpoint& ckpt) const {
  for (std::size_t s = 0; s < start_.size(); ++s) {
    ckpt.tensors["probe/start/" + std::to_string(s)] = start_[s];
    ckpt.tensors["probe/previous/" + std::to_string(s)] = previous_[s];
  }
}

void FeatureProbe::load(const Checkpoint& ckpt) {
  start_.clear();
  previous_.clear();
  for (std::size_t s = 0; s < model_.num_stages(); ++s) {
    const std::string i = std::to_string(s);
    if (!ckpt.tensors.count("probe/start/" + i)) {
      throw Error("checkpoint " + ckpt.from.string() + ": no probe/start/" + i +
                  " (the checkpoint was written without policy.probe_samples)");
    }
    start_.push_back(ckpt.tensor("probe/start/" + i).to(at::kDouble));
    previous_.push_back(ckpt.tensor("probe/previous/" + i).to(at::kDouble));
  }
}

}  // namespace ld::core
