#include "loop/run_state.h"

#include <cmath>
#include <cstdio>
#include <string>
#include <utility>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "learndrop/core/checkpoint.h"
#include "learndrop/core/drop_controller.h"
#include "learndrop/error.h"

namespace ld::core {

using json = nlohmann::json;

EpochTally::EpochTally(at::Device device)
    : loss_sum(at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device))),
      correct_sum(at::zeros({}, at::TensorOptions().dtype(at::kLong).device(device))) {}

double EpochTally::loss() const { return seen ? loss_sum.item<double>() / static_cast<double>(seen) : 0.0; }

double EpochTally::accuracy() const {
  return seen ? static_cast<double>(correct_sum.item<std::int64_t>()) / static_cast<double>(seen) : 0.0;
}

void EpochTally::reset() {
  loss_sum.zero_();
  correct_sum.zero_();
  seen = 0;
  flops = 0;
}

double RunState::full_seconds_per_image() const {
  if (full_epochs >= 2 && full_images > 0) return full_seconds / full_images;
  if (full_epochs == 1 && first_full_images > 0) return first_full_seconds / first_full_images;
  return 0;
}

void RunState::count_step(const at::Tensor& loss, const at::Tensor& point_loss, const at::Tensor& correct,
                          std::int64_t rows, std::int64_t flops, std::int64_t flops_full) {
  lr_since_point += last_lr;
  tally.loss_sum += loss * static_cast<double>(rows);
  tally.correct_sum += correct;
  tally.seen += rows;
  tally.flops += rows * flops;
  totals.flops_full += rows * flops_full;
  loss_since_point += point_loss;
  ++steps_since_point;
  ++step;
  ++step_in_epoch;
}

PolicyInput RunState::point_input(std::int64_t steps_in_epoch) {
  PolicyInput in;
  in.eval_point = ++eval_point;
  in.step = step;
  in.epoch = static_cast<double>(epoch) + static_cast<double>(step_in_epoch) / static_cast<double>(steps_in_epoch);
  in.last_drop_epoch = last_drop_epoch;
  in.held_cut = held_cut;
  in.held_reason = held_reason;
  in.lr = last_lr;
  in.lr_sum = lr_since_point;
  in.steps_since_point = steps_since_point;
  return in;
}

void RunState::end_point() {
  loss_since_point.zero_();
  steps_since_point = 0;
  lr_since_point = 0;
}

RunState RunState::to_save(bool mid_epoch, const CacheStats& reads, double wall_seconds) const {
  RunState saved = *this;
  if (mid_epoch) {
    saved.read_carry = reads;
  } else {
    ++saved.epoch;
    saved.step_in_epoch = 0;
    saved.tally = EpochTally(tally.loss_sum.device());
    saved.read_carry = CacheStats{};
  }
  saved.wall_before = wall_before + wall_seconds;
  return saved;
}

void RunState::count_full_epoch(double images, double seconds) {
  if (full_epochs++ == 0) {
    first_full_images = images;
    first_full_seconds = seconds;
  } else {
    full_images += images;
    full_seconds += seconds;
  }
}

void RunState::check_finite(double value, const std::string& what, double train_lr, bool checkpoint_kept) const {
  if (std::isfinite(value)) return;
  const std::string kept =
      checkpoint_kept ? "; the checkpoint of the last epoch boundary before it is kept (ldrop run --resume)" : "";
  char numbers[96];
  std::snprintf(numbers, sizeof numbers, " is %s (learning rate %g at this step, train.lr %g: lower it?)",
                std::isnan(value) ? "NaN" : value > 0 ? "inf" : "-inf", last_lr, train_lr);
  throw Error("training diverged at epoch " + std::to_string(epoch + 1) + ", step " + std::to_string(step) + ": " +
              what + numbers + kept);
}

void EpochReads::start(const DropController& controller) {
  generation_ = controller.generation();
  at_start_ = controller.cache() ? controller.cache()->stats() : CacheStats{};
}

CacheStats EpochReads::so_far(const DropController& controller, const CacheStats& carry) const {
  CacheStats r = carry;
  if (const FeatureCache* cache = controller.cache()) {
    CacheStats now = cache->stats();
    if (controller.generation() == generation_) {
      now.bytes_read -= at_start_.bytes_read;
      now.read_seconds -= at_start_.read_seconds;
    }
    r.bytes_read += now.bytes_read;
    r.read_seconds += now.read_seconds;
  }
  return r;
}

