// run_training: setup (run_setup.cpp: plugins and parts from the config),
// the loop (here: epochs, steps, evaluation points, drops) and reporting
// (run_report.cpp: console and run folder).
#include "learndrop/core/trainer.h"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>
#include <tbb/global_control.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include "learndrop/core/checkpoint.h"
#include "learndrop/core/distributed.h"
#include "learndrop/core/files.h"
#include "learndrop/core/interrupt.h"
#include "learndrop/core/seeds.h"
#include "run_report.h"
#include "run_setup.h"

namespace ld::core {

namespace {

using json = nlohmann::json;

// Test loss and accuracy of the full model (every stage, eval mode) on
// `device` in `precision`.
// In a data-parallel run each rank evaluates its contiguous 1/world of the
// test set, and the sums are all-reduced.
EvalResult evaluate(StagedModel& model, const Dataset& dataset, std::int64_t batch_size, at::Device device,
                    Precision precision, ProcessGroup* group) {
  model.eval();
  at::NoGradGuard no_grad;
  AutocastGuard autocast(device, precision);
  const std::int64_t n = dataset.size(Split::kTest);
  const std::int64_t rank = group ? group->rank() : 0, world = group ? group->world() : 1;
  const std::int64_t first = n * rank / world, last = n * (rank + 1) / world;
  // Summed on the device; read once at the end.
  at::Tensor loss = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device));
  at::Tensor correct = at::zeros({}, at::TensorOptions().dtype(at::kLong).device(device));
  for (std::int64_t begin = first; begin < last; begin += batch_size) {
    throw_if_interrupted();
    std::int64_t end = std::min(last, begin + batch_size);
    std::vector<std::int64_t> idx(static_cast<std::size_t>(end - begin));
    std::iota(idx.begin(), idx.end(), begin);
    Batch b = dataset.get_batch(Split::kTest, idx, 0);
    const at::Tensor labels = b.labels.to(device);
    at::Tensor images = b.images.dim() == 4 ? b.images.contiguous(at::MemoryFormat::ChannelsLast) : b.images;
    at::Tensor logits = model.forward(images.to(device), 0);
    loss += torch::nn::functional::cross_entropy(
                logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                .to(at::kDouble);
    correct += logits.argmax(1).eq(labels).sum();
  }
  if (group) group->allreduce_sum({loss, correct});
  return {n ? loss.item<double>() / n : 0.0, n ? static_cast<double>(correct.item<std::int64_t>()) / n : 0.0};
}

// LEARNDROP_TEST_SIGTERM_AT_STEP=N: the run sends itself SIGTERM before
// training step N (fault injection for the resume tests; docs/testing.md).
std::int64_t test_signal_step() {
  const char* v = std::getenv("LEARNDROP_TEST_SIGTERM_AT_STEP");
  return v && *v ? std::strtoll(v, nullptr, 10) : -1;
}

// LEARNDROP_TEST_KILL_RANK_AT_STEP=R:N: rank R of a data-parallel run sends
// itself SIGKILL before step N (the failure test; docs/testing.md).
std::pair<int, std::int64_t> test_kill_step() {
  const char* v = std::getenv("LEARNDROP_TEST_KILL_RANK_AT_STEP");
  if (!v || !*v) return {-1, -1};
  char* end = nullptr;
  const long rank = std::strtol(v, &end, 10);
  return {static_cast<int>(rank), *end == ':' ? std::strtoll(end + 1, nullptr, 10) : -1};
}

// The random generators a run draws from (dropout): LibTorch's CPU generator,
// and on CUDA the device's; named as a checkpoint stores their states.
std::vector<std::pair<std::string, at::Generator>> generators(at::Device device) {
  std::vector<std::pair<std::string, at::Generator>> out = {{"rng/cpu", at::detail::getDefaultCPUGenerator()}};
  if (device.is_cuda()) out.emplace_back("rng/cuda", at::globalContext().defaultGenerator(device));
  return out;
}

// A rank's part of an epoch: its contiguous 1/world of every global batch
// (batch s covers order[s*B, (s+1)*B) of the shared permutation), in step
// order, so that its feed's batch s (of B/world rows) is its part of batch s.
std::vector<std::int64_t> shard_order(const std::vector<std::int64_t>& order, std::int64_t batch, std::int64_t steps,
                                      int rank, int world) {
  std::vector<std::int64_t> out;
  const auto n = static_cast<std::int64_t>(order.size());
  for (std::int64_t s = 0; s < steps; ++s) {
    const std::int64_t begin = s * batch, rows = std::min(batch, n - begin);
    out.insert(out.end(), order.begin() + begin + rows * rank / world,
               order.begin() + begin + rows * (rank + 1) / world);
  }
  return out;
}

std::vector<double> to_doubles(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU).to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

/// The loop of one run: epochs of steps, evaluation points where the policy
/// decides, and drops through DropController::apply. With
/// train.checkpoint_every > 0 it writes checkpoints at epoch ends and, on
/// SIGINT/SIGTERM, at the next step; a checkpoint holds everything the loop
/// goes on from, so that a resumed run computes exactly what it would have.
class Trainer {
 public:
  Trainer(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts, const Checkpoint* resume)
      : cfg_(cfg),
        tbb_threads_(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(cfg.threads)),
        p_(prepare(cfg, host, opts, resume)),
        report_(cfg, p_, opts),
        loss_since_point_(at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(p_.device))),
        group_(opts.group),
        checkpoints_(cfg.train.checkpoint_every > 0 && group_ == nullptr),
        signal_at_step_(test_signal_step()),
        kill_at_step_(test_kill_step()),
        resume_(resume) {
    if (group_) reducer_ = std::make_unique<GradientReducer>(*group_, p_.model->parameters());
  }

