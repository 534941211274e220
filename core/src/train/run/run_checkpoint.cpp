// Checkpoints of the loop (docs/checkpoints.md): what a checkpoint holds
// besides the RunState, and how a run resumes from one.
#include "run/run_checkpoint.h"

#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include <sys/stat.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>

#include "learndrop/cache.h"
#include "learndrop/core/interrupt.h"

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

std::string write_run_checkpoint(const RunConfig& cfg, const RunParts& p, const RunReporter& report, RunState saved,
                                 Clock::time_point start) {
  Checkpoint c;
  json& m = c.meta;
  m["config_hash"] = cfg.hash();
  m["steps_per_epoch"] = p.steps_per_epoch;
  m["drops"] = p.controller->drops();
  m["history"] = history_json(p.controller->history());
  const RunOutput::Resume sizes = p.out->sizes();
  m["output"] = {{"metrics_bytes", sizes.metrics_bytes}, {"stats_bytes", sizes.stats_bytes}};
  m["report"] = report.state();
  const GradScaler::State scaler = p.scaler->state();
  m["scaler"] = {{"good_steps", scaler.good_steps}, {"skipped", scaler.skipped}};
  c.tensors["scaler/scale"] = at::scalar_tensor(scaler.scale, at::kDouble);
  m["device"] = device_text(p.device);
  const std::size_t cut = p.controller->frozen_cut();
  m["cache"] = {{"plugin", cfg.cache.plugin},
                {"key", p.controller->current_cache_key()},
                {"dtype", cfg.cache_dtype},
                {"views", p.cache.views},
                {"cut", cut}};
  // The policy's own state: a plugin's business, kept as named lists of doubles.
  json policy = {{"plugin", cfg.policy.plugin}, {"has_state", p.policy->has_state()}, {"names", json::array()}};
  if (p.policy->has_state()) {
    PolicyState state;
    try {
      state = p.policy->save_state();
    } catch (const std::exception& e) {
      throw Error("policy '" + cfg.policy.plugin + "' failed to save its state: " + e.what());
    }
    for (const auto& [name, values] : state.values) {
      policy["names"].push_back(name);
      c.tensors["policy/" + name] = at::tensor(values, at::kDouble);
    }
  }
  m["policy"] = policy;

  for (const auto& kv : p.model->named_parameters()) c.tensors["model/" + kv.key()] = kv.value();
  for (const auto& kv : p.model->named_buffers()) c.tensors["model/" + kv.key()] = kv.value();
  p.tracker->save(c);
  if (p.probe) p.probe->save(c);
  c.optimizer = p.optimizer->save();
  if (p.controller->cache() != nullptr) c.tensors["labels"] = p.controller->train_labels();
  for (auto& [name, gen] : generators(p.device)) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    c.tensors[name] = gen.get_state();
  }
  saved.totals.checkpoint_seconds += seconds_since(start);
  saved.save(c);
  write_checkpoint(p.out->dir(), c);
  const std::string where = (p.out->dir() / "checkpoint").string() + " (epoch " + std::to_string(saved.epoch + 1) +
                            ", step " + std::to_string(saved.step_in_epoch) + " of " +
                            std::to_string(p.steps_per_epoch) + ")";
  spdlog::debug("checkpoint {} written in {:.2f}s", where, seconds_since(start));
  return where;
}

