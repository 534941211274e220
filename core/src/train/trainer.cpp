// run_training: setup (run_setup.cpp: plugins and parts from the config),
// the loop (here: epochs, steps, evaluation points, drops) and reporting
// (run_report.cpp: console and run folder).
#include "learndrop/core/trainer.h"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include "evaluation.h"
#include "learndrop/core/distributed.h"
#include "learndrop/core/files.h"
#include "learndrop/core/interrupt.h"
#include "learndrop/core/seeds.h"
#include "trainer_loop.h"

namespace ld::core {

using json = nlohmann::json;

TestFaults TestFaults::from_environment() {
  TestFaults f;
  if (const char* v = std::getenv("LEARNDROP_TEST_SIGTERM_AT_STEP"); v && *v) f.sigterm_step = std::strtoll(v, nullptr, 10);
  if (const char* v = std::getenv("LEARNDROP_TEST_KILL_RANK_AT_STEP"); v && *v) {
    char* end = nullptr;
    f.kill_rank = static_cast<int>(std::strtol(v, &end, 10));
    f.kill_step = *end == ':' ? std::strtoll(end + 1, nullptr, 10) : -1;
  }
  return f;
}

void TestFaults::before_step(std::int64_t step, int rank) const {
  if (step == sigterm_step) std::raise(SIGTERM);
  if (rank >= 0 && step == kill_step && rank == kill_rank) std::raise(SIGKILL);
}

Trainer::Trainer(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts, const Checkpoint* resume)
    : cfg_(cfg),
      tbb_threads_(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(cfg.threads)),
      p_(prepare(cfg, host, opts, resume)),
      report_(cfg, p_, opts),
      state_(p_.device),
      dp_(opts.group, cfg, p_),
      checkpoints_(cfg.train.checkpoint_every > 0 && opts.group == nullptr),
      faults_(TestFaults::from_environment()),
      resume_(resume) {}

RunParts Trainer::prepare(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts,
                          const Checkpoint* resume) {
  at::set_num_threads(cfg.threads);
  torch::manual_seed(cfg.seed);
  if (!resume) return set_up_run(cfg, host, opts);
  const json& out = resume->meta.at("output");
  const RunOutput::Resume sizes{out.at("metrics_bytes").get<std::int64_t>(),
                                out.at("stats_bytes").get<std::int64_t>()};
  return set_up_run(cfg, host, opts, &sizes);
}

json Trainer::run() {
  run_start_ = Clock::now();
  report_.started();
  if (resume_) restore(*resume_);
  for (; state_.epoch < cfg_.train.epochs; ++state_.epoch) train_epoch();
  dp_.sync_buffers();
  return report_.finish(state_.totals, state_.wall_before + seconds_since(run_start_));
}

CacheStats Trainer::epoch_reads() const {
  CacheStats r = state_.read_carry;
  if (const FeatureCache* cache = p_.controller->cache()) {
    CacheStats now = cache->stats();
    if (p_.controller->generation() == generation_at_start_) {
      now.bytes_read -= stats_at_start_.bytes_read;
      now.read_seconds -= stats_at_start_.read_seconds;
    }
    r.bytes_read += now.bytes_read;
    r.read_seconds += now.read_seconds;
  }
  return r;
}

void Trainer::train_epoch() {
  const auto epoch_start = Clock::now();
  const std::int64_t epoch = state_.epoch;
  epoch_seed_ = mix_seed(cfg_.seed, 1000003ULL * static_cast<std::uint64_t>(epoch + 1));
  order_ = dp_.epoch_order(epoch, epoch_order(p_.n_train, cfg_.seed, epoch));
  flops_full_at_start_ = state_.totals.flops_full;
  p_.model->train();
  p_.controller->keep_dropped_in_eval();
  // A run resumed within this epoch goes on with the tally its checkpoint saved.
  if (!std::exchange(resumed_mid_epoch_, false)) {
    state_.step_in_epoch = 0;
    state_.tally.reset();
  }
  p_.feed->start(order_, state_.step_in_epoch, p_.steps_per_epoch, epoch_seed_);
  generation_at_start_ = p_.controller->generation();
  stats_at_start_ = p_.controller->cache() ? p_.controller->cache()->stats() : CacheStats{};
  at::Tensor x, y;
  while (true) {
    faults_.before_step(state_.step, dp_.rank());
    if (checkpoints_ && pending_signal() != 0) {
      // Stop at this step with a checkpoint; the cache stays for the resume.
      p_.feed->stop();
      const std::string where = save_checkpoint(true);
      p_.controller->retain_cache();
      throw Interrupted(pending_signal(),
                        "checkpoint " + where + " written; go on with: ldrop run --resume " + p_.out->dir().string());
    }
    throw_if_interrupted();
    if (!p_.feed->next(x, y)) break;
    train_step(x, y, epoch_start);
  }
  end_epoch(epoch_start);
}

void Trainer::train_step(const at::Tensor& x, const at::Tensor& y, Clock::time_point epoch_start) {
  const std::int64_t epoch = state_.epoch;
  std::int64_t& s = state_.step_in_epoch;
  state_.last_lr = learning_rate(cfg_.train, static_cast<double>(epoch) + static_cast<double>(s) / p_.steps_per_epoch);
  p_.optimizer->set_lr(state_.last_lr);
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
  const double share = dp_.loss_share(s, b);
  dp_.before_backward(p_.optimizer->parameters());
  p_.scaler->scale_loss(dp_.active() ? loss * share : loss).backward();
  dp_.after_backward(state_.totals);
  // fp16 only: the parameter list is not gathered at every fp32/bf16 step.
  const bool finite = !p_.scaler->enabled() || p_.scaler->unscale(p_.optimizer->parameters());
  if (p_.policy->wants_step_gradient_norms()) p_.tracker->add_step_gradients(cut);
  if (finite) p_.optimizer->step();  // fp16: a step with inf/NaN gradients is skipped
  p_.scaler->update(finite);
  state_.lr_since_point += state_.last_lr;
  const at::Tensor loss_value = loss.detach().to(at::kDouble);
  EpochTally& tally = state_.tally;
  tally.loss_sum += loss_value * static_cast<double>(b);
  tally.correct_sum += logits.argmax(1).eq(y).sum();
  tally.seen += b;
  tally.flops += b * p_.profile.flops_from(cut);
  state_.totals.flops_full += b * p_.profile.flops_from(0);
  state_.loss_since_point += dp_.active() ? loss_value * share : loss_value;
  ++state_.steps_since_point;
  ++state_.step;
  ++s;
  const std::int64_t period = p_.policy->period_steps();
  if (period > 0 ? state_.step % period == 0 : s == p_.steps_per_epoch) evaluation_point();
  report_.live(epoch, s, tally, epoch_start);
}

void Trainer::end_epoch(Clock::time_point epoch_start) {
  const std::int64_t epoch = state_.epoch;
  RunTotals& totals = state_.totals;
  dp_.reduce_epoch(state_.tally, totals, flops_full_at_start_);
  const double train_seconds = seconds_since(epoch_start);
  totals.train_seconds += train_seconds;
  // Cache reads of this epoch (a cache built during the epoch counts from zero).
  const CacheStats read = epoch_reads();
  state_.read_carry = CacheStats{};
  totals.cache_read_bytes += read.bytes_read;
  totals.cache_wait_seconds += read.read_seconds;
  totals.flops += state_.tally.flops;
  totals.evaluated = (epoch + 1) % cfg_.train.eval_every == 0 || epoch + 1 == cfg_.train.epochs;
  if (totals.evaluated) {
    DeferInterrupts defer(checkpoints_);  // a signal stops the run at the next step, with a checkpoint
    dp_.sync_buffers();
    totals.last_eval = evaluate(*p_.model, *p_.dataset, cfg_.train.eval_batch_size, p_.device, p_.precision, dp_);
    totals.eval_flops += p_.dataset->size(Split::kTest) * p_.profile.flops_from(0);
  }
  const double epoch_seconds = seconds_since(epoch_start);
  report_.epoch_done(epoch, state_.tally, totals, read, train_seconds, epoch_seconds);
  if (checkpoints_ && (epoch + 1) % cfg_.train.checkpoint_every == 0 && epoch + 1 < cfg_.train.epochs) {
    save_checkpoint(false);
  }
}

Decision Trainer::decide(PolicyInput& in) {
  Decision d;
  // Data-parallel: the policy runs on rank 0 (every rank has the same
  // parameters and statistics) and its cut is broadcast, so all ranks drop
  // at the same step.
  if (dp_.decides()) {
    try {
      d = p_.policy->decide(in);
    } catch (const std::exception& e) {
      throw Error("policy '" + cfg_.policy.plugin + "' failed at evaluation point " + std::to_string(in.eval_point) +
                  ": " + e.what());
    }
  }
  return dp_.broadcast(d);
}

void Trainer::evaluation_point() {
  const std::size_t cut = p_.controller->cut();
  PolicyInput in;
  in.eval_point = ++state_.eval_point;
  in.step = state_.step;
  in.epoch = static_cast<double>(state_.epoch) + static_cast<double>(state_.step_in_epoch) / p_.steps_per_epoch;
  in.cut = cut;
  dp_.reduce_point(state_.loss_since_point);
  in.train_loss = state_.loss_since_point.item<double>() / static_cast<double>(state_.steps_since_point);
  in.lr = state_.last_lr;
  in.lr_sum = state_.lr_since_point;
  in.steps_since_point = state_.steps_since_point;
  in.stages = p_.tracker->measure(cut);
  state_.loss_since_point.zero_();
  state_.steps_since_point = 0;
  state_.lr_since_point = 0;
  const std::vector<StageStats> measured = in.stages;
  if (cfg_.policy_shadow) {
    // The policy sees the run as if its drops had happened.
    in.cut = state_.shadow_cut;
    for (std::size_t i = 0; i < state_.shadow_cut; ++i) {
      in.stages[i].dropped = true;
      in.stages[i].relative_change = in.stages[i].grad_norm = in.stages[i].mean_grad_norm = 0;
    }
  }
  const Decision d = decide(in);
  if (cfg_.policy_shadow) {
    const std::size_t target = std::min(d.cut, p_.model->num_stages());
    const std::size_t after = std::max(state_.shadow_cut, target);
    report_.evaluation_point(in, measured, d, state_.step, cut, &after);
    if (target > state_.shadow_cut) {
      report_.shadow_drop(in.epoch, state_.step, state_.shadow_cut, target, d.reason);
      state_.shadow_cut = target;
    }
    return;
  }
  report_.evaluation_point(in, measured, d, state_.step, cut, nullptr);
  dp_.shard_before_first_drop(state_.epoch, d.cut, order_);
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
    state_.tally.flops += outcome.drop->flops;
    state_.totals.cache_seconds += outcome.drop->seconds;
    report_.drop(*outcome.drop, in.epoch, state_.step, d.reason);
  }
}

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
  check_resumable(checkpoint, config, dir);
  Trainer trainer(config, host, options, &checkpoint);
  return trainer.run();
}

}  // namespace ld::core
