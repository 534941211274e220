#include "run_setup.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include "learndrop/core/distributed.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/seeds.h"
#include "learndrop/error.h"
#include "learndrop/core/start_weights.h"

namespace ld::core {

namespace {

// Converts 4-D parameters to channels-last, the fast layout of oneDNN
// convolutions on CPU.
void to_channels_last(torch::nn::Module& model) {
  at::NoGradGuard no_grad;
  for (auto& p : model.parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

at::ScalarType storage_type(const std::string& name) {
  if (name == "float16") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  return at::kFloat;
}

}  // namespace

RunParts set_up_run(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts,
                    const RunOutput::Resume* resume) {
  RunParts p;
  p.device = resolve_device(cfg.device);
  p.precision = parse_precision(cfg.train.precision);
  if (const std::string why = precision_refusal(p.device, p.precision); !why.empty()) throw Error(why);
  p.scaler = std::make_unique<GradScaler>(p.precision == Precision::kFp16);

  p.dataset = host.create_dataset(cfg.dataset.plugin, cfg.dataset.options, dataset_context_from_environment(cfg.seed));
  const std::vector<std::int64_t> shape = p.dataset->sample_shape();
  if (shape.size() != 3)
    throw Error("dataset '" + cfg.dataset.plugin + "' reports a sample shape that is not [C, H, W]");
  p.model = host.create_model(cfg.model.plugin, cfg.model.options,
                             ModelContext{shape[0], shape[1], shape[2], p.dataset->num_classes()});
  if (p.model->num_stages() == 0) throw Error("model '" + cfg.model.plugin + "' has no stages");
  p.model_label = p.model->label().empty() ? cfg.model.plugin : p.model->label();
  if (!cfg.model_weights.empty()) {
    p.weights_loaded = load_start_weights(*p.model, cfg.model_weights, cfg.model_head == "reset");
  }
  if (cfg.model_freeze == "all") {
    p.freeze_stages = p.model->num_stages();
  } else {
    p.freeze_stages = static_cast<std::size_t>(std::stoll(cfg.model_freeze));
    if (p.freeze_stages > p.model->num_stages()) {
      throw Error("model.freeze: " + cfg.model_freeze + " stages, but model '" + p.model_label + "' has " +
                  std::to_string(p.model->num_stages()) + " (use all to train the head alone)");
    }
  }
  to_channels_last(*p.model);
  p.profile = profile_model(*p.model, shape);
  p.model->to(p.device);

  p.n_train = p.dataset->size(Split::kTrain);
  const std::int64_t batch = cfg.train.batch_size;
  // A data-parallel rank trains on its 1/world of each batch (Trainer::shard_order).
  const std::int64_t world = opts.group ? opts.group->world() : 1;
  if (batch % world != 0) {
    throw Error("train.batch_size " + std::to_string(batch) + " does not split evenly over " + std::to_string(world) +
                " ranks: the batch stays the config's global batch, each rank trains on batch_size / ranks of it "
                "(use a multiple of " +
                std::to_string(world) + ")");
  }
  // A last batch of one sample (per rank) cannot train batch norm; it is left out of its epoch.
  p.steps_per_epoch = p.n_train / batch + (p.n_train % batch >= 2 * world ? 1 : 0);
  if (p.steps_per_epoch == 0) {
    throw Error("dataset '" + cfg.dataset.plugin + "' has " + std::to_string(p.n_train) +
                " training samples; at least 2 are needed");
  }
  if (cfg.stream.enabled()) {
    if (world > 1) {
      throw Error("stream.parts " + std::to_string(cfg.stream.parts) +
                  ": data-parallel runs of a stream are not built (run it in one process)");
    }
    if (p.n_train / cfg.stream.parts < 2) {
      throw Error("stream.parts " + std::to_string(cfg.stream.parts) + " splits the " + std::to_string(p.n_train) +
                  " training samples of dataset '" + cfg.dataset.plugin + "' into parts of fewer than 2 samples");
    }
  }
  p.schedule = std::make_unique<Schedule>(cfg, p.n_train, batch, world);
  p.policy = host.create_policy(
      cfg.policy.plugin, cfg.policy.options,
      PolicyContext{p.model->num_stages(), p.steps_per_epoch, cfg.train.epochs, cfg.train.warmup_epochs});
  p.views = cfg.cache_views;
  ShiftFlip shift_flip;
  const bool can_shift = p.dataset->random_train_transform() && p.dataset->shift_flip(shift_flip);
  if (cfg.cache_augment == "feature" && !can_shift) {
    throw Error("cache.augment: feature needs a dataset whose random training transform is a shift and/or flip; "
                "dataset '" + cfg.dataset.plugin + "' (" + p.dataset->describe() +
                ") declares none: use cache.augment: views (or auto)");
  }
  p.feature_augment = can_shift && (cfg.cache_augment == "feature" || (cfg.cache_augment == "auto" && p.views == 1));
  if (p.feature_augment) {
    p.views = shift_flip.flip ? 2 : 1;
    p.augmentation_after_drop =
        "feature: the untransformed sample" + std::string(shift_flip.flip ? " and its mirror cached" : " cached") +
        (shift_flip.max_shift > 0 ? ", maps shifted by up to " + std::to_string(shift_flip.max_shift) +
                                        " input pixels / the cut's stride each epoch"
                                  : "");
  } else if (!p.dataset->random_train_transform()) {
    if (p.views > 1) {
      spdlog::warn(
          "cache.views is {} but dataset '{}' has no random training transform: the views would be "
          "identical, caching 1",
          p.views, cfg.dataset.plugin);
    }
    p.views = 1;
    p.augmentation_after_drop = "none: the dataset does not augment";
  } else if (p.views == 1) {
    // Warned about at the first drop (RunReporter::drop), when it matters.
    p.augmentation_after_drop = "frozen: 1 cached view per sample, every epoch after a drop sees the same draw";
  } else {
    p.augmentation_after_drop = std::to_string(p.views) + " cached views per sample, one drawn per epoch";
  }

  // The cache plugin is created (and its options checked) before the run
  // folder is, not at the first drop hours later; that drop uses this instance.
  CacheContext cctx{opts.out_dir, cfg.threads, device_text(p.device)};
  auto prepared = std::make_shared<std::shared_ptr<FeatureCache>>(
      host.create_cache(cfg.cache.plugin, cfg.cache.options, cctx));
  p.out = std::make_unique<RunOutput>(opts.out_dir, resume);
  p.out->write_config(cfg.effective_yaml());
  DropSettings drop;
  drop.dtype = storage_type(cfg.cache_dtype);
  drop.build_batch = std::max<std::int64_t>(batch, 256);
  drop.seed = cfg.seed;
  drop.views = p.views;
  drop.feature_augment = p.feature_augment;
  drop.shift_flip = shift_flip;
  drop.device = p.device;
  drop.precision = p.precision;
  drop.data_key = cfg.dataset.plugin + "|" + std::to_string(cfg.seed) + "|" + cfg.identity_yaml();
  p.controller = std::make_unique<DropController>(
      *p.model, *p.dataset,
      [&host, &cfg, cctx, prepared] {
        if (*prepared) return std::exchange(*prepared, nullptr);
        return host.create_cache(cfg.cache.plugin, cfg.cache.options, cctx);
      },
      p.profile.stage_flops, p.profile.stage_output_shapes, drop);
  if (cfg.stream.enabled()) {
    std::vector<std::int64_t> order(static_cast<std::size_t>(p.n_train));
    std::iota(order.begin(), order.end(), std::int64_t{0});
    if (cfg.stream.order == "shuffle") order = epoch_order(p.n_train, mix_seed(cfg.seed, 0x73747265616dULL), 0);
    p.controller->set_stream(std::move(order));  // nothing has arrived yet
  }
  std::vector<double> row_bytes = {0};
  for (const auto& shape : p.profile.stage_output_shapes) {
    double elements = 1;
    for (auto d : shape) elements *= static_cast<double>(d);
    row_bytes.push_back(elements * static_cast<double>(c10::elementSize(drop.dtype)));
  }
  p.cost = std::make_unique<DropCost>(p.profile, shape, std::move(row_bytes), p.views,
                                      p.feature_augment && shift_flip.max_shift > 0);
  p.optimizer = std::make_unique<StagedOptimizer>(*p.model, cfg.train);
  p.tracker = std::make_unique<StageStatsTracker>(*p.model);
  p.feed = std::make_unique<BatchFeed>(p.controller->source(cfg.loader_threads),
                                       FeedSettings{batch / world, cfg.prefetch, p.device});
  return p;
}

}  // namespace ld::core