  json run() {
    const auto start = run_start_ = Clock::now();
    report_.started();
    std::int64_t first_epoch = 0;
    if (resume_) first_epoch = restore(*resume_);
    for (std::int64_t epoch = first_epoch; epoch < cfg_.train.epochs; ++epoch) train_epoch(epoch);
    sync_buffers();
    return report_.finish(totals_, wall_before_ + seconds_since(start));
  }

 private:
  static RunParts prepare(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts,
                          const Checkpoint* resume) {
    at::set_num_threads(cfg.threads);
    torch::manual_seed(cfg.seed);
    if (!resume) return set_up_run(cfg, host, opts);
    const json& out = resume->meta.at("output");
    const RunOutput::Resume sizes{out.at("metrics_bytes").get<std::int64_t>(),
                                  out.at("stats_bytes").get<std::int64_t>()};
    return set_up_run(cfg, host, opts, &sizes);
  }
  void train_epoch(std::int64_t epoch);
  /// A data-parallel run: rank 0's buffers (batch-norm statistics, which
  /// each rank updates from its own rows) copied to every rank, as DDP does,
  /// so that evaluation, a drop's cache and the saved model are the same model
  /// on every rank. Frozen stages' buffers are equal already and stay bit-exact.
  void sync_buffers();
  /// A data-parallel run's first drop: each rank's cache shard is the
  /// samples of its part of this epoch's batches (and of the left-out last
  /// rows, dealt in turn), disjoint and covering; the rest of the epoch goes on
  /// in shard positions, and later epochs permute each rank's own shard.
  void shard_cache(std::int64_t epoch);
  /// The rows of global batch `step` over all ranks (the weight of a rank's loss).
  std::int64_t global_rows(std::int64_t step) const;
  void evaluation_point(std::int64_t epoch, std::int64_t step_in_epoch, EpochTally& tally);
  CacheStats epoch_reads() const;
  std::string save_checkpoint(std::int64_t epoch, std::int64_t step_in_epoch, const EpochTally* tally,
                              const CacheStats& reads);
  std::int64_t restore(const Checkpoint& c);

  const RunConfig& cfg_;
  tbb::global_control tbb_threads_;
  RunParts p_;
  RunReporter report_;
  RunTotals totals_;
  ProcessGroup* group_;                    // null unless data-parallel
  std::unique_ptr<GradientReducer> reducer_;
  std::vector<std::int64_t> shard_sizes_;  // every rank's cache shard, once sharded
  bool shard_epoch_ = false;               // order_ permutes this rank's shard

  // Run state.
  std::vector<std::int64_t> order_;
  std::uint64_t epoch_seed_ = 0;
  std::int64_t step_ = 0, eval_point_ = 0;
  at::Tensor loss_since_point_;  // summed on the device
  std::int64_t steps_since_point_ = 0;
  double lr_since_point_ = 0, last_lr_ = 0;
  std::size_t shadow_cut_ = 0;  // policy.shadow: the cut the policy believes in
  // This epoch's cache reads: the current cache's since the epoch began
  // (or since it was built), plus those of a run resumed within the epoch.
  std::uint64_t cache_at_start_ = 0;
  CacheStats stats_at_start_, read_carry_;

