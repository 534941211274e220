#include "learndrop/core/stage_stats.h"

#include <cmath>

#include <ATen/ATen.h>

namespace ld::core {

namespace {
std::vector<at::Tensor> copy_parameters(StagedModel& model, std::size_t stage) {
  std::vector<at::Tensor> out;
  for (const auto& p : model.stage_module(stage)->parameters()) out.push_back(p.detach().clone());
  return out;
}
}  // namespace

StageStatsTracker::StageStatsTracker(StagedModel& model) : model_(model), grad_norm_sum_(model.num_stages(), 0.0) {
  for (std::size_t i = 0; i < model.num_stages(); ++i) snapshot_.push_back(copy_parameters(model, i));
}

void StageStatsTracker::add_step_gradients(std::size_t cut) {
  at::NoGradGuard no_grad;
  for (std::size_t i = cut; i < model_.num_stages(); ++i) {
    double grad2 = 0;
    for (const auto& p : model_.stage_module(i)->parameters()) {
      if (p.grad().defined()) grad2 += p.grad().pow(2).sum().item<double>();
    }
    grad_norm_sum_[i] += std::sqrt(grad2);
  }
  ++grad_steps_;
}

std::vector<StageStats> StageStatsTracker::measure(std::size_t cut) {
  at::NoGradGuard no_grad;
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
      s.mean_grad_norm = grad_steps_ > 0 ? grad_norm_sum_[i] / static_cast<double>(grad_steps_) : 0.0;
      snapshot_[i] = copy_parameters(model_, i);
    } else {
      snapshot_[i].clear();
    }
    out.push_back(std::move(s));
  }
  std::fill(grad_norm_sum_.begin(), grad_norm_sum_.end(), 0.0);
  grad_steps_ = 0;
  return out;
}

}  // namespace ld::core
