// `ldrop check`: the config validated, its effective form and hash, and the
// policy created as a run creates it, so that a criterion file (policy
// python) with a syntax error or without its class fails here, before any
// training.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "learndrop/core/class_subset.h"
#include "learndrop/core/config.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/model.h"
#include "learndrop/policy.h"

namespace ld::cli {

int check_config(const core::PluginHost& host, const core::RunConfig& cfg) {
  std::cout << cfg.effective_yaml();
  std::printf("# config hash %s\n", cfg.hash().c_str());
  std::fflush(stdout);
  // The policy's context needs the model's stages, the model the data's shape.
  auto dataset = core::open_dataset(cfg, host);
  auto model = host.create_model(cfg.model.plugin, cfg.model.options,
                                 ModelContext::of(dataset->sample_shape(), dataset->num_classes()));
  PolicyContext ctx;
  ctx.num_stages = model->num_stages();
  ctx.steps_per_epoch = std::max<std::int64_t>(1, dataset->size(Split::kTrain) / cfg.train.batch_size);
  ctx.epochs = cfg.train.epochs;
  ctx.lr_warmup_epochs = cfg.train.warmup_epochs;
  host.create_policy(cfg.policy.plugin, cfg.policy.options, ctx);
  std::printf("# policy '%s' created for the %zu stages of %s on %s: the run can start\n", cfg.policy.plugin.c_str(),
              ctx.num_stages, (model->label().empty() ? cfg.model.plugin : model->label()).c_str(),
              cfg.dataset.plugin.c_str());
  return 0;
}

}  // namespace ld::cli