  // Checkpoints and resume (not in data-parallel runs yet).
  const bool checkpoints_;
  const std::int64_t signal_at_step_;
  const std::pair<int, std::int64_t> kill_at_step_;
  const Checkpoint* resume_;
  std::int64_t first_step_ = 0;               // where the first (resumed) epoch begins
  const Checkpoint* resume_tally_ = nullptr;  // the tally that epoch goes on from
  double wall_before_ = 0;                    // wall seconds of the processes before a resume
  Clock::time_point run_start_ = Clock::now();
};

void Trainer::sync_buffers() {
  if (!group_) return;
  at::NoGradGuard no_grad;
  group_->broadcast_tensors(p_.model->buffers());
}

std::int64_t Trainer::global_rows(std::int64_t step) const {
  const std::int64_t batch = cfg_.train.batch_size;
  if (!shard_epoch_) return std::min(batch, p_.n_train - step * batch);
  const std::int64_t local = batch / group_->world();
  std::int64_t rows = 0;
  for (std::int64_t m : shard_sizes_) rows += std::clamp<std::int64_t>(m - step * local, 0, local);
  return rows;
}

void Trainer::shard_cache(std::int64_t epoch) {
  p_.feed->stop();  // it reads order_, which becomes shard positions below
  const int world = group_->world(), rank = group_->rank();
  const std::int64_t batch = cfg_.train.batch_size;
  const std::vector<std::int64_t> all = epoch_order(p_.n_train, cfg_.seed, epoch);
  const std::int64_t covered = std::min(p_.n_train, p_.steps_per_epoch * batch);
  std::vector<std::int64_t> mine;
  shard_sizes_.assign(static_cast<std::size_t>(world), 0);
  for (int q = 0; q < world; ++q) {
    std::vector<std::int64_t> part = shard_order(all, batch, p_.steps_per_epoch, q, world);
    for (std::int64_t j = covered + q; j < p_.n_train; j += world) part.push_back(all[static_cast<std::size_t>(j)]);
    shard_sizes_[static_cast<std::size_t>(q)] = static_cast<std::int64_t>(part.size());
    if (q == rank) mine = std::move(part);
  }
  // This epoch's order is the start of the shard: positions 0, 1, ...
  std::iota(order_.begin(), order_.end(), std::int64_t{0});
  const json record = {{"rank", rank}, {"world_size", world}, {"epoch", epoch + 1}, {"samples", mine}};
  atomic_write(p_.out->dir() / "cache_shard.json", record.dump() + "\n");
  spdlog::debug("rank {}: cache shard of {} samples", rank, mine.size());
  p_.controller->set_shard(std::move(mine));
}

CacheStats Trainer::epoch_reads() const {
  CacheStats r = read_carry_;
  if (const FeatureCache* cache = p_.controller->cache()) {
    CacheStats now = cache->stats();
    if (p_.controller->generation() == cache_at_start_) {
      now.bytes_read -= stats_at_start_.bytes_read;
      now.read_seconds -= stats_at_start_.read_seconds;
    }
    r.bytes_read += now.bytes_read;
    r.read_seconds += now.read_seconds;
  }
  return r;
}

