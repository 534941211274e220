#include "loop/optimizer.h"

#include <cmath>

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/serialize.h>

#include <sstream>

#include "learndrop/error.h"

#include "run/torch_compat.h"

namespace ld::core {

StagedOptimizer::StagedOptimizer(StagedModel& model, const TrainSettings& t) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  auto add_group = [&](const std::shared_ptr<torch::nn::Module>& module, std::size_t stage) {
    std::vector<at::Tensor> params;
    for (const auto& p : module->parameters()) {
      if (p.requires_grad()) params.push_back(p);
    }
    if (params.empty()) return;
    groups.emplace_back(std::move(params));
    group_stage_.push_back(stage);
  };
  for (std::size_t i = 0; i < model.num_stages(); ++i) add_group(model.stage_module(i), i);
  add_group(model.head_module(), model.num_stages());
  if (t.optimizer == "adam") {
    optimizer_ = std::make_unique<torch::optim::Adam>(std::move(groups),
                                                      torch::optim::AdamOptions(t.lr).weight_decay(t.weight_decay));
  } else if (t.optimizer == "adamw") {
    optimizer_ = std::make_unique<torch::optim::AdamW>(std::move(groups),
                                                       torch::optim::AdamWOptions(t.lr).weight_decay(t.weight_decay));
  } else {
    optimizer_ = std::make_unique<torch::optim::SGD>(
        std::move(groups),
        torch::optim::SGDOptions(t.lr).momentum(t.momentum).nesterov(t.nesterov).weight_decay(t.weight_decay));
  }
}

void StagedOptimizer::drop_stages_before(std::size_t cut) {
  auto& groups = optimizer_->param_groups();
  auto& state = optimizer_->state();
  std::vector<torch::optim::OptimizerParamGroup> kept;
  std::vector<std::size_t> kept_stage;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    if (group_stage_[g] < cut) {
      for (const auto& p : groups[g].params()) state.erase(compat::optimizer_state_key(state, p));
    } else {
      kept.push_back(groups[g]);
      kept_stage.push_back(group_stage_[g]);
    }
  }
  groups = std::move(kept);
  group_stage_ = std::move(kept_stage);
}

void StagedOptimizer::set_lr(double lr) {
  for (auto& g : optimizer_->param_groups()) g.options().set_lr(lr);
}

std::string StagedOptimizer::save() const {
  torch::serialize::OutputArchive archive;
  optimizer_->save(archive);
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

void StagedOptimizer::load(const std::string& bytes) {
  torch::serialize::InputArchive archive;
  std::istringstream in(bytes);
  try {
    archive.load_from(in);
    optimizer_->load(archive);
  } catch (const c10::Error& e) {
    const std::string what = e.what();
    throw Error("optimizer state does not match this run's parameters: " + what.substr(0, what.find('\n')));
  }
}

std::size_t StagedOptimizer::state_entries() const { return optimizer_->state().size(); }

std::vector<at::Tensor> StagedOptimizer::parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& g : optimizer_->param_groups()) out.insert(out.end(), g.params().begin(), g.params().end());
  return out;
}

double learning_rate(const TrainSettings& t, double epoch) {
  double factor = 1.0;
  if (t.lr_schedule == "step") {
    factor = std::pow(t.lr_gamma, std::floor(epoch / static_cast<double>(t.lr_step_epochs)));
  } else if (t.lr_schedule == "cosine") {
    double progress = std::min(1.0, epoch / static_cast<double>(t.epochs));
    factor = 0.5 * (1.0 + std::cos(M_PI * progress));
  }
  factor *= warmup_factor(t, epoch);  // x 1.0 after the warm-up: the same bits as before
  return t.lr * factor;
}

double warmup_factor(const TrainSettings& t, double epoch) {
  return t.warmup_epochs > 0 && epoch < t.warmup_epochs ? (epoch + 1e-3) / t.warmup_epochs : 1.0;
}

}  // namespace ld::core
