#include "learndrop/core/trainer.h"

#include <chrono>
#include <cstdio>
#include <numeric>
#include <utility>

#include <unistd.h>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <tbb/global_control.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include "learndrop/core/batch_feed.h"
#include "learndrop/core/device.h"
#include "learndrop/core/drop_controller.h"
#include "learndrop/core/flops.h"
#include "learndrop/core/interrupt.h"
#include "learndrop/core/optimizer.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/run_output.h"
#include "learndrop/core/seeds.h"
#include "learndrop/core/stage_stats.h"
#include "learndrop/core/text.h"
#include "learndrop/registrar.h"

namespace ld::core {

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Converts 4-D parameters to channels-last, the fast layout of oneDNN
// convolutions on CPU.
void to_channels_last(torch::nn::Module& model) {
  at::NoGradGuard no_grad;
  for (auto& p : model.parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

at::Tensor model_layout(const at::Tensor& images) {
  return images.dim() == 4 ? images.contiguous(at::MemoryFormat::ChannelsLast) : images;
}

std::string model_label(const PluginChoice& model) {
  return model.options.has("variant") ? model.options.get_string("variant") : model.plugin;
}

at::ScalarType storage_type(const std::string& name) {
  if (name == "float16") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  return at::kFloat;
}

struct EvalResult {
  double loss = 0;
  double accuracy = 0;
};

// Test loss and accuracy of the full model (every stage, eval mode) on
// `device` in `precision`.
EvalResult evaluate(StagedModel& model, const Dataset& dataset, std::int64_t batch_size, at::Device device,
                    Precision precision) {
  model.eval();
  at::NoGradGuard no_grad;
  AutocastGuard autocast(device, precision);
  const std::int64_t n = dataset.size(Split::kTest);
  // Summed on the device; read once at the end.
  at::Tensor loss = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device));
  at::Tensor correct = at::zeros({}, at::TensorOptions().dtype(at::kLong).device(device));
  for (std::int64_t begin = 0; begin < n; begin += batch_size) {
    throw_if_interrupted();
    std::int64_t end = std::min(n, begin + batch_size);
    std::vector<std::int64_t> idx(static_cast<std::size_t>(end - begin));
    std::iota(idx.begin(), idx.end(), begin);
    Batch b = dataset.get_batch(Split::kTest, idx, 0);
    const at::Tensor labels = b.labels.to(device);
    at::Tensor logits = model.forward(model_layout(b.images).to(device), 0);
    loss += torch::nn::functional::cross_entropy(
                logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                .to(at::kDouble);
    correct += logits.argmax(1).eq(labels).sum();
  }
  return {n ? loss.item<double>() / n : 0.0, n ? static_cast<double>(correct.item<std::int64_t>()) / n : 0.0};
}

// Running totals of one epoch. Loss and correct predictions are summed on
// the training device and read only when printed or written, so that a GPU
// never waits for the host between steps.
struct EpochTally {
  explicit EpochTally(at::Device device)
      : loss_sum(at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device))),
        correct_sum(at::zeros({}, at::TensorOptions().dtype(at::kLong).device(device))) {}
  double loss() const { return seen ? loss_sum.item<double>() / static_cast<double>(seen) : 0.0; }
  double accuracy() const {
    return seen ? static_cast<double>(correct_sum.item<std::int64_t>()) / static_cast<double>(seen) : 0.0;
  }
  at::Tensor loss_sum, correct_sum;
  std::int64_t seen = 0;
  std::int64_t flops = 0;
};

/// One training run: plugins, model, drop controller and bookkeeping.
class Trainer {
 public:
  Trainer(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts);
  json run();

 private:
  void train_epoch(std::int64_t epoch);
  void evaluation_point(std::int64_t epoch, std::int64_t step_in_epoch, EpochTally& tally);
  void report_drop(const DropReport& r, const PolicyInput& in, const Decision& d, EpochTally& tally);
  void print_epoch(std::int64_t epoch, const EpochTally& t, double train_seconds, double epoch_seconds);
  void print_live(std::int64_t epoch, std::int64_t s, const EpochTally& t, Clock::time_point start);
  json summary(double wall_seconds) const;