void Trainer::train_epoch(std::int64_t epoch) {
  const auto epoch_start = Clock::now();
  epoch_seed_ = mix_seed(cfg_.seed, 1000003ULL * static_cast<std::uint64_t>(epoch + 1));
  shard_epoch_ = !shard_sizes_.empty();
  if (shard_epoch_) {
    const int r = group_->rank();
    order_ = epoch_order(shard_sizes_[static_cast<std::size_t>(r)], mix_seed(cfg_.seed, 0x7368617264ULL + r), epoch);
  } else {
    order_ = epoch_order(p_.n_train, cfg_.seed, epoch);
    if (group_) {
      order_ = shard_order(order_, cfg_.train.batch_size, p_.steps_per_epoch, group_->rank(), group_->world());
    }
  }
  const std::int64_t flops_full_before = totals_.flops_full;
  p_.model->train();
  p_.controller->keep_dropped_in_eval();
  std::int64_t s = std::exchange(first_step_, 0);
  p_.feed->start(order_, s, p_.steps_per_epoch, epoch_seed_);
  EpochTally tally(p_.device);
  if (const Checkpoint* c = std::exchange(resume_tally_, nullptr)) {
    tally.loss_sum.copy_(c->tensor("tally/loss_sum"));
    tally.correct_sum.copy_(c->tensor("tally/correct_sum"));
    tally.seen = c->meta.at("tally").at("seen").get<std::int64_t>();
    tally.flops = c->meta.at("tally").at("flops").get<std::int64_t>();
  }
  cache_at_start_ = p_.controller->generation();
  stats_at_start_ = p_.controller->cache() ? p_.controller->cache()->stats() : CacheStats{};
  at::Tensor x, y;
  while (true) {
    if (step_ == signal_at_step_) std::raise(SIGTERM);
    if (group_ && step_ == kill_at_step_.second && group_->rank() == kill_at_step_.first) std::raise(SIGKILL);
    if (checkpoints_ && pending_signal() != 0) {
      // Stop at this step with a checkpoint; the cache stays for the resume.
      p_.feed->stop();
      const std::string where = save_checkpoint(epoch, s, &tally, epoch_reads());
      p_.controller->retain_cache();
      throw Interrupted(pending_signal(),
                        "checkpoint " + where + " written; go on with: ldrop run --resume " + p_.out->dir().string());
    }
    throw_if_interrupted();
    if (!p_.feed->next(x, y)) break;
    last_lr_ = learning_rate(cfg_.train, static_cast<double>(epoch) + static_cast<double>(s) / p_.steps_per_epoch);
    p_.optimizer->set_lr(last_lr_);
    const std::size_t cut = p_.controller->cut();
    at::Tensor logits, loss;
    {
      AutocastGuard autocast(p_.device, p_.precision);
      logits = p_.model->forward(x, cut);
      loss = torch::nn::functional::cross_entropy(logits, y);
    }
    p_.optimizer->zero_grad();
    const std::int64_t b = y.size(0);
    // Data-parallel: this rank's mean loss weighted by its share of the global
    // batch, gradients summed over the ranks: the gradient of the global batch's mean.
    double share = 1;
    if (group_) share = static_cast<double>(b) / static_cast<double>(global_rows(s));
    if (reducer_) reducer_->prepare(p_.optimizer->parameters());
    p_.scaler->scale_loss(group_ ? loss * share : loss).backward();
    if (reducer_) {
      reducer_->finish();  // the buckets' all-reduces ran during the backward pass
      if (totals_.allreduce_bytes_first == 0) totals_.allreduce_bytes_first = reducer_->bytes_per_step();
      totals_.allreduce_bytes_last = reducer_->bytes_per_step();
    }
    // fp16 only: the parameter list is not gathered at every fp32/bf16 step.
    const bool finite = !p_.scaler->enabled() || p_.scaler->unscale(p_.optimizer->parameters());
    if (p_.policy->wants_step_gradient_norms()) p_.tracker->add_step_gradients(cut);
    if (finite) p_.optimizer->step();  // fp16: a step with inf/NaN gradients is skipped
    p_.scaler->update(finite);
    lr_since_point_ += last_lr_;
    const at::Tensor loss_value = loss.detach().to(at::kDouble);
    tally.loss_sum += loss_value * static_cast<double>(b);
    tally.correct_sum += logits.argmax(1).eq(y).sum();
    tally.seen += b;
    tally.flops += b * p_.profile.flops_from(cut);
    totals_.flops_full += b * p_.profile.flops_from(0);
    loss_since_point_ += group_ ? loss_value * share : loss_value;
    ++steps_since_point_;
    ++step_;
    ++s;
    const std::int64_t period = p_.policy->period_steps();
    if (period > 0 ? step_ % period == 0 : s == p_.steps_per_epoch) evaluation_point(epoch, s, tally);
    report_.live(epoch, s, tally, epoch_start);
  }
  if (group_) {
    // The epoch's metrics over every rank's rows.
    at::Tensor counts = at::tensor({tally.seen, tally.flops, totals_.flops_full - flops_full_before}, at::kLong);
    group_->allreduce_sum({tally.loss_sum, tally.correct_sum, counts});
    tally.seen = counts[0].item<std::int64_t>();
    tally.flops = counts[1].item<std::int64_t>();
    totals_.flops_full = flops_full_before + counts[2].item<std::int64_t>();
  }
  const double train_seconds = seconds_since(epoch_start);
  totals_.train_seconds += train_seconds;
  // Cache reads of this epoch (a cache built during the epoch counts from zero).
  const CacheStats read = epoch_reads();
  read_carry_ = CacheStats{};
  totals_.cache_read_bytes += read.bytes_read;
  totals_.cache_wait_seconds += read.read_seconds;
  totals_.flops += tally.flops;
  totals_.evaluated = (epoch + 1) % cfg_.train.eval_every == 0 || epoch + 1 == cfg_.train.epochs;
  if (totals_.evaluated) {
    DeferInterrupts defer(checkpoints_);  // a signal stops the run at the next step, with a checkpoint
    sync_buffers();
    totals_.last_eval = evaluate(*p_.model, *p_.dataset, cfg_.train.eval_batch_size, p_.device, p_.precision, group_);
    totals_.eval_flops += p_.dataset->size(Split::kTest) * p_.profile.flops_from(0);
  }
  const double epoch_seconds = seconds_since(epoch_start);
  report_.epoch_done(epoch, tally, totals_, read, train_seconds, epoch_seconds);
  if (checkpoints_ && (epoch + 1) % cfg_.train.checkpoint_every == 0 && epoch + 1 < cfg_.train.epochs) {
    save_checkpoint(epoch + 1, 0, nullptr, CacheStats{});
  }
}