void restore_run(const Checkpoint& c, const RunConfig& cfg, RunParts& p, RunState& state, RunReporter& report,
                 bool defer_interrupts, RestoreFor what) {
  const json& m = c.meta;
  const std::string from = c.from.string();
  if (m.at("steps_per_epoch").get<std::int64_t>() != p.steps_per_epoch) {
    throw Error("checkpoint " + from + " has " + std::to_string(m.at("steps_per_epoch").get<std::int64_t>()) +
                " steps per epoch, this run " + std::to_string(p.steps_per_epoch) + " (has the data changed?)");
  }
  if (m.at("device").get<std::string>() != device_text(p.device)) {
    spdlog::warn("checkpoint {} was written on {}, resuming on {}: the metrics will not be bit-identical", from,
                 m.at("device").get<std::string>(), device_text(p.device));
  }
  {
    at::NoGradGuard no_grad;
    // Copied into the model's own tensors, which keep their (channels-last) layout.
    for (auto& kv : p.model->named_parameters()) kv.value().copy_(c.tensor("model/" + kv.key()));
    for (auto& kv : p.model->named_buffers()) kv.value().copy_(c.tensor("model/" + kv.key()));
  }
  const std::vector<DropEvent> history = history_from(m.at("history"), from);
  std::string cache_how;
  if (!history.empty()) {
    DeferInterrupts defer(defer_interrupts);
    const at::Tensor labels = c.tensors.count("labels") ? c.tensor("labels") : at::Tensor();
    cache_how = p.controller->resume_drops(history, labels, p.optimizer.get());
    p.feed->resume(p.controller->source());
    if (p.controller->current_cache_key() != m.at("cache").at("key").get<std::string>()) {
      throw Error("checkpoint " + from + ": the restored cache key differs from the checkpoint's");
    }
  }
  p.optimizer->load(c.optimizer);
  p.tracker->load(c);
  if (p.probe) p.probe->load(c);
  if (what == RestoreFor::kResume) {
    PolicyState policy;
    for (const auto& name : m.at("policy").at("names")) {
      policy.values[name.get<std::string>()] = to_doubles(c.tensor("policy/" + name.get<std::string>()));
    }
    try {
      p.policy->load_state(policy);
    } catch (const std::exception& e) {
      throw Error("policy '" + cfg.policy.plugin + "' cannot restore its state from " + from + ": " + e.what());
    }
  }
  p.scaler->restore({c.tensor("scaler/scale").item<double>(), m.at("scaler").at("good_steps").get<std::int64_t>(),
                      m.at("scaler").at("skipped").get<std::int64_t>()});
  state.load(c);
  for (auto& [name, gen] : generators(p.device)) {
    if (gen.device().is_cuda() && !c.tensors.count(name)) continue;  // written on the CPU, resumed on a GPU
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(c.tensor(name));
  }
  report.load_state(m.at("report"));
  if (what == RestoreFor::kBranch) return;
  report.resumed({{"checkpoint", from},
                   {"epoch", state.epoch + 1},
                   {"step_in_epoch", state.step_in_epoch},
                   {"step", state.step},
                   {"cut", p.controller->frozen_cut()},
                   {"cache", cache_how}});
  spdlog::info("resumed from {} at epoch {}, step {} of {} (cut {}){}", from, state.epoch + 1, state.step_in_epoch,
               p.steps_per_epoch, p.controller->frozen_cut(), cache_how.empty() ? "" : "; " + cache_how);
}

namespace {
// The kept cache files in `folder`, by inode: a file renamed over an older
// one of the same name is a new one.
std::map<std::filesystem::path, ino_t> kept_files(const std::filesystem::path& folder) {
  std::map<std::filesystem::path, ino_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(folder, ec)) {
    if (!ld::is_kept_cache_file(e.path().filename().string())) continue;
    struct stat st {};
    if (::stat(e.path().c_str(), &st) == 0) out[e.path()] = st.st_ino;
  }
  return out;
}
}  // namespace

void keep_cache_for_resume(RunParts& p) {
  // Which files the plugin kept is seen in the folder it was given, not
  // asked of it: the cache interface stays as it is.
  const auto before = kept_files(p.cache.dir);
  p.controller->retain_cache();
  std::vector<std::filesystem::path> kept;
  for (const auto& [file, inode] : kept_files(p.cache.dir)) {
    const auto it = before.find(file);
    if (it == before.end() || it->second != inode) kept.push_back(file);
  }
  p.out->note_kept_caches(kept);
}

}  // namespace ld::core