  const RunConfig& cfg_;
  const PluginHost& host_;
  const RunOptions& opts_;
  tbb::global_control tbb_threads_;
  at::Device device_;
  Precision precision_;
  std::unique_ptr<GradScaler> scaler_;
  std::shared_ptr<Dataset> dataset_;
  std::shared_ptr<StagedModel> model_;
  ModelProfile profile_;
  std::int64_t n_train_ = 0;
  std::int64_t steps_per_epoch_ = 0;
  std::shared_ptr<DropPolicy> policy_;
  std::unique_ptr<RunOutput> out_;
  std::unique_ptr<DropController> controller_;
  std::unique_ptr<StagedOptimizer> optimizer_;
  std::unique_ptr<StageStatsTracker> tracker_;
  std::unique_ptr<BatchFeed> feed_;
  const bool live_;
  std::int64_t views_ = 1;
  bool feature_augment_ = false;
  std::string augmentation_after_drop_;

  // Run state.
  std::vector<std::int64_t> order_;
  std::uint64_t epoch_seed_ = 0;
  std::int64_t flops_ = 0, flops_full_ = 0, eval_flops_ = 0, step_ = 0, eval_point_ = 0;
  at::Tensor loss_since_point_;  // summed on the device
  std::int64_t steps_since_point_ = 0;
  double lr_since_point_ = 0, last_lr_ = 0;
  std::size_t shadow_cut_ = 0;  // policy.shadow: the cut the policy believes in
  json shadow_drops_ = json::array();
  bool evaluated_ = false;  // whether last_eval_ is this epoch's
  double train_seconds_ = 0, cache_seconds_ = 0, cache_wait_seconds_ = 0;
  std::int64_t cache_read_bytes_ = 0;
  json drops_ = json::array();
  EvalResult last_eval_;
};

Trainer::Trainer(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts)
    : cfg_(cfg),
      host_(host),
      opts_(opts),
      tbb_threads_(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(cfg.threads)),
      device_(resolve_device(cfg.device)),
      precision_(parse_precision(cfg.train.precision)),
      live_(opts.progress && ::isatty(STDOUT_FILENO)) {
  at::set_num_threads(cfg.threads);
  torch::manual_seed(cfg.seed);
  if (const std::string why = precision_refusal(device_, precision_); !why.empty()) throw Error(why);
  scaler_ = std::make_unique<GradScaler>(precision_ == Precision::kFp16);
  loss_since_point_ = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device_));

  dataset_ = host.create_dataset(cfg.dataset.plugin, cfg.dataset.options, dataset_context_from_environment(cfg.seed));
  const std::vector<std::int64_t> shape = dataset_->sample_shape();
  if (shape.size() != 3)
    throw Error("dataset '" + cfg.dataset.plugin + "' reports a sample shape that is not [C, H, W]");
  model_ = host.create_model(cfg.model.plugin, cfg.model.options,
                             ModelContext{shape[0], shape[1], shape[2], dataset_->num_classes()});
  if (model_->num_stages() == 0) throw Error("model '" + cfg.model.plugin + "' has no stages");
  to_channels_last(*model_);
  profile_ = profile_model(*model_, shape);
  model_->to(device_);

  n_train_ = dataset_->size(Split::kTrain);
  const std::int64_t batch = cfg.train.batch_size;
  // A last batch of one sample cannot train batch norm; it is left out of its epoch.
  steps_per_epoch_ = n_train_ / batch + (n_train_ % batch >= 2 ? 1 : 0);
  if (steps_per_epoch_ == 0) {
    throw Error("dataset '" + cfg.dataset.plugin + "' has " + std::to_string(n_train_) +
                " training samples; at least 2 are needed");
  }
  policy_ = host.create_policy(
      cfg.policy.plugin, cfg.policy.options,
      PolicyContext{model_->num_stages(), steps_per_epoch_, cfg.train.epochs, cfg.train.warmup_epochs});
  views_ = cfg.cache_views;
  ShiftFlip shift_flip;
  const bool can_shift = dataset_->random_train_transform() && dataset_->shift_flip(shift_flip);
  if (cfg.cache_augment == "feature" && !can_shift) {
    throw Error("cache.augment: feature needs a dataset whose random training transform is a shift and/or flip; "
                "dataset '" + cfg.dataset.plugin + "' (" + dataset_->describe() +
                ") declares none: use cache.augment: views (or auto)");
  }
  feature_augment_ = can_shift && (cfg.cache_augment == "feature" || (cfg.cache_augment == "auto" && views_ == 1));
  if (feature_augment_) {
    views_ = shift_flip.flip ? 2 : 1;
    augmentation_after_drop_ =
        "feature: the untransformed sample" + std::string(shift_flip.flip ? " and its mirror cached" : " cached") +
        (shift_flip.max_shift > 0 ? ", maps shifted by up to " + std::to_string(shift_flip.max_shift) +
                                        " input pixels / the cut's stride each epoch"
                                  : "");
  } else if (!dataset_->random_train_transform()) {
    if (views_ > 1) {
      spdlog::warn(
          "cache.views is {} but dataset '{}' has no random training transform: the views would be "
          "identical, caching 1",
          views_, cfg.dataset.plugin);
    }
    views_ = 1;
    augmentation_after_drop_ = "none: the dataset does not augment";
  } else if (views_ == 1) {
    augmentation_after_drop_ = "frozen: 1 cached view per sample, every epoch after a drop sees the same draw";
    if (cfg.policy.plugin != "none") {
      spdlog::warn(
          "dataset '{}' augments its training samples but cache.views is 1: after a drop, every epoch "
          "trains on the same augmented draw of each sample (set cache.views: K to cache K draws)",
          cfg.dataset.plugin);
    }
  } else {
    augmentation_after_drop_ = std::to_string(views_) + " cached views per sample, one drawn per epoch";
  }

  // The cache plugin is created (and its options checked) before the run
  // folder is, not at the first drop hours later; that drop uses this instance.
  CacheContext cctx{opts.out_dir, cfg.threads, device_text(device_)};
  auto prepared = std::make_shared<std::shared_ptr<FeatureCache>>(
      host_.create_cache(cfg_.cache.plugin, cfg_.cache.options, cctx));
  out_ = std::make_unique<RunOutput>(opts.out_dir);
  out_->write_config(cfg.effective_yaml());
  DropSettings drop;
  drop.dtype = storage_type(cfg.cache_dtype);
  drop.build_batch = std::max<std::int64_t>(batch, 256);
  drop.seed = cfg.seed;
  drop.views = views_;
  drop.feature_augment = feature_augment_;
  drop.shift_flip = shift_flip;
  drop.device = device_;
  drop.precision = precision_;
  drop.data_key = cfg.dataset.plugin + "|" + std::to_string(cfg.seed) + "|" + cfg.effective_yaml();
  controller_ = std::make_unique<DropController>(
      *model_, *dataset_,
      [this, cctx, prepared] {
        if (*prepared) return std::exchange(*prepared, nullptr);
        return host_.create_cache(cfg_.cache.plugin, cfg_.cache.options, cctx);
      },
      profile_.stage_flops, profile_.stage_output_shapes, drop);
  optimizer_ = std::make_unique<StagedOptimizer>(*model_, cfg.train);
  tracker_ = std::make_unique<StageStatsTracker>(*model_);
  feed_ = std::make_unique<BatchFeed>(controller_->source(cfg.loader_threads),
                                      FeedSettings{batch, cfg.prefetch, device_});
}