void Trainer::evaluation_point(std::int64_t epoch, std::int64_t step_in_epoch, EpochTally& tally) {
  const std::size_t cut = p_.controller->cut();
  PolicyInput in;
  in.eval_point = ++eval_point_;
  in.step = step_;
  in.epoch = static_cast<double>(epoch) + static_cast<double>(step_in_epoch) / p_.steps_per_epoch;
  in.cut = cut;
  if (group_) {
    group_->allreduce_sum({loss_since_point_});
    sync_buffers();  // a drop's cache is built from the same frozen stages on every rank
  }
  in.train_loss = loss_since_point_.item<double>() / static_cast<double>(steps_since_point_);
  in.lr = last_lr_;
  in.lr_sum = lr_since_point_;
  in.steps_since_point = steps_since_point_;
  in.stages = p_.tracker->measure(cut);
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
  // Data-parallel: the policy runs on rank 0 (every rank has the same
  // parameters and statistics) and its cut is broadcast, so all ranks drop
  // at the same step.
  if (!group_ || group_->rank() == 0) {
    try {
      d = p_.policy->decide(in);
    } catch (const std::exception& e) {
      throw Error("policy '" + cfg_.policy.plugin + "' failed at evaluation point " + std::to_string(in.eval_point) +
                  ": " + e.what());
    }
  }
  if (group_) {
    d.cut = static_cast<std::size_t>(group_->broadcast({static_cast<std::int64_t>(d.cut)})[0]);
    if (group_->rank() != 0) d.reason = "rank 0's decision";
  }
  json stages = json::array();
  for (const auto& st : measured) {
    json j = {{"name", st.name},
              {"dropped", st.dropped},
              {"relative_change", st.relative_change},
              {"param_norm", st.param_norm},
              {"grad_norm", st.grad_norm}};
    if (p_.policy->wants_step_gradient_norms()) j["mean_grad_norm"] = st.mean_grad_norm;
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
    line["shadow_cut"] = std::max(shadow_cut_, std::min(target, p_.model->num_stages()));  // after this point
  }
  report_.evaluation_point(line);
  if (cfg_.policy_shadow) {
    target = std::min(target, p_.model->num_stages());
    if (target > shadow_cut_) {
      report_.shadow_drop(in.epoch, step_, shadow_cut_, target, d.reason);
      shadow_cut_ = target;
    }
    return;
  }
  if (group_ && p_.controller->cut() == 0 && std::min(d.cut, p_.model->num_stages()) > 0) shard_cache(epoch);
  // The drop itself is one call: DropController::apply checks the decision,
  // stops the feed, freezes, builds the cache, trims the optimizer and hands
  // the feed the cache for the rest of the epoch.
  DropOutcome outcome;
  {
    DeferInterrupts defer(checkpoints_);  // the cache is built; the next step checkpoints
    outcome = p_.controller->apply(d, p_.optimizer.get(), p_.feed.get());
  }
  if (!outcome.note.empty()) spdlog::warn("policy '{}': {}", cfg_.policy.plugin, outcome.note);
  if (outcome.drop) {
    tally.flops += outcome.drop->flops;
    totals_.cache_seconds += outcome.drop->seconds;
    report_.drop(*outcome.drop, in.epoch, step_, d.reason);
  }
}

