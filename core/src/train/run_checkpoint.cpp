// Checkpoints of the loop (docs/checkpoints.md): what a checkpoint holds
// besides the RunState, and how a run resumes from one.
#include <mutex>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>

#include "learndrop/core/interrupt.h"
#include "trainer_loop.h"

namespace ld::core {

using json = nlohmann::json;

namespace {

// The random generators a run draws from (dropout): LibTorch's CPU generator,
// and on CUDA the device's; named as a checkpoint stores their states.
std::vector<std::pair<std::string, at::Generator>> generators(at::Device device) {
  std::vector<std::pair<std::string, at::Generator>> out = {{"rng/cpu", at::detail::getDefaultCPUGenerator()}};
  if (device.is_cuda()) out.emplace_back("rng/cuda", at::globalContext().defaultGenerator(device));
  return out;
}

json history_json(const std::vector<DropEvent>& history) {
  json out = json::array();
  for (const DropEvent& e : history) {
    if (e.kind == DropEvent::Kind::kDrop) {
      out.push_back({{"kind", "drop"}, {"cut", e.cut}, {"mode", to_string(e.mode)}});
    } else {
      out.push_back({{"kind", "arrival"}, {"samples", e.samples}});
    }
  }
  return out;
}

std::vector<DropEvent> history_from(const json& j, const std::string& from) {
  std::vector<DropEvent> out;
  for (const auto& e : j) {
    DropEvent d;
    const std::string kind = e.at("kind").get<std::string>();
    if (kind == "drop") {
      d.kind = DropEvent::Kind::kDrop;
      d.cut = e.at("cut").get<std::size_t>();
      d.mode = e.at("mode").get<std::string>() == "freeze" ? DropMode::kFreeze : DropMode::kCache;
    } else if (kind == "arrival") {
      d.kind = DropEvent::Kind::kArrival;
      d.samples = e.at("samples").get<std::int64_t>();
    } else {
      throw Error("checkpoint " + from + ": unknown event '" + kind + "' in its history");
    }
    out.push_back(d);
  }
  return out;
}

std::vector<double> to_doubles(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU).to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

void check_resumable(const Checkpoint& c, const RunConfig& config, const std::filesystem::path& dir) {
  const json& m = c.meta;
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
}

std::string Trainer::save_checkpoint(bool mid_epoch) {
  const auto start = Clock::now();
  Checkpoint c;
  json& m = c.meta;
  m["config_hash"] = cfg_.hash();
  m["steps_per_epoch"] = p_.steps_per_epoch;
  m["drops"] = p_.controller->drops();
  m["history"] = history_json(p_.controller->history());
  const RunOutput::Resume sizes = p_.out->sizes();
  m["output"] = {{"metrics_bytes", sizes.metrics_bytes}, {"stats_bytes", sizes.stats_bytes}};
  m["report"] = report_.state();
  const GradScaler::State scaler = p_.scaler->state();
  m["scaler"] = {{"good_steps", scaler.good_steps}, {"skipped", scaler.skipped}};
  c.tensors["scaler/scale"] = at::scalar_tensor(scaler.scale, at::kDouble);
  m["device"] = device_text(p_.device);
  const std::size_t cut = p_.controller->cut();
  m["cache"] = {{"plugin", cfg_.cache.plugin},
                {"key", p_.controller->current_cache_key()},
                {"dtype", cfg_.cache_dtype},
                {"views", p_.cache.views},
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
  if (p_.probe) p_.probe->save(c);
  c.optimizer = p_.optimizer->save();
  if (p_.controller->cache() != nullptr) c.tensors["labels"] = p_.controller->train_labels();
  for (auto& [name, gen] : generators(p_.device)) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    c.tensors[name] = gen.get_state();
  }
  // The loop's state: within the epoch, or at the start of the next one.
  RunState saved = state_;
  if (mid_epoch) {
    saved.read_carry = epoch_reads();
  } else {
    ++saved.epoch;
    saved.step_in_epoch = 0;
    saved.tally = EpochTally(p_.device);
    saved.read_carry = CacheStats{};
  }
  saved.wall_before = state_.wall_before + seconds_since(run_start_);
  saved.totals.checkpoint_seconds += seconds_since(start);
  saved.save(c);
  write_checkpoint(p_.out->dir(), c);
  state_.totals.checkpoint_seconds += seconds_since(start);
  const std::string where = (p_.out->dir() / "checkpoint").string() + " (epoch " + std::to_string(saved.epoch + 1) +
                            ", step " + std::to_string(saved.step_in_epoch) + " of " +
                            std::to_string(p_.steps_per_epoch) + ")";
  spdlog::debug("checkpoint {} written in {:.2f}s", where, seconds_since(start));
  return where;
}

void Trainer::restore(const Checkpoint& c) {
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
  const std::vector<DropEvent> history = history_from(m.at("history"), from);
  std::string cache_how;
  if (!history.empty()) {
    DeferInterrupts defer(checkpoints_);
    const at::Tensor labels = c.tensors.count("labels") ? c.tensor("labels") : at::Tensor();
    cache_how = p_.controller->restore(history, labels, p_.optimizer.get());
    p_.feed->resume(p_.controller->source());
    if (p_.controller->current_cache_key() != m.at("cache").at("key").get<std::string>()) {
      throw Error("checkpoint " + from + ": the restored cache key differs from the checkpoint's");
    }
  }
  p_.optimizer->load(c.optimizer);
  p_.tracker->load(c);
  if (p_.probe) p_.probe->load(c);
  PolicyState policy;
  for (const auto& name : m.at("policy").at("names")) {
    policy.values[name.get<std::string>()] = to_doubles(c.tensor("policy/" + name.get<std::string>()));
  }
  try {
    p_.policy->load_state(policy);
  } catch (const std::exception& e) {
    throw Error("policy '" + cfg_.policy.plugin + "' cannot restore its state from " + from + ": " + e.what());
  }
  p_.scaler->restore({c.tensor("scaler/scale").item<double>(), m.at("scaler").at("good_steps").get<std::int64_t>(),
                      m.at("scaler").at("skipped").get<std::int64_t>()});
  state_.load(c);
  resumed_mid_epoch_ = state_.step_in_epoch > 0;
  for (auto& [name, gen] : generators(p_.device)) {
    if (gen.device().is_cuda() && !c.tensors.count(name)) continue;  // written on the CPU, resumed on a GPU
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(c.tensor(name));
  }
  report_.restore(m.at("report"));
  report_.resumed({{"checkpoint", from},
                   {"epoch", state_.epoch + 1},
                   {"step_in_epoch", state_.step_in_epoch},
                   {"step", state_.step},
                   {"cut", p_.controller->cut()},
                   {"cache", cache_how}});
  spdlog::info("resumed from {} at epoch {}, step {} of {} (cut {}){}", from, state_.epoch + 1, state_.step_in_epoch,
               p_.steps_per_epoch, p_.controller->cut(), cache_how.empty() ? "" : "; " + cache_how);
}

}  // namespace ld::core
