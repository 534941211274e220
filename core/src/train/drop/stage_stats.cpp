#include "drop/stage_stats.h"

#include <cmath>

#include <ATen/ATen.h>

#include "learndrop/core/checkpoint.h"
#include "learndrop/error.h"

namespace ld::core {

namespace {
std::vector<at::Tensor> copy_parameters(StagedModel& model, std::size_t stage) {
  std::vector<at::Tensor> out;
  for (const auto& p : model.stage_module(stage)->parameters()) out.push_back(p.detach().clone());
  return out;
}
}  // namespace

void StageStatsTracker::save(Checkpoint& ckpt) const {
  for (std::size_t i = 0; i < snapshot_.size(); ++i) {
    for (std::size_t j = 0; j < snapshot_[i].size(); ++j) {
      ckpt.tensors["tracker/" + std::to_string(i) + "/" + std::to_string(j)] = snapshot_[i][j];
    }
  }
  ckpt.tensors["tracker/grad_norm_sum"] = at::tensor(step_norm_totals(), at::kDouble);
  ckpt.meta["tracker_grad_steps"] = grad_steps_;
}

void StageStatsTracker::load(const Checkpoint& ckpt) {
  at::NoGradGuard no_grad;
  for (std::size_t i = 0; i < snapshot_.size(); ++i) {
    const std::string prefix = "tracker/" + std::to_string(i) + "/";
    // A dropped stage has no snapshot.
    if (!ckpt.tensors.count(prefix + "0")) {
      snapshot_[i].clear();
      continue;
    }
    snapshot_[i] = copy_parameters(model_, i);
    for (std::size_t j = 0; j < snapshot_[i].size(); ++j)
      snapshot_[i][j].copy_(ckpt.tensor(prefix + std::to_string(j)));
  }
  at::Tensor sums = ckpt.tensor("tracker/grad_norm_sum").to(at::kDouble).contiguous();
  if (sums.numel() != static_cast<std::int64_t>(step_norm_sums_.size())) {
    throw Error("checkpoint " + ckpt.from.string() + ": tracker/grad_norm_sum has " + std::to_string(sums.numel()) +
                " values for " + std::to_string(step_norm_sums_.size()) + " stages");
  }
  // The period's running sums go on on the parameters' device, as before the
  // checkpoint: the same additions in the same order.
  for (std::size_t i = 0; i < step_norm_sums_.size(); ++i) {
    const at::Device device = model_.stage_module(i)->parameters().empty()
                                  ? at::Device(at::kCPU)
                                  : model_.stage_module(i)->parameters().front().device();
    step_norm_sums_[i] = sums[static_cast<std::int64_t>(i)].clone().to(device);
  }
  grad_steps_ = ckpt.meta.at("tracker_grad_steps").get<std::int64_t>();
}

StageStatsTracker::StageStatsTracker(StagedModel& model) : model_(model), step_norm_sums_(model.num_stages()) {
  for (std::size_t i = 0; i < model.num_stages(); ++i) snapshot_.push_back(copy_parameters(model, i));
}

void StageStatsTracker::add_step_gradients(std::size_t cut) {
  at::NoGradGuard no_grad;
  // Reductions on the parameters' device, read once per evaluation point
  // (measure): no synchronisation per step on a GPU.
  for (std::size_t i = cut; i < model_.num_stages(); ++i) {
    at::Tensor grad2;
    for (const auto& p : model_.stage_module(i)->parameters()) {
      if (!p.grad().defined()) continue;
      const at::Tensor g = p.grad().pow(2).sum().to(at::kDouble);
      grad2 = grad2.defined() ? grad2 + g : g;
    }
    if (!grad2.defined()) continue;
    at::Tensor& sum = step_norm_sums_[i];
    sum = sum.defined() ? sum + grad2.sqrt() : grad2.sqrt();
  }
  ++grad_steps_;
}

std::vector<double> StageStatsTracker::step_norm_totals() const {
  std::vector<double> out(step_norm_sums_.size(), 0.0);
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (step_norm_sums_[i].defined()) out[i] = step_norm_sums_[i].item<double>();
  }
  return out;
}

std::vector<StageStats> StageStatsTracker::measure(std::size_t cut) {
  at::NoGradGuard no_grad;
  const std::vector<double> norm_sums = step_norm_totals();
  std::vector<StageStats> out;
  for (std::size_t i = 0; i < model_.num_stages(); ++i) {
    StageStats s;
    s.name = model_.stage_name(i);
    s.dropped = i < cut;
    auto params = model_.stage_module(i)->parameters();
    double norm2 = 0, prev2 = 0, diff2 = 0, grad2 = 0;
    for (std::size_t j = 0; j < params.size(); ++j) {
      const at::Tensor& p = params[j];
      s.num_params += p.numel();
      norm2 += p.pow(2).sum().item<double>();
      if (s.dropped) continue;
      const at::Tensor& before = snapshot_[i][j];
      prev2 += before.pow(2).sum().item<double>();
      diff2 += (p - before).pow(2).sum().item<double>();
      if (p.grad().defined()) grad2 += p.grad().pow(2).sum().item<double>();
    }
    s.param_norm = std::sqrt(norm2);
    if (!s.dropped) {
      s.relative_change = prev2 > 0 ? std::sqrt(diff2 / prev2) : 0.0;
      s.grad_norm = std::sqrt(grad2);
      s.mean_grad_norm = grad_steps_ > 0 ? norm_sums[i] / static_cast<double>(grad_steps_) : 0.0;
      snapshot_[i] = copy_parameters(model_, i);
    } else {
      snapshot_[i].clear();
    }
    out.push_back(std::move(s));
  }
  for (auto& t : step_norm_sums_) t = at::Tensor();
  grad_steps_ = 0;
  return out;
}

}  // namespace ld::core