json Trainer::run() {
  const auto start = Clock::now();
  spdlog::info("run {}: {} on {} ({}), policy {}, device {} ({}), {} threads ({} loading, {} batches ahead), seed {}",
               out_->dir().string(), model_label(cfg_.model), cfg_.dataset.plugin, dataset_->describe(),
               cfg_.policy.plugin, device_text(device_), precision_text(precision_), cfg_.threads,
               cfg_.loader_threads, cfg_.prefetch, cfg_.seed);
  spdlog::info("model: {} stages + head, {} per sample forward (head {})", model_->num_stages(),
               format_flops(static_cast<double>(profile_.flops_from(0))),
               format_flops(static_cast<double>(profile_.head_flops)));
  for (std::int64_t epoch = 0; epoch < cfg_.train.epochs; ++epoch) train_epoch(epoch);
  model_->to(at::kCPU);  // model.pt loads on any machine
  out_->save_model(*model_);
  json s = summary(seconds_since(start));
  out_->write_summary(s);
  spdlog::info(
      "done: test accuracy {:.2f}%, {} stages dropped of {}, forward {} vs {} full ({:.1f}% less), train {:.1f}s",
      100.0 * last_eval_.accuracy, controller_->cut(), model_->num_stages(), format_flops(static_cast<double>(flops_)),
      format_flops(static_cast<double>(flops_full_)), 100.0 * s["flops_reduction"].get<double>(), train_seconds_);
  return s;
}