std::string Trainer::save_checkpoint(std::int64_t epoch, std::int64_t step_in_epoch, const EpochTally* tally,
                                     const CacheStats& reads) {
  const auto start = Clock::now();
  Checkpoint c;
  json& m = c.meta;
  m["config_hash"] = cfg_.hash();
  m["epoch"] = epoch;
  m["step_in_epoch"] = step_in_epoch;
  m["steps_per_epoch"] = p_.steps_per_epoch;
  m["step"] = step_;
  m["eval_point"] = eval_point_;
  m["steps_since_point"] = steps_since_point_;
  m["shadow_cut"] = shadow_cut_;
  m["cut"] = p_.controller->cut();
  m["drops"] = p_.controller->drops();
  m["totals"] = {{"flops", totals_.flops},
                 {"flops_full", totals_.flops_full},
                 {"eval_flops", totals_.eval_flops},
                 {"cache_read_bytes", totals_.cache_read_bytes},
                 {"evaluated", totals_.evaluated}};
  m["tally"] = {{"seen", tally ? tally->seen : 0}, {"flops", tally ? tally->flops : 0}};
  m["epoch_read_bytes"] = reads.bytes_read;
  const RunOutput::Resume sizes = p_.out->sizes();
  m["output"] = {{"metrics_bytes", sizes.metrics_bytes}, {"stats_bytes", sizes.stats_bytes}};
  m["report"] = report_.state();
  const GradScaler::State scaler = p_.scaler->state();
  m["scaler"] = {{"good_steps", scaler.good_steps}, {"skipped", scaler.skipped}};
  m["device"] = device_text(p_.device);
  const std::size_t cut = p_.controller->cut();
  m["cache"] = {{"plugin", cfg_.cache.plugin},
                {"key", p_.controller->current_cache_key()},
                {"dtype", cfg_.cache_dtype},
                {"views", p_.views},
                {"cut", cut}};
  // The policy's own state: a plugin's business, kept as named lists of doubles.
  json policy = {{"plugin", cfg_.policy.plugin}, {"has_state", p_.policy->has_state()}, {"names", json::array()}};
  if (p_.policy->has_state()) {
    PolicyState state;
    try {
      state = p_.policy->save_state();
    } catch (const std::exception& e) {
      throw Error("policy '" + cfg_.policy.plugin + "' failed to save its state: " + e.what());
    }
    for (const auto& [name, values] : state.values) {
      policy["names"].push_back(name);
      c.tensors["policy/" + name] = at::tensor(values, at::kDouble);
    }
  }
  m["policy"] = policy;

  for (const auto& kv : p_.model->named_parameters()) c.tensors["model/" + kv.key()] = kv.value();
  for (const auto& kv : p_.model->named_buffers()) c.tensors["model/" + kv.key()] = kv.value();
  p_.tracker->save(c);
  c.optimizer = p_.optimizer->save();
  if (cut > 0) c.tensors["labels"] = p_.controller->train_labels();
  c.tensors["loss_since_point"] = loss_since_point_;
  c.tensors["tally/loss_sum"] = tally ? tally->loss_sum : at::zeros({}, at::kDouble);
  c.tensors["tally/correct_sum"] = tally ? tally->correct_sum : at::zeros({}, at::kLong);
  const double wall = wall_before_ + seconds_since(run_start_);
  c.tensors["doubles"] = at::tensor(
      std::vector<double>{lr_since_point_, last_lr_, totals_.train_seconds, totals_.cache_seconds,
                          totals_.cache_wait_seconds, totals_.last_eval.loss, totals_.last_eval.accuracy, scaler.scale,
                          reads.read_seconds, wall, totals_.checkpoint_seconds + seconds_since(start)},
      at::kDouble);
  for (auto& [name, gen] : generators(p_.device)) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    c.tensors[name] = gen.get_state();
  }
  write_checkpoint(p_.out->dir(), c);
  totals_.checkpoint_seconds += seconds_since(start);
  const std::string where = (p_.out->dir() / "checkpoint").string() + " (epoch " + std::to_string(epoch + 1) +
                            ", step " + std::to_string(step_in_epoch) + " of " + std::to_string(p_.steps_per_epoch) +
                            ")";
  spdlog::debug("checkpoint {} written in {:.2f}s", where, seconds_since(start));
  return where;
}

