#include "learndrop/core/trainer.h"

#include <chrono>
#include <cstdio>
#include <future>
#include <numeric>
#include <random>

#include <unistd.h>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <tbb/global_control.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include "learndrop/core/drop_controller.h"
#include "learndrop/core/flops.h"
#include "learndrop/core/optimizer.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/run_output.h"
#include "learndrop/core/stage_stats.h"
#include "learndrop/core/text.h"
#include "learndrop/registrar.h"

namespace ld::core {

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  std::uint64_t x = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

// The epoch's sample order: a Fisher-Yates shuffle from the run seed and epoch.
std::vector<std::int64_t> epoch_order(std::int64_t n, std::uint64_t seed, std::int64_t epoch) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(mix(seed, static_cast<std::uint64_t>(epoch) + 1));
  for (std::size_t i = order.size(); i > 1; --i) {
    std::size_t j = static_cast<std::size_t>(rng() % i);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

// Converts 4-D parameters and buffers to channels-last, the fast layout of
// oneDNN convolutions on CPU.
void to_channels_last(torch::nn::Module& model) {
  at::NoGradGuard no_grad;
  for (auto& p : model.parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

std::string model_label(const PluginChoice& model) {
  return model.options.has("variant") ? model.options.get_string("variant") : model.plugin;
}

// Feeds training batches of one epoch: from the dataset (the next batch is
// prepared in the background while the current one trains) at cut 0, from
// the feature cache's reader afterwards.
class Feed {
 public:
  Feed(const DropController& controller, const Dataset& dataset, std::int64_t batch_size)
      : controller_(controller), dataset_(dataset), batch_size_(batch_size) {}

  /// Starts feeding `order` from batch `first_step`; batches cover
  /// [step*B, (step+1)*B) and stop at `steps`.
  void start(const std::vector<std::int64_t>& order, std::int64_t first_step, std::int64_t steps,
             std::uint64_t epoch_seed) {
    if (pending_.valid()) pending_.wait();
    order_ = &order;
    step_ = first_step;
    steps_ = steps;
    epoch_seed_ = epoch_seed;
    reader_.reset();
    if (controller_.cut() > 0 && step_ < steps_) {
      auto begin = order.begin() + step_ * batch_size_;
      auto end = order.begin() + std::min<std::int64_t>(steps_ * batch_size_, static_cast<std::int64_t>(order.size()));
      reader_ = controller_.reader(std::vector<std::int64_t>(begin, end), batch_size_);
    } else if (step_ < steps_) {
      prefetch(step_);
    }
  }

  /// The next batch; false after the last step.
  bool next(at::Tensor& x, at::Tensor& y) {
    if (step_ >= steps_) return false;
    std::vector<std::int64_t> idx = indices(step_);
    if (reader_) {
      x = controller_.to_model_layout(reader_->next());
      y = controller_.train_labels().index_select(0, at::tensor(idx, at::kLong));
    } else {
      Batch b = pending_.get();
      if (step_ + 1 < steps_) prefetch(step_ + 1);
      x = b.images.dim() == 4 ? b.images.contiguous(at::MemoryFormat::ChannelsLast) : b.images;
      y = b.labels;
    }
    ++step_;
    return true;
  }

  ~Feed() {
    if (pending_.valid()) pending_.wait();
  }

 private:
  std::vector<std::int64_t> indices(std::int64_t step) const {
    std::int64_t begin = step * batch_size_;
    std::int64_t end = std::min<std::int64_t>(begin + batch_size_, static_cast<std::int64_t>(order_->size()));
    return std::vector<std::int64_t>(order_->begin() + begin, order_->begin() + end);
  }
  void prefetch(std::int64_t step) {
    std::uint64_t seed = mix(epoch_seed_, static_cast<std::uint64_t>(step));
    pending_ = std::async(std::launch::async, [this, idx = indices(step), seed] {
      return dataset_.get_batch(Split::kTrain, idx, seed);
    });
  }

  const DropController& controller_;
  const Dataset& dataset_;
  std::int64_t batch_size_;
  const std::vector<std::int64_t>* order_ = nullptr;
  std::int64_t step_ = 0;
  std::int64_t steps_ = 0;
  std::uint64_t epoch_seed_ = 0;
  std::unique_ptr<BatchReader> reader_;
  std::future<Batch> pending_;
};

struct EvalResult {
  double loss = 0;
  double accuracy = 0;
};

EvalResult evaluate(StagedModel& model, const Dataset& dataset, std::int64_t batch_size) {
  model.eval();
  at::NoGradGuard no_grad;
  const std::int64_t n = dataset.size(Split::kTest);
  double loss = 0;
  std::int64_t correct = 0;
  for (std::int64_t begin = 0; begin < n; begin += batch_size) {
    std::int64_t end = std::min(n, begin + batch_size);
    std::vector<std::int64_t> idx(static_cast<std::size_t>(end - begin));
    std::iota(idx.begin(), idx.end(), begin);
    Batch b = dataset.get_batch(Split::kTest, idx, 0);
    at::Tensor x = b.images.dim() == 4 ? b.images.contiguous(at::MemoryFormat::ChannelsLast) : b.images;
    at::Tensor logits = model.forward(x, 0);
    loss += torch::nn::functional::cross_entropy(
                logits, b.labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                .item<double>();
    correct += logits.argmax(1).eq(b.labels).sum().item<std::int64_t>();
  }
  return {n ? loss / n : 0.0, n ? static_cast<double>(correct) / n : 0.0};
}

at::ScalarType storage_type(const std::string& name) {
  if (name == "float16") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  return at::kFloat;
}

}  // namespace

json run_training(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts) {
  const auto run_start = Clock::now();
  at::set_num_threads(cfg.threads);
  tbb::global_control tbb_threads(tbb::global_control::max_allowed_parallelism,
                                  static_cast<std::size_t>(cfg.threads));
  torch::manual_seed(cfg.seed);

  // Plugins.
  DatasetContext dctx;
  if (const char* root = std::getenv("LEARNDROP_DATA")) dctx.data_root = root;
  dctx.seed = cfg.seed;
  auto dataset = host.create_dataset(cfg.dataset.plugin, cfg.dataset.options, dctx);
  const std::vector<std::int64_t> sample_shape = dataset->sample_shape();
  if (sample_shape.size() != 3) throw Error("dataset '" + cfg.dataset.plugin + "' reports a sample shape that is not [C, H, W]");
  ModelContext mctx{sample_shape[0], sample_shape[1], sample_shape[2], dataset->num_classes()};
  auto model = host.create_model(cfg.model.plugin, cfg.model.options, mctx);
  if (model->num_stages() == 0) throw Error("model '" + cfg.model.plugin + "' has no stages");
  to_channels_last(*model);
  const ModelProfile profile = profile_model(*model, sample_shape);

  const std::int64_t n_train = dataset->size(Split::kTrain);
  const std::int64_t batch = cfg.train.batch_size;
  // A last batch of one sample cannot train batch norm; it is left out of that epoch.
  const std::int64_t steps_per_epoch = n_train / batch + (n_train % batch >= 2 ? 1 : 0);
  if (steps_per_epoch == 0) {
    throw Error("dataset '" + cfg.dataset.plugin + "' has " + std::to_string(n_train) +
                " training samples; at least 2 are needed");
  }
  PolicyContext pctx{model->num_stages(), steps_per_epoch, cfg.train.epochs};
  auto policy = host.create_policy(cfg.policy.plugin, cfg.policy.options, pctx);
  const std::int64_t period = policy->period_steps();
  if (dataset->random_train_transform() && cfg.policy.plugin != "none") {
    throw Error("dataset '" + cfg.dataset.plugin +
                "' applies a random training transform (augmentation), and a feature cache would freeze "
                "one draw of it; cached augmented views are not built yet, so use policy.plugin=none or "
                "turn the dataset's augmentation off");
  }

  RunOutput out(opts.out_dir);
  out.write_config(cfg.effective_yaml());
  CacheContext cctx{out.dir().string(), cfg.threads};
  DropController controller(
      *model, *dataset, [&] { return host.create_cache(cfg.cache.plugin, cfg.cache.options, cctx); },
      storage_type(cfg.cache_dtype), profile.stage_flops, profile.stage_output_shapes,
      std::max<std::int64_t>(batch, 256), cfg.seed);
  StagedOptimizer optimizer(*model, cfg.train);
  StageStatsTracker tracker(*model);

  spdlog::info("run {}: {} on {} ({}), policy {}, {} threads, seed {}", out.dir().string(), model_label(cfg.model),
               cfg.dataset.plugin, dataset->describe(), cfg.policy.plugin, cfg.threads, cfg.seed);
  spdlog::info("model: {} stages + head, {} per sample forward (head {})", model->num_stages(),
               format_flops(static_cast<double>(profile.flops_from(0))), format_flops(static_cast<double>(profile.head_flops)));

  std::int64_t flops = 0, flops_full = 0, eval_flops = 0, step = 0, eval_point = 0;
  double loss_since_point = 0;
  std::int64_t steps_since_point = 0;
  double train_seconds = 0, cache_seconds = 0;
  json drops = json::array();
  EvalResult last_eval;
  const bool live = opts.progress && ::isatty(STDOUT_FILENO);
  Feed feed(controller, *dataset, batch);

  for (std::int64_t epoch = 0; epoch < cfg.train.epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    const std::uint64_t epoch_seed = mix(cfg.seed, 1000003ULL * static_cast<std::uint64_t>(epoch + 1));
    const std::vector<std::int64_t> order = epoch_order(n_train, cfg.seed, epoch);
    model->train();
    controller.keep_dropped_in_eval();
    feed.start(order, 0, steps_per_epoch, epoch_seed);
    double epoch_loss = 0;
    std::int64_t epoch_correct = 0, epoch_seen = 0, epoch_flops = 0, s = 0;
    at::Tensor x, y;
    auto last_live = Clock::now();
    while (feed.next(x, y)) {
      const double lr = learning_rate(cfg.train, static_cast<double>(epoch) + static_cast<double>(s) / steps_per_epoch);
      optimizer.set_lr(lr);
      const std::size_t cut = controller.cut();
      at::Tensor logits = model->forward(x, cut);
      at::Tensor loss = torch::nn::functional::cross_entropy(logits, y);
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      const std::int64_t b = y.size(0);
      const double loss_value = loss.item<double>();
      epoch_loss += loss_value * b;
      epoch_correct += logits.argmax(1).eq(y).sum().item<std::int64_t>();
      epoch_seen += b;
      epoch_flops += b * profile.flops_from(cut);
      flops_full += b * profile.flops_from(0);
      loss_since_point += loss_value;
      ++steps_since_point;
      ++step;
      ++s;

      const bool at_point = period > 0 ? step % period == 0 : s == steps_per_epoch;
      if (at_point) {
        PolicyInput in;
        in.eval_point = ++eval_point;
        in.step = step;
        in.epoch = static_cast<double>(epoch) + static_cast<double>(s) / steps_per_epoch;
        in.cut = cut;
        in.train_loss = loss_since_point / static_cast<double>(steps_since_point);
        in.stages = tracker.measure(cut);
        loss_since_point = 0;
        steps_since_point = 0;
        Decision d;
        try {
          d = policy->decide(in);
        } catch (const std::exception& e) {
          throw Error("policy '" + cfg.policy.plugin + "' failed at evaluation point " + std::to_string(in.eval_point) +
                      ": " + e.what());
        }
        json stage_stats = json::array();
        for (const auto& st : in.stages) {
          stage_stats.push_back({{"name", st.name}, {"dropped", st.dropped}, {"relative_change", st.relative_change},
                                 {"param_norm", st.param_norm}, {"grad_norm", st.grad_norm}});
        }
        out.append_stats({{"eval_point", in.eval_point}, {"step", step}, {"epoch", in.epoch}, {"cut", cut},
                          {"train_loss", in.train_loss}, {"decision", d.cut}, {"reason", d.reason},
                          {"stages", stage_stats}});
        std::size_t target = d.cut;
        if (target > model->num_stages()) {
          spdlog::warn("policy '{}' asked for cut {} but the model has {} stages; clamped", cfg.policy.plugin, target,
                       model->num_stages());
          target = model->num_stages();
        }
        if (target < cut) {
          spdlog::warn("policy '{}' asked for cut {} below the current cut {}; drops are monotone, keeping {}",
                       cfg.policy.plugin, target, cut, cut);
        } else if (target > cut) {
          DropReport r = controller.advance(target);
          optimizer.drop_stages_before(target);
          model->train();
          controller.keep_dropped_in_eval();
          epoch_flops += r.flops;
          cache_seconds += r.seconds;
          if (live) std::printf("\r\033[K");
          spdlog::info("drop at epoch {:.2f} (step {}): stages {}..{} frozen ({} -> {}), cache {} ({}) built in {:.1f}s, {}{}",
                       in.epoch, step, model->stage_name(r.from_cut), model->stage_name(target - 1), r.from_cut, target,
                       format_bytes(static_cast<double>(r.cache_bytes)), r.cache_description, r.seconds,
                       format_flops(static_cast<double>(r.flops)), d.reason.empty() ? "" : "; " + d.reason);
          drops.push_back({{"epoch", in.epoch}, {"step", step}, {"from_cut", r.from_cut}, {"to_cut", target},
                           {"cache_bytes", r.cache_bytes}, {"cache_build_seconds", r.seconds},
                           {"cache_build_flops", r.flops}, {"reason", d.reason}});
          feed.start(order, s, steps_per_epoch, epoch_seed);
        }
      }
      if (live && seconds_since(last_live) > 0.5) {
        last_live = Clock::now();
        double elapsed = seconds_since(epoch_start);
        std::printf("\r\033[Kepoch %lld/%lld  step %lld/%lld  loss %.4f  cut %zu/%zu  %.0f img/s", static_cast<long long>(epoch + 1),
                    static_cast<long long>(cfg.train.epochs), static_cast<long long>(s), static_cast<long long>(steps_per_epoch),
                    epoch_loss / epoch_seen, controller.cut(), model->num_stages(), epoch_seen / elapsed);
        std::fflush(stdout);
      }
    }
    const double epoch_train_seconds = seconds_since(epoch_start);
    train_seconds += epoch_train_seconds;
    flops += epoch_flops;
    last_eval = evaluate(*model, *dataset, cfg.train.eval_batch_size);
    eval_flops += dataset->size(Split::kTest) * profile.flops_from(0);
    const double epoch_seconds = seconds_since(epoch_start);
    const double mean_epoch = train_seconds / static_cast<double>(epoch + 1);
    json line = {{"epoch", epoch + 1},
                 {"train_loss", epoch_loss / epoch_seen},
                 {"train_accuracy", static_cast<double>(epoch_correct) / epoch_seen},
                 {"test_loss", last_eval.loss},
                 {"test_accuracy", last_eval.accuracy},
                 {"cut", controller.cut()},
                 {"lr", learning_rate(cfg.train, static_cast<double>(epoch + 1))},
                 {"epoch_seconds", epoch_seconds},
                 {"train_seconds", epoch_train_seconds},
                 {"images_per_second", epoch_seen / epoch_train_seconds},
                 {"forward_flops", epoch_flops},
                 {"forward_flops_total", flops},
                 {"forward_flops_full_total", flops_full}};
    out.append_metrics(line);
    if (opts.progress) {
      if (live) std::printf("\r\033[K");
      std::printf("epoch %3lld/%lld  loss %.4f  train %5.2f%%  test %5.2f%%  cut %zu/%zu  %6.0f img/s  %5.1fs  ETA %s\n",
                  static_cast<long long>(epoch + 1), static_cast<long long>(cfg.train.epochs), epoch_loss / epoch_seen,
                  100.0 * epoch_correct / epoch_seen, 100.0 * last_eval.accuracy, controller.cut(), model->num_stages(),
                  epoch_seen / epoch_train_seconds, epoch_seconds,
                  format_duration(mean_epoch * static_cast<double>(cfg.train.epochs - epoch - 1)).c_str());
      std::fflush(stdout);
    }
  }

  out.save_model(*model);
  const double reduction = flops_full > 0 ? 1.0 - static_cast<double>(flops) / static_cast<double>(flops_full) : 0.0;
  json summary = {{"model", model_label(cfg.model)},
                  {"model_plugin", cfg.model.plugin},
                  {"dataset", cfg.dataset.plugin},
                  {"policy", cfg.policy.plugin},
                  {"cache", cfg.cache.plugin},
                  {"experiment", cfg.name},
                  {"seed", cfg.seed},
                  {"config_hash", cfg.hash()},
                  {"threads", cfg.threads},
                  {"epochs", cfg.train.epochs},
                  {"train_samples", n_train},
                  {"test_samples", dataset->size(Split::kTest)},
                  {"num_stages", model->num_stages()},
                  {"dropped_stages", controller.cut()},
                  {"drops", drops},
                  {"test_accuracy", last_eval.accuracy},
                  {"test_loss", last_eval.loss},
                  {"train_seconds", train_seconds},
                  {"cache_build_seconds", cache_seconds},
                  {"wall_seconds", seconds_since(run_start)},
                  {"forward_flops", flops},
                  {"forward_flops_full", flops_full},
                  {"flops_reduction", reduction},
                  {"eval_forward_flops", eval_flops},
                  {"stage_forward_flops", profile.stage_flops},
                  {"head_forward_flops", profile.head_flops}};
  out.write_summary(summary);
  spdlog::info("done: test accuracy {:.2f}%, {} stages dropped of {}, forward {} vs {} full ({:.1f}% less), train {:.1f}s",
               100.0 * last_eval.accuracy, controller.cut(), model->num_stages(), format_flops(static_cast<double>(flops)),
               format_flops(static_cast<double>(flops_full)), 100.0 * reduction, train_seconds);
  return summary;
}

}  // namespace ld::core
