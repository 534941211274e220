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
                           at::Device device, Precision precision, bool losses)
    : model_(model), device_(device), precision_(precision), losses_(losses) {
  if (samples.size() < 2) throw Error("policy.probe_samples: the probe batch needs at least 2 samples");
  Batch batch = dataset.get_batch(Split::kTrain, samples, 0);
  at::Tensor x = batch.images;
  if (x.dim() == 4) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  inputs_ = x.to(device_);
  labels_ = batch.labels.to(device_);
}

namespace {
// The batch's mean cross-entropy from the head's logits, in float.
double loss_of(const at::Tensor& logits, const at::Tensor& labels) {
  return at::cross_entropy_loss(logits.to(at::kFloat), labels).item<double>();
}
}  // namespace

void FeatureProbe::measure(std::vector<StageStats>* stages, double* probe_loss) {
  at::NoGradGuard no_grad;
  model_.eval();
  AutocastGuard autocast(device_, precision_);
  const std::size_t n = model_.num_stages();
  std::vector<at::Tensor> outputs, now;
  at::Tensor h = inputs_;
  for (std::size_t s = 0; s < n; ++s) {
    h = model_.forward_stage(s, h);
    now.push_back(centred_gram(h.to(at::kFloat)));
    if (losses_ && outputs_.empty()) outputs.push_back(h);
  }
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
  if (!losses_) return;
  if (outputs_.empty()) {  // the reference: the model at step 0
    outputs_ = std::move(outputs);
    return;
  }
  if (stages != nullptr) {
    const double loss_now = loss_of(model_.forward_head(h), labels_);
    if (probe_loss != nullptr) *probe_loss = loss_now;
    // Stages 0..k as at the start: the rest of the model from stage k's output then.
    for (std::size_t k = 0; k < n && k < stages->size(); ++k) {
      at::Tensor x = outputs_[k];
      for (std::size_t s = k + 1; s < n; ++s) x = model_.forward_stage(s, x);
      (*stages)[k].frozen_probe_loss = loss_of(model_.forward_head(x), labels_);
    }
  }
}

void FeatureProbe::save(Checkpoint& ckpt) const {
  for (std::size_t s = 0; s < start_.size(); ++s) {
    ckpt.tensors["probe/start/" + std::to_string(s)] = start_[s];
    ckpt.tensors["probe/previous/" + std::to_string(s)] = previous_[s];
  }
  for (std::size_t s = 0; s < outputs_.size(); ++s) ckpt.tensors["probe/output/" + std::to_string(s)] = outputs_[s];
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
  outputs_.clear();
  if (!losses_) return;
  for (std::size_t s = 0; s < model_.num_stages(); ++s) {
    const std::string name = "probe/output/" + std::to_string(s);
    if (!ckpt.tensors.count(name)) {
      throw Error("checkpoint " + ckpt.from.string() + ": no " + name +
                  " (written without the freeze probe: by an older LearnDrop, or by a run whose policy did not ask "
                  "for it and without policy.probe_samples)");
    }
    outputs_.push_back(ckpt.tensor(name).to(device_).contiguous(ckpt.tensor(name).dim() == 4
                                                                     ? at::MemoryFormat::ChannelsLast
                                                                     : at::MemoryFormat::Contiguous));
  }
}

}  // namespace ld::core