void Trainer::train_epoch(std::int64_t epoch) {
  const auto epoch_start = Clock::now();
  epoch_seed_ = mix_seed(cfg_.seed, 1000003ULL * static_cast<std::uint64_t>(epoch + 1));
  order_ = epoch_order(n_train_, cfg_.seed, epoch);
  model_->train();
  controller_->keep_dropped_in_eval();
  feed_->start(order_, 0, steps_per_epoch_, epoch_seed_);
  EpochTally tally(device_);
  const std::uint64_t cache_at_start = controller_->generation();
  const CacheStats stats_at_start = controller_->cache() ? controller_->cache()->stats() : CacheStats{};
  std::int64_t s = 0;
  at::Tensor x, y;
  auto last_live = Clock::now();
  while (feed_->next(x, y)) {
    throw_if_interrupted();
    last_lr_ = learning_rate(cfg_.train, static_cast<double>(epoch) + static_cast<double>(s) / steps_per_epoch_);
    optimizer_->set_lr(last_lr_);
    const std::size_t cut = controller_->cut();
    at::Tensor logits, loss;
    {
      AutocastGuard autocast(device_, precision_);
      logits = model_->forward(x, cut);
      loss = torch::nn::functional::cross_entropy(logits, y);
    }
    optimizer_->zero_grad();
    scaler_->scale_loss(loss).backward();
    // fp16 only: the parameter list is not gathered at every fp32/bf16 step.
    const bool finite = !scaler_->enabled() || scaler_->unscale(optimizer_->parameters());
    if (policy_->wants_step_gradient_norms()) tracker_->add_step_gradients(cut);
    if (finite) optimizer_->step();  // fp16: a step with inf/NaN gradients is skipped
    scaler_->update(finite);
    lr_since_point_ += last_lr_;
    const std::int64_t b = y.size(0);
    const at::Tensor loss_value = loss.detach().to(at::kDouble);
    tally.loss_sum += loss_value * static_cast<double>(b);
    tally.correct_sum += logits.argmax(1).eq(y).sum();
    tally.seen += b;
    tally.flops += b * profile_.flops_from(cut);
    flops_full_ += b * profile_.flops_from(0);
    loss_since_point_ += loss_value;
    ++steps_since_point_;
    ++step_;
    ++s;
    const std::int64_t period = policy_->period_steps();
    if (period > 0 ? step_ % period == 0 : s == steps_per_epoch_) evaluation_point(epoch, s, tally);
    if (live_ && seconds_since(last_live) > 0.5) {
      last_live = Clock::now();
      print_live(epoch, s, tally, epoch_start);
    }
  }
  const double train_seconds = seconds_since(epoch_start);
  train_seconds_ += train_seconds;
  // Cache reads of this epoch (a cache built during the epoch counts from zero).
  CacheStats read;
  if (const FeatureCache* cache = controller_->cache()) {
    read = cache->stats();
    if (controller_->generation() == cache_at_start) {
      read.bytes_read -= stats_at_start.bytes_read;
      read.read_seconds -= stats_at_start.read_seconds;
    }
  }
  cache_read_bytes_ += read.bytes_read;
  cache_wait_seconds_ += read.read_seconds;
  flops_ += tally.flops;
  evaluated_ = (epoch + 1) % cfg_.train.eval_every == 0 || epoch + 1 == cfg_.train.epochs;
  if (evaluated_) {
    last_eval_ = evaluate(*model_, *dataset_, cfg_.train.eval_batch_size, device_, precision_);
    eval_flops_ += dataset_->size(Split::kTest) * profile_.flops_from(0);
  }
  const double epoch_seconds = seconds_since(epoch_start);
  out_->append_metrics({{"epoch", epoch + 1},
                        {"train_loss", tally.loss()},
                        {"train_accuracy", tally.accuracy()},
                        {"test_loss", evaluated_ ? json(last_eval_.loss) : json(nullptr)},
                        {"test_accuracy", evaluated_ ? json(last_eval_.accuracy) : json(nullptr)},
                        {"cut", controller_->cut()},
                        {"train_seconds_total", train_seconds_},
                        {"lr", learning_rate(cfg_.train, static_cast<double>(epoch + 1))},
                        {"epoch_seconds", epoch_seconds},
                        {"train_seconds", train_seconds},
                        {"images_per_second", tally.seen / train_seconds},
                        {"cache_read_bytes", read.bytes_read},
                        {"cache_wait_seconds", read.read_seconds},
                        {"forward_flops", tally.flops},
                        {"forward_flops_total", flops_},
                        {"forward_flops_full_total", flops_full_}});
  print_epoch(epoch, tally, train_seconds, epoch_seconds);
}