std::int64_t Trainer::restore(const Checkpoint& c) {
  const json& m = c.meta;
  const std::string from = c.from.string();
  if (m.at("steps_per_epoch").get<std::int64_t>() != p_.steps_per_epoch) {
    throw Error("checkpoint " + from + " has " + std::to_string(m.at("steps_per_epoch").get<std::int64_t>()) +
                " steps per epoch, this run " + std::to_string(p_.steps_per_epoch) + " (has the data changed?)");
  }
  if (m.at("device").get<std::string>() != device_text(p_.device)) {
    spdlog::warn("checkpoint {} was written on {}, resuming on {}: the metrics will not be bit-identical", from,
                 m.at("device").get<std::string>(), device_text(p_.device));
  }
  {
    at::NoGradGuard no_grad;
    // Copied into the model's own tensors, which keep their (channels-last) layout.
    for (auto& kv : p_.model->named_parameters()) kv.value().copy_(c.tensor("model/" + kv.key()));
    for (auto& kv : p_.model->named_buffers()) kv.value().copy_(c.tensor("model/" + kv.key()));
  }
  std::vector<std::size_t> drops = m.at("drops").get<std::vector<std::size_t>>();
  std::string cache_how;
  if (!drops.empty()) {
    DeferInterrupts defer(checkpoints_);
    cache_how = p_.controller->restore(drops, c.tensor("labels"), p_.optimizer.get());
    p_.feed->replace_source(p_.controller->source(cfg_.loader_threads));
    if (p_.controller->current_cache_key() != m.at("cache").at("key").get<std::string>()) {
      throw Error("checkpoint " + from + ": the restored cache key differs from the checkpoint's");
    }
  }
  p_.optimizer->load(c.optimizer);
  p_.tracker->load(c);
  PolicyState state;
  for (const auto& name : m.at("policy").at("names")) {
    state.values[name.get<std::string>()] = to_doubles(c.tensor("policy/" + name.get<std::string>()));
  }
  try {
    p_.policy->load_state(state);
  } catch (const std::exception& e) {
    throw Error("policy '" + cfg_.policy.plugin + "' cannot restore its state from " + from + ": " + e.what());
  }
  const std::vector<double> d = to_doubles(c.tensor("doubles"));
  if (d.size() != 11) throw Error("checkpoint " + from + ": 'doubles' has " + std::to_string(d.size()) + " values");
  lr_since_point_ = d[0];
  last_lr_ = d[1];
  totals_.train_seconds = d[2];
  totals_.cache_seconds = d[3];
  totals_.cache_wait_seconds = d[4];
  totals_.last_eval = {d[5], d[6]};
  p_.scaler->restore(
      {d[7], m.at("scaler").at("good_steps").get<std::int64_t>(), m.at("scaler").at("skipped").get<std::int64_t>()});
  read_carry_ = {m.at("epoch_read_bytes").get<std::int64_t>(), d[8]};
  wall_before_ = d[9];
  totals_.checkpoint_seconds = d[10];
  const json& t = m.at("totals");
  totals_.flops = t.at("flops").get<std::int64_t>();
  totals_.flops_full = t.at("flops_full").get<std::int64_t>();
  totals_.eval_flops = t.at("eval_flops").get<std::int64_t>();
  totals_.cache_read_bytes = t.at("cache_read_bytes").get<std::int64_t>();
  totals_.evaluated = t.at("evaluated").get<bool>();
  step_ = m.at("step").get<std::int64_t>();
  eval_point_ = m.at("eval_point").get<std::int64_t>();
  steps_since_point_ = m.at("steps_since_point").get<std::int64_t>();
  shadow_cut_ = m.at("shadow_cut").get<std::size_t>();
  loss_since_point_.copy_(c.tensor("loss_since_point"));
  for (auto& [name, gen] : generators(p_.device)) {
    if (gen.device().is_cuda() && !c.tensors.count(name)) continue;  // written on the CPU, resumed on a GPU
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(c.tensor(name));
  }
  report_.restore(m.at("report"));
  const std::int64_t epoch = m.at("epoch").get<std::int64_t>();
  first_step_ = m.at("step_in_epoch").get<std::int64_t>();
  resume_tally_ = first_step_ > 0 ? &c : nullptr;
  report_.resumed({{"checkpoint", from},
                   {"epoch", epoch + 1},
                   {"step_in_epoch", first_step_},
                   {"step", step_},
                   {"cut", p_.controller->cut()},
                   {"cache", cache_how}});
  spdlog::info("resumed from {} at epoch {}, step {} of {} (cut {}){}", from, epoch + 1, first_step_,
               p_.steps_per_epoch, p_.controller->cut(), cache_how.empty() ? "" : "; " + cache_how);
  return epoch;
}

}  // namespace