RunState::RunState(at::Device device)
    : loss_since_point(at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device))), tally(device) {}

namespace {

// The floating-point fields, each under its name: a checkpoint keeps them as
// tensors, which store a double's bits exactly.
template <typename State, typename F>
void for_each_double(State& s, F&& f) {
  f("lr_since_point", s.lr_since_point);
  f("last_lr", s.last_lr);
  f("read_carry_seconds", s.read_carry.read_seconds);
  f("wall_before", s.wall_before);
  f("train_seconds", s.totals.train_seconds);
  f("cache_seconds", s.totals.cache_seconds);
  f("cache_wait_seconds", s.totals.cache_wait_seconds);
  f("checkpoint_seconds", s.totals.checkpoint_seconds);
  f("last_eval_loss", s.totals.last_eval.loss);
  f("last_eval_accuracy", s.totals.last_eval.accuracy);
  f("first_full_images", s.first_full_images);
  f("first_full_seconds", s.first_full_seconds);
  f("full_images", s.full_images);
  f("full_seconds", s.full_seconds);
  f("last_drop_epoch", s.last_drop_epoch);
}

// The integer fields, each under its name in the checkpoint's JSON.
template <typename State, typename F>
void for_each_int(State& s, F&& f) {
  f("epoch", s.epoch);
  f("step_in_epoch", s.step_in_epoch);
  f("step", s.step);
  f("eval_point", s.eval_point);
  f("steps_since_point", s.steps_since_point);
  f("tally_seen", s.tally.seen);
  f("tally_flops", s.tally.flops);
  f("read_carry_bytes", s.read_carry.bytes_read);
  f("flops", s.totals.flops);
  f("flops_full", s.totals.flops_full);
  f("eval_flops", s.totals.eval_flops);
  f("cache_read_bytes", s.totals.cache_read_bytes);
  f("images", s.totals.images);
  f("arrivals", s.arrivals);
  f("full_epochs", s.full_epochs);
}

}  // namespace

void RunState::save(Checkpoint& c) const {
  json& m = c.meta["run_state"];
  m = json::object();
  for_each_int(*this, [&](const char* name, const std::int64_t& v) { m[name] = v; });
  m["shadow_cut"] = shadow_cut;
  m["held_cut"] = held_cut;
  m["held_reason"] = held_reason;
  m["evaluated"] = totals.evaluated;
  for_each_double(*this, [&](const char* name, const double& v) {
    c.tensors[std::string("state/") + name] = at::scalar_tensor(v, at::kDouble);
  });
  c.tensors["state/loss_since_point"] = loss_since_point;
  c.tensors["state/tally_loss_sum"] = tally.loss_sum;
  c.tensors["state/tally_correct_sum"] = tally.correct_sum;
}

void RunState::load(const Checkpoint& c) {
  const std::string from = c.from.string();
  if (!c.meta.contains("run_state") || !c.meta["run_state"].is_object()) {
    throw Error("checkpoint " + from + ": state.json has no run_state (written by an older LearnDrop?)");
  }
  const json& m = c.meta["run_state"];
  auto field = [&](const char* name) -> const json& {
    if (!m.contains(name)) throw Error("checkpoint " + from + ": run_state has no '" + name + "'");
    return m[name];
  };
  try {
    for_each_int(*this, [&](const char* name, std::int64_t& v) { v = field(name).get<std::int64_t>(); });
    shadow_cut = field("shadow_cut").get<std::size_t>();
    held_cut = field("held_cut").get<std::size_t>();
    held_reason = field("held_reason").get<std::string>();
    totals.evaluated = field("evaluated").get<bool>();
  } catch (const json::exception& e) {
    throw Error("checkpoint " + from + ": run_state: " + e.what());
  }
  for_each_double(*this, [&](const char* name, double& v) {
    v = c.tensor(std::string("state/") + name).to(at::kCPU).item<double>();
  });
  loss_since_point.copy_(c.tensor("state/loss_since_point"));
  tally.loss_sum.copy_(c.tensor("state/tally_loss_sum"));
  tally.correct_sum.copy_(c.tensor("state/tally_correct_sum"));
}

}  // namespace ld::core