void Trainer::evaluation_point(std::int64_t epoch, std::int64_t step_in_epoch, EpochTally& tally) {
  const std::size_t cut = controller_->cut();
  PolicyInput in;
  in.eval_point = ++eval_point_;
  in.step = step_;
  in.epoch = static_cast<double>(epoch) + static_cast<double>(step_in_epoch) / steps_per_epoch_;
  in.cut = cut;
  in.train_loss = loss_since_point_.item<double>() / static_cast<double>(steps_since_point_);
  in.lr = last_lr_;
  in.lr_sum = lr_since_point_;
  in.steps_since_point = steps_since_point_;
  in.stages = tracker_->measure(cut);
  loss_since_point_.zero_();
  steps_since_point_ = 0;
  lr_since_point_ = 0;
  const std::vector<StageStats> measured = in.stages;
  if (cfg_.policy_shadow) {
    // The policy sees the run as if its drops had happened.
    in.cut = shadow_cut_;
    for (std::size_t i = 0; i < shadow_cut_; ++i) {
      in.stages[i].dropped = true;
      in.stages[i].relative_change = in.stages[i].grad_norm = in.stages[i].mean_grad_norm = 0;
    }
  }
  Decision d;
  try {
    d = policy_->decide(in);
  } catch (const std::exception& e) {
    throw Error("policy '" + cfg_.policy.plugin + "' failed at evaluation point " + std::to_string(in.eval_point) +
                ": " + e.what());
  }
  json stages = json::array();
  for (const auto& st : measured) {
    json j = {{"name", st.name},
              {"dropped", st.dropped},
              {"relative_change", st.relative_change},
              {"param_norm", st.param_norm},
              {"grad_norm", st.grad_norm}};
    if (policy_->wants_step_gradient_norms()) j["mean_grad_norm"] = st.mean_grad_norm;
    stages.push_back(std::move(j));
  }
  json line = {{"eval_point", in.eval_point},
               {"step", step_},
               {"epoch", in.epoch},
               {"cut", cut},
               {"train_loss", in.train_loss},
               {"lr", in.lr},
               {"lr_sum", in.lr_sum},
               {"decision", d.cut},
               {"reason", d.reason},
               {"stages", stages}};
  std::size_t target = d.cut;
  if (cfg_.policy_shadow) {
    line["shadow"] = true;
    line["shadow_cut"] = std::max(shadow_cut_, std::min(target, model_->num_stages()));  // after this point
  }
  out_->append_stats(line);
  if (cfg_.policy_shadow) {
    target = std::min(target, model_->num_stages());
    if (target > shadow_cut_) {
      if (live_) std::printf("\r\033[K");
      spdlog::info("shadow: the policy would drop at epoch {:.2f} (step {}): stages {}..{} ({} -> {}){}", in.epoch,
                   step_, model_->stage_name(shadow_cut_), model_->stage_name(target - 1), shadow_cut_, target,
                   d.reason.empty() ? "" : "; " + d.reason);
      shadow_drops_.push_back({{"epoch", in.epoch},
                               {"step", step_},
                               {"from_cut", shadow_cut_},
                               {"to_cut", target},
                               {"reason", d.reason}});
      shadow_cut_ = target;
    }
    return;
  }
  // The drop itself is one call: DropController::apply checks the decision,
  // stops the feed, freezes, builds the cache, trims the optimizer and hands
  // the feed the cache for the rest of the epoch.
  const DropOutcome outcome = controller_->apply(d, optimizer_.get(), feed_.get());
  if (!outcome.note.empty()) spdlog::warn("policy '{}': {}", cfg_.policy.plugin, outcome.note);
  if (outcome.drop) report_drop(*outcome.drop, in, d, tally);
}

void Trainer::report_drop(const DropReport& r, const PolicyInput& in, const Decision& d, EpochTally& tally) {
  const std::size_t target = r.to_cut;
  tally.flops += r.flops;
  cache_seconds_ += r.seconds;
  if (live_) std::printf("\r\033[K");
  spdlog::info(
      "drop at epoch {:.2f} (step {}): stages {}..{} frozen ({} -> {}), cache {} ({}{}) built in {:.1f}s, {}{}",
      in.epoch, step_, model_->stage_name(r.from_cut), model_->stage_name(target - 1), r.from_cut, target,
      format_bytes(static_cast<double>(r.cache_bytes)), r.cache_description,
      views_ > 1 ? ", " + std::to_string(views_) + " views per sample" : "", r.seconds,
      format_flops(static_cast<double>(r.flops)), d.reason.empty() ? "" : "; " + d.reason);
  json entry = {{"epoch", in.epoch},
                {"step", step_},
                {"from_cut", r.from_cut},
                {"to_cut", target},
                {"cache_bytes", r.cache_bytes},
                {"cache", r.cache_description},
                {"cache_build_seconds", r.seconds},
                {"cache_build_flops", r.flops},
                {"reason", d.reason}};
  if (feature_augment_) {
    entry["stride"] = r.shift.stride;
    entry["feature_shift"] = r.shift.max_shift;
    spdlog::info("after the drop: cached {} view(s) per sample; maps at stride {} shifted by up to {} map pixels",
                 views_, r.shift.stride, r.shift.max_shift);
  }
  drops_.push_back(std::move(entry));
}