namespace {

// One rank of a data-parallel run (WORLD_SIZE > 1): connects the group, gives
// rank r > 0 its own folder and a share of the cores, and records a failure
// in the run folder.
json run_rank(const RunConfig& config, const PluginHost& host, const RunOptions& options, const RankEnv& env) {
  if (options.resume) {
    throw Error(
        "--resume: distributed runs do not write checkpoints yet, so there is nothing to resume "
        "(docs/distributed.md)");
  }
  RunConfig cfg = config;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (cfg.threads_setting == "auto") cfg.threads = std::max(1, cores / env.local_world);
  if (cfg.loader_threads_setting == "auto") cfg.loader_threads = cfg.threads;
  std::unique_ptr<ProcessGroup> group =
      ProcessGroup::connect(env, cfg.dist_backend, resolve_device(cfg.device), cfg.dist_timeout);
  RunOptions opts = options;
  opts.group = group.get();
  const std::filesystem::path run_dir = options.out_dir;
  if (env.rank > 0) {
    opts.out_dir = (run_dir / "ranks" / std::to_string(env.rank)).string();
    opts.progress = false;
  }
  if (env.rank == 0) {
    spdlog::info("rank 0 of {} ({}; {} threads per rank; checkpoints are not written in distributed runs yet)",
                 env.world, group->backend(), cfg.threads);
  }
  try {
    Trainer trainer(cfg, host, opts, nullptr);
    return trainer.run();
  } catch (const std::exception& e) {
    std::error_code ec;
    std::filesystem::create_directories(opts.out_dir, ec);
    const json failed = {{"rank", env.rank}, {"world_size", env.world}, {"error", std::string(e.what())}};
    try {
      atomic_write(std::filesystem::path(opts.out_dir) / "failed.json", failed.dump(2) + "\n");
    } catch (const std::exception& w) {
      spdlog::warn("rank {}: {}", env.rank, w.what());
    }
    throw;
  }
}

}  // namespace

json run_training(const RunConfig& config, const PluginHost& host, const RunOptions& options) {
  const RankEnv env = rank_env_from_environment();
  if (env.distributed() && options.group == nullptr) return run_rank(config, host, options, env);
  if (!options.resume) {
    Trainer trainer(config, host, options, nullptr);
    return trainer.run();
  }
  const std::filesystem::path dir = options.out_dir;
  if (std::filesystem::exists(dir / "summary.json")) {
    throw Error("cannot resume " + dir.string() + ": the run has finished (summary.json); nothing to resume");
  }
  const Checkpoint checkpoint = read_checkpoint(dir);
  const json& m = checkpoint.meta;
  if (m.at("config_hash").get<std::string>() != config.hash()) {
    throw Error("cannot resume " + dir.string() + ": its checkpoint is of config " +
                m.at("config_hash").get<std::string>() + ", this config hashes to " + config.hash());
  }
  const json& policy = m.at("policy");
  if (!policy.at("has_state").get<bool>()) {
    throw Error("cannot resume " + dir.string() + ": policy '" + policy.at("plugin").get<std::string>() +
                "' does not save its state (DropPolicy::has_state() is false), so after a resume it would decide "
                "from nothing; start the run again, or implement has_state/save_state/load_state in the plugin "
                "(docs/plugins.md)");
  }
  Trainer trainer(config, host, options, &checkpoint);
  return trainer.run();
}

}  // namespace ld::core
