#include "run/run_setup.h"

#include <algorithm>
#include <numeric>
#include <optional>
#include <utility>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include "learndrop/core/cache_plan.h"
#include "learndrop/core/class_subset.h"
#include "parallel/distributed.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/seeds.h"
#include "learndrop/error.h"
#include "run/start_weights.h"

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

}  // namespace

RunParts set_up_run(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts,
                    const Checkpoint* checkpoint) {
  at::set_num_threads(cfg.threads);
  at::manual_seed(cfg.seed);
  // A resume: the run folder's logs are cut back to where the checkpoint was.
  std::optional<RunOutput::Resume> resume;
  if (checkpoint) {
    const nlohmann::json& out = checkpoint->meta.at("output");
    resume = RunOutput::Resume{out.at("metrics_bytes").get<std::int64_t>(), out.at("stats_bytes").get<std::int64_t>()};
  }
  RunParts p;
  p.device = resolve_device(cfg.device);
  p.precision = parse_precision(cfg.train.precision);
  if (const std::string why = precision_refusal(p.device, p.precision); !why.empty()) throw Error(why);
  p.scaler = std::make_unique<GradScaler>(p.precision == Precision::kFp16);

  p.dataset = open_dataset(cfg, host);  // dataset.classes applied
  const std::vector<std::int64_t> shape = p.dataset->sample_shape();
  if (shape.size() != 3)
    throw Error("dataset '" + cfg.dataset.plugin + "' reports a sample shape that is not [C, H, W]");
  p.model = host.create_model(cfg.model.plugin, cfg.model.options,
                             ModelContext::of(shape, p.dataset->num_classes()));
  if (p.model->num_stages() == 0) throw Error("model '" + cfg.model.plugin + "' has no stages");
  p.model_label = p.model->label().empty() ? cfg.model.plugin : p.model->label();
  // A resumed run's checkpoint holds every tensor: its source may have moved.
  if (!cfg.model_weights.empty() && !checkpoint) {
    p.weights_loaded = load_start_weights(*p.model, cfg.model_weights, cfg.model_head != "keep");
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
  if (cfg.model_head == "probe" && world > 1) {
    throw Error("model.head: probe: fitting the head in a data-parallel run is not built (fit it in one process: "
                "a linear probe, model.head: reset with model.freeze: all, then model.weights from that run with "
                "model.head: keep)");
  }
  p.steps_per_epoch = steps_for(p.n_train, batch, world);
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
  PolicyContext& policy_ctx = p.policy_context;
  policy_ctx.num_stages = p.model->num_stages();
  policy_ctx.steps_per_epoch = p.steps_per_epoch;
  policy_ctx.epochs = cfg.train.epochs;
  policy_ctx.lr_warmup_epochs = cfg.train.warmup_epochs;
  p.policy = host.create_policy(cfg.policy.plugin, cfg.policy.options, policy_ctx);
  if (cfg.train.checkpoint_every > 0 && opts.group == nullptr && !p.policy->has_state()) {
    spdlog::warn(
        "policy '{}' does not save its state (DropPolicy::has_state() is false): the checkpoints this run writes "
        "cannot be resumed (set train.checkpoint_every: 0 not to write them, or implement "
        "has_state/save_state/load_state: docs/plugins.md)",
        cfg.policy.plugin);
  }
  // Views, feature augmentation, dtype and folder: the one plan `ldrop cache plan` prints.
  p.cache = plan_cache(cfg, *p.dataset, opts.out_dir);
  const CachePlan& plan = p.cache;
  if (!plan.warning.empty()) spdlog::warn("{}", plan.warning);
  const ShiftFlip& shift_flip = plan.shift_flip;

  // The cache plugin is created (and its options checked) before the run
  // folder is, not at the first drop hours later; that drop uses this instance.
  CacheContext cctx;
  cctx.run_dir = opts.out_dir;
  cctx.threads = cfg.threads;
  cctx.device = p.device;
  cctx.dir = plan.dir.string();
  auto prepared = std::make_shared<std::shared_ptr<FeatureCache>>(
      host.create_cache(cfg.cache.plugin, cfg.cache.options, cctx));
  p.out = std::make_unique<RunOutput>(opts.out_dir, resume ? &*resume : nullptr);
  p.out->write_config(cfg.effective_yaml());
  DropSettings drop;
  drop.dtype = plan.dtype;
  drop.build_batch = DropSettings::build_batch_for(batch, p.device.is_cuda());
  drop.seed = cfg.seed;
  drop.views = plan.views;
  drop.feature_augment = plan.feature_augment;
  drop.shift_flip = shift_flip;
  drop.device = p.device;
  drop.precision = p.precision;
  drop.loader_threads = cfg.loader_threads;
  drop.data_key = cfg.dataset.plugin + "|" + std::to_string(cfg.seed) + "|" + cfg.identity_yaml();
  p.controller = std::make_unique<DropController>(
      *p.model, *p.dataset,
      [&host, &cfg, cctx, prepared] {
        if (*prepared) return std::exchange(*prepared, nullptr);
        return host.create_cache(cfg.cache.plugin, cfg.cache.options, cctx);
      },
      p.profile.stage_flops, p.profile.stage_output_shapes, drop);
  // The feature probe's samples come from what the run has at its start.
  std::vector<std::int64_t> probe_pool;
  if (cfg.stream.enabled()) {
    std::vector<std::int64_t> order(static_cast<std::size_t>(p.n_train));
    std::iota(order.begin(), order.end(), std::int64_t{0});
    if (cfg.stream.order == "shuffle") order = epoch_order(p.n_train, mix_seed(cfg.seed, 0x73747265616dULL), 0);
    if (cfg.stream.order == "classes") order = class_incremental_order(p.dataset->labels(Split::kTrain), cfg.seed);
    probe_pool.assign(order.begin(), order.begin() + p.n_train / cfg.stream.parts);  // the first part
    p.controller->set_stream(std::move(order));  // nothing has arrived yet
  }
  p.cost = std::make_unique<DropCost>(p.profile, shape, plan);
  p.judge.guards = DropGuards::from(cfg.policy.options, policy_ctx);
  p.judge.cost = p.cost.get();
  p.judge.drop_mode = cfg.drop_mode;
  p.judge.cost_guard = cfg.cost_guard;
  p.judge.shadow = cfg.policy_shadow;
  p.judge.stages = p.model->num_stages();
  p.optimizer = std::make_unique<StagedOptimizer>(*p.model, cfg.train);
  p.tracker = std::make_unique<StageStatsTracker>(*p.model);
  if (cfg.probe_samples > 0 || p.policy->wants_feature_similarity() || p.policy->wants_freeze_probe()) {
    // A fixed set of training samples: of the first part in a stream (the
    // only samples there at the start), else of the whole set.
    std::vector<std::int64_t> pool =
        cfg.stream.enabled() ? probe_pool : epoch_order(p.n_train, mix_seed(cfg.seed, 0x70726f6265ULL), 0);  // "probe"
    const auto n = std::min<std::size_t>(cfg.probe_samples > 0 ? static_cast<std::size_t>(cfg.probe_samples) : 128,
                                         pool.size());
    pool.resize(n);
    // The freeze probe when the policy reads it, or in a recording run
    // (probe_samples set) for `ldrop policy replay`.
    const bool losses = cfg.probe_samples > 0 || p.policy->wants_freeze_probe();
    p.probe = std::make_unique<FeatureProbe>(*p.model, *p.dataset, pool, p.device, p.precision, losses);
  }
  p.feed = std::make_unique<BatchFeed>(p.controller->source(),
                                       FeedSettings{batch / world, cfg.prefetch, p.device});
  return p;
}

}  // namespace ld::core