void Trainer::print_live(std::int64_t epoch, std::int64_t s, const EpochTally& t, Clock::time_point start) {
  std::printf("\r\033[Kepoch %lld/%lld  step %lld/%lld  loss %.4f  cut %zu/%zu  %.0f img/s",
              static_cast<long long>(epoch + 1), static_cast<long long>(cfg_.train.epochs), static_cast<long long>(s),
              static_cast<long long>(steps_per_epoch_), t.loss(), controller_->cut(), model_->num_stages(),
              t.seen / seconds_since(start));
  std::fflush(stdout);
}

void Trainer::print_epoch(std::int64_t epoch, const EpochTally& t, double train_seconds, double epoch_seconds) {
  if (!opts_.progress) return;
  const double mean_epoch = train_seconds_ / static_cast<double>(epoch + 1);
  if (live_) std::printf("\r\033[K");
  char test[16] = "     -";
  if (evaluated_) std::snprintf(test, sizeof test, "%5.2f%%", 100.0 * last_eval_.accuracy);
  std::printf("epoch %3lld/%lld  loss %.4f  train %5.2f%%  test %s  cut %zu/%zu  %6.0f img/s  %5.1fs  ETA %s\n",
              static_cast<long long>(epoch + 1), static_cast<long long>(cfg_.train.epochs), t.loss(),
              100.0 * t.accuracy(), test, controller_->cut(), model_->num_stages(), t.seen / train_seconds,
              epoch_seconds, format_duration(mean_epoch * static_cast<double>(cfg_.train.epochs - epoch - 1)).c_str());
  std::fflush(stdout);
}

json Trainer::summary(double wall_seconds) const {
  const double reduction = flops_full_ > 0 ? 1.0 - static_cast<double>(flops_) / static_cast<double>(flops_full_) : 0.0;
  return {{"model", model_label(cfg_.model)},
          {"model_plugin", cfg_.model.plugin},
          {"dataset", cfg_.dataset.plugin},
          {"policy", cfg_.policy.plugin},
          {"cache", cfg_.cache.plugin},
          {"cache_views", views_},
          {"augmentation_after_drop", augmentation_after_drop_},
          {"experiment", cfg_.name},
          {"seed", cfg_.seed},
          {"config_hash", cfg_.hash()},
          {"threads", cfg_.threads},
          {"device", device_text(device_)},
          {"precision", precision_text(precision_)},
          {"cache_dtype", cfg_.cache_dtype},
          {"skipped_steps", scaler_->skipped_steps()},
          {"epochs", cfg_.train.epochs},
          {"train_samples", n_train_},
          {"test_samples", dataset_->size(Split::kTest)},
          {"num_stages", model_->num_stages()},
          {"dropped_stages", controller_->cut()},
          {"drops", drops_},
          {"policy_shadow", cfg_.policy_shadow},
          {"shadow_drops", shadow_drops_},
          {"cache_augment", feature_augment_ ? "feature" : "views"},
          {"test_accuracy", last_eval_.accuracy},
          {"test_loss", last_eval_.loss},
          {"train_seconds", train_seconds_},
          {"cache_build_seconds", cache_seconds_},
          {"cache_read_bytes", cache_read_bytes_},
          {"cache_wait_seconds", cache_wait_seconds_},
          {"wall_seconds", wall_seconds},
          {"forward_flops", flops_},
          {"forward_flops_full", flops_full_},
          {"flops_reduction", reduction},
          {"eval_forward_flops", eval_flops_},
          {"stage_forward_flops", profile_.stage_flops},
          {"head_forward_flops", profile_.head_flops}};
}

}  // namespace

json run_training(const RunConfig& config, const PluginHost& host, const RunOptions& options) {
  Trainer trainer(config, host, options);
  return trainer.run();
}

}  // namespace ld::core
