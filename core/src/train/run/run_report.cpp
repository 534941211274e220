#include "run/run_report.h"

#include <cstdio>

#include <unistd.h>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include "parallel/distributed.h"
#include "learndrop/core/text.h"

namespace ld::core {

namespace {
// "stage conv1" or "stages conv1..conv4": the stages [from, to) of a drop.
std::string stage_range(const StagedModel& model, std::size_t from, std::size_t to) {
  if (to == from + 1) return "stage " + model.stage_name(from);
  return "stages " + model.stage_name(from) + ".." + model.stage_name(to - 1);
}
}  // namespace

using json = nlohmann::json;

RunReporter::RunReporter(const RunConfig& cfg, const RunParts& parts, const RunOptions& opts)
    : cfg_(cfg), parts_(parts), opts_(opts), live_(opts.progress && ::isatty(STDOUT_FILENO)) {}

void RunReporter::started() const {
  spdlog::info("run {}: {} on {} ({}), policy {}, device {} ({}), {} threads ({} loading, {} batches ahead), seed {}",
               parts_.out->dir().string(), parts_.model_label, cfg_.dataset.plugin, parts_.dataset->describe(),
               cfg_.policy.plugin, device_text(parts_.device), precision_text(parts_.precision), cfg_.threads,
               cfg_.loader_threads, cfg_.prefetch, cfg_.seed);
  if (allocator_ == "system" && !parts_.device.is_cuda()) {
    spdlog::warn("this process runs with the system malloc, which returns freed activations to the kernel at every "
                 "step; CPU training can be several times slower than with the jemalloc the ldrop executable links "
                 "(docs/results.md#builds-at-training-speed)");
  }
  spdlog::info("model: {} stages + head, {} per sample forward (head {})", parts_.model->num_stages(),
               format_flops(static_cast<double>(parts_.profile.flops_from(0))),
               format_flops(static_cast<double>(parts_.profile.head_flops)));
  if (!parts_.weights_loaded.empty()) spdlog::info("weights: {}", parts_.weights_loaded);
  if (parts_.schedule->stream()) {
    spdlog::info("stream: {} training samples arrive in {} parts ({} order), {} epochs after each ({} epochs in all; "
                 "learning rate: {})",
                 parts_.n_train, cfg_.stream.parts, cfg_.stream.order, cfg_.stream.epochs, cfg_.train.epochs,
                 cfg_.stream.lr == "restart" ? "the schedule restarts at each arrival" : "one schedule over the stream");
  }
}

void RunReporter::clear_live() const {
  if (live_) std::printf("\r\033[K");
}

void RunReporter::live(std::int64_t epoch, std::int64_t step, std::int64_t steps, const EpochTally& t,
                       Clock::time_point epoch_start) {
  if (!live_ || seconds_since(last_live_) <= 0.5) return;
  last_live_ = Clock::now();
  std::printf("\r\033[Kepoch %lld/%lld  step %lld/%lld  loss %.4f  cut %zu/%zu  %.0f img/s",
              static_cast<long long>(epoch + 1), static_cast<long long>(cfg_.train.epochs),
              static_cast<long long>(step), static_cast<long long>(steps), t.loss(),
              parts_.controller->frozen_cut(), parts_.model->num_stages(), t.seen / seconds_since(epoch_start));
  std::fflush(stdout);
}

void RunReporter::evaluation_point(const PolicyInput& in, const std::vector<StageStats>& measured, const Decision& d,
                                   std::int64_t step, std::size_t cut, const std::size_t* shadow_cut,
                                   const json* plan, const PointAhead& ahead, const json& guarded) {
  json stages = json::array();
  for (const auto& st : measured) {
    json j = {{"name", st.name},
              {"dropped", st.dropped},
              {"num_params", st.num_params},
              {"relative_change", st.relative_change},
              {"param_norm", st.param_norm},
              {"grad_norm", st.grad_norm},
              {"mean_grad_norm", st.mean_grad_norm}};
    if (st.feature_similarity >= 0) {
      j["feature_similarity"] = st.feature_similarity;
      j["feature_similarity_start"] = st.feature_similarity_start;
    }
    if (st.frozen_probe_loss >= 0) j["frozen_probe_loss"] = st.frozen_probe_loss;
    stages.push_back(std::move(j));
  }
  // `lr`: the learning rate of the point's last step, as in PolicyInput.
  // (metrics.jsonl's `lr_end` is the schedule's value at the end of the
  // epoch, the rate the next epoch starts from: a different quantity, so
  // a different name.)
  json line = {{"eval_point", in.eval_point},
               {"step", step},
               {"epoch", in.epoch},
               {"cut", cut},
               {"train_loss", in.train_loss},
               {"lr", in.lr},
               {"lr_sum", in.lr_sum},
               {"decision", d.cut},
               {"reason", d.reason},
               {"stages", stages}};
  if (shadow_cut != nullptr) {
    line["shadow"] = true;
    line["shadow_cut"] = *shadow_cut;
  }
  // Every other field of the policy's input (with `stages` as measured,
  // before shadow mode marks its own drops), and what the cost guard reads.
  line["steps_since_point"] = in.steps_since_point;
  line["samples"] = in.samples;
  line["arrivals"] = in.arrivals;
  line["last_drop_epoch"] = in.last_drop_epoch;
  line["held_cut"] = in.held_cut;
  line["held_reason"] = in.held_reason;
  if (in.probe_loss >= 0) line["probe_loss"] = in.probe_loss;  // the freeze probe's
  line["decision_mode"] = d.mode == DropModeHint::kAny ? "any" : d.mode == DropModeHint::kCache ? "cache" : "freeze";
  line["images_ahead"] = ahead.images_ahead;
  line["cached_samples"] = ahead.cached_samples;
  line["arriving"] = ahead.arriving;
  if (plan != nullptr) line["drop_plan"] = *plan;
  if (!guarded.is_null()) line["guarded"] = guarded;  // a drop guard held the decision back (judge.h)
  if (in.eval_point == 1) {
    // Once: what the policy was created with and what weighs its drops.
    line["format"] = kStatsFormat;
    line["context"] = {{"num_stages", parts_.model->num_stages()},
                       {"steps_per_epoch", parts_.steps_per_epoch},
                       {"epochs", cfg_.train.epochs},
                       {"lr_warmup_epochs", cfg_.train.warmup_epochs},
                       {"images_total", parts_.schedule->images_ahead(0, 0)}};
    line["policy"] = {{"plugin", cfg_.policy.plugin},
                      {"period", parts_.policy->period_steps()},
                      {"shadow", cfg_.policy_shadow},
                      {"drop_mode", cfg_.drop_mode},
                      {"cost_guard", cfg_.cost_guard},
                      {"freeze", parts_.freeze_stages}};
    line["cost_model"] = parts_.cost->to_json();
  }
  parts_.out->append_stats(line);
}

void RunReporter::drop(const DropReport& r, double epoch, std::int64_t step, const std::string& reason,
                       const json* plan) {
  const StagedModel& model = *parts_.model;
  clear_live();
  const bool cached = r.mode == DropMode::kCache;
  if (cached && !cached_before_ && parts_.cache.augmentation_frozen) {
    spdlog::warn(
        "dataset '{}' augments its training samples but cache.views is 1: after this drop, every epoch "
        "trains on the same augmented draw of each sample (set cache.views: K to cache K draws)",
        cfg_.dataset.plugin);
  }
  cached_before_ = cached_before_ || cached;
  const std::string which = stage_range(model, r.from_cut, r.to_cut);
  std::string saving;
  if (plan != nullptr && plan->contains("predicted_seconds")) {
    saving = fmt::format("; predicted saving {:.1f}s ({} of work) over the remaining schedule",
                         (*plan)["predicted_seconds"].get<double>(),
                         format_flops((*plan)["saved_work"].get<double>() - (*plan)["cost_work"].get<double>()));
  }
  if (cached) {
    spdlog::info(
        "drop at epoch {:.2f} (step {}): {} frozen ({} -> {}), cache {} ({}{}) built in {:.1f}s ({:.1f}s of it "
        "allocating), {} ({:.1f} GFLOP/s){}{}",
        epoch, step, which, r.from_cut, r.to_cut,
        format_bytes(static_cast<double>(r.cache_bytes)), r.cache_description,
        parts_.cache.views > 1 ? ", " + std::to_string(parts_.cache.views) + " views per sample" : "", r.seconds,
        r.allocate_seconds,
        format_flops(static_cast<double>(r.flops)), r.seconds > 0 ? static_cast<double>(r.flops) / r.seconds / 1e9 : 0.0,
        saving, reason.empty() ? "" : "; " + reason);
  } else {
    spdlog::info(
        "freeze at epoch {:.2f} (step {}): {} frozen ({} -> {}), not cached: {} forward on the real "
        "inputs, without backward or optimizer{}{}",
        epoch, step, which, r.from_cut, r.to_cut, r.to_cut - r.from_cut == 1 ? "it runs" : "they run", saving,
        reason.empty() ? "" : "; " + reason);
  }
  json entry = {{"epoch", epoch},
                {"step", step},
                {"from_cut", r.from_cut},
                {"to_cut", r.to_cut},
                {"mode", to_string(r.mode)},
                {"cache_bytes", r.cache_bytes},
                {"cache", r.cache_description},
                {"cache_build_seconds", r.seconds},
                {"cache_allocate_seconds", r.allocate_seconds},
                {"cache_build_flops", r.flops},
                {"reason", reason}};
  if (plan != nullptr) {
    entry["predicted_saving_work"] = (*plan)["saved_work"].get<double>() - (*plan)["cost_work"].get<double>();
    if (plan->contains("predicted_seconds")) entry["predicted_saving_seconds"] = (*plan)["predicted_seconds"];
  }
  if (parts_.cache.feature_augment && cached) {
    entry["stride"] = r.shift.stride;
    entry["feature_shift"] = r.shift.max_shift;
    spdlog::info("after the drop: cached {} view(s) per sample; maps at stride {} shifted by up to {} map pixels",
                 parts_.cache.views, r.shift.stride, r.shift.max_shift);
  }
  drops_.push_back(std::move(entry));
}

void RunReporter::arrival(std::int64_t part, std::int64_t parts, std::int64_t before, std::int64_t after,
                          const ArrivalReport& added, const EvalResult* first_look, std::int64_t epoch) {
  clear_live();
  json entry = {{"arrival", part + 1},
                {"epoch", epoch + 1},
                {"samples_added", after - before},
                {"samples", after},
                {"cache_rows_added", added.rows},
                {"cache_seconds", added.seconds},
                {"cache_flops", added.flops},
                {"cache_copied", added.copied}};
  std::string look, rows;
  if (first_look != nullptr) {
    entry["first_look_loss"] = first_look->loss;
    entry["first_look_accuracy"] = first_look->accuracy;
    look = fmt::format("; before training on them: loss {:.4f}, accuracy {:.2f}%", first_look->loss,
                       100.0 * first_look->accuracy);
  }
  if (added.rows > 0) {
    rows = fmt::format("; {} cache rows added through the frozen stages in {:.1f}s ({}){}", added.rows, added.seconds,
                       format_flops(static_cast<double>(added.flops)), added.copied ? ", copied into a larger cache" : "");
  }
  spdlog::info("part {}/{} arrived: samples {}..{} ({} in all){}{}", part + 1, parts, before, after - 1, after, look,
               rows);
  arrivals_.push_back(std::move(entry));
}

void RunReporter::arrival_done(std::int64_t part, const EvalResult& test, double train_seconds_total) {
  for (auto& a : arrivals_) {
    if (a["arrival"].get<std::int64_t>() != part + 1) continue;
    a["test_accuracy"] = test.accuracy;
    a["test_loss"] = test.loss;
    a["train_seconds_total"] = train_seconds_total;
  }
}

void RunReporter::shadow_drop(double epoch, std::int64_t step, std::size_t from, std::size_t to,
                              const std::string& reason) {
  clear_live();
  spdlog::info("shadow: the policy would drop at epoch {:.2f} (step {}): {} ({} -> {}){}", epoch, step,
               stage_range(*parts_.model, from, to), from, to,
               reason.empty() ? "" : "; " + reason);
  shadow_drops_.push_back({{"epoch", epoch}, {"step", step}, {"from_cut", from}, {"to_cut", to}, {"reason", reason}});
}

void RunReporter::epoch_done(std::int64_t epoch, std::int64_t steps, const EpochTally& t, const RunTotals& totals,
                             const CacheStats& read, double train_seconds, double epoch_seconds, std::int64_t arrivals,
                             std::int64_t samples) {
  (void)steps;
  const bool evaluated = totals.evaluated;
  json line = {{"epoch", epoch + 1},
                              {"train_loss", t.loss()},
                              {"train_accuracy", t.accuracy()},
                              {"test_loss", evaluated ? json(totals.last_eval.loss) : json(nullptr)},
                              {"test_accuracy", evaluated ? json(totals.last_eval.accuracy) : json(nullptr)},
                              {"cut", parts_.controller->frozen_cut()},
                              {"train_seconds_total", totals.train_seconds},
                              {"lr_end", learning_rate(cfg_.train, static_cast<double>(epoch + 1))},
                              {"epoch_seconds", epoch_seconds},
                              {"train_seconds", train_seconds},
                              {"images_per_second", t.seen / train_seconds},
                              {"cache_read_bytes", read.bytes_read},
                              {"cache_wait_seconds", read.read_seconds},
                              {"forward_flops", t.flops},
                              {"forward_flops_total", totals.flops},
                              {"forward_flops_full_total", totals.flops_full}};
  if (arrivals > 0) {
    line["arrival"] = arrivals;
    line["train_samples"] = samples;
    line["lr_end"] = parts_.schedule->learning_rate(static_cast<double>(epoch + 1) - 1e-9);
  }
  parts_.out->append_metrics(line);
  if (!opts_.progress) return;
  const double mean_epoch = totals.train_seconds / static_cast<double>(epoch + 1);
  clear_live();
  char test[16] = "     -";
  if (evaluated) std::snprintf(test, sizeof test, "%5.2f%%", 100.0 * totals.last_eval.accuracy);
  const std::string part =
      arrivals > 0 ? fmt::format("part {}/{}  ", arrivals, parts_.schedule->parts()) : std::string();
  std::printf("%sepoch %3lld/%lld  loss %.4f  train %5.2f%%  test %s  cut %zu/%zu  %6.0f img/s  %5.1fs  ETA %s\n",
              part.c_str(), static_cast<long long>(epoch + 1), static_cast<long long>(cfg_.train.epochs), t.loss(),
              100.0 * t.accuracy(), test, parts_.controller->frozen_cut(), parts_.model->num_stages(),
              t.seen / train_seconds, epoch_seconds,
              format_duration(mean_epoch * static_cast<double>(cfg_.train.epochs - epoch - 1)).c_str());
  std::fflush(stdout);
}

void RunReporter::head_fitted(const HeadFit& fit) {
  spdlog::info("head: fitted alone for {} epochs (lr {}) on the stages' features of {} training samples x {} view{} "
               "({:.1f} MiB, {} forward): loss {:.4f}, train accuracy {:.2f}%, {:.1f}s (counted as training time)",
               fit.epochs, fit.lr, fit.samples, fit.views, fit.views == 1 ? "" : "s", fit.feature_bytes / 1048576.0,
               format_flops(static_cast<double>(fit.feature_flops)), fit.train_loss, 100.0 * fit.train_accuracy,
               fit.seconds);
  head_fit_ = {{"epochs", fit.epochs},          {"lr", fit.lr},
               {"samples", fit.samples},        {"views", fit.views},
               {"fit_seconds", fit.seconds},    {"forward_flops", fit.feature_flops},
               {"feature_bytes", fit.feature_bytes}, {"train_loss", fit.train_loss},
               {"train_accuracy", fit.train_accuracy}};
}

json RunReporter::state() const {
  return {{"head_fit", head_fit_},
          {"drops", drops_},
          {"shadow_drops", shadow_drops_},
          {"resumes", resumes_},
          {"branched_from", branched_},
          {"arrivals", arrivals_},
          {"cached_before", cached_before_},
          {"branched_from", branched_}};
}

void RunReporter::load_state(const json& state) {
  head_fit_ = state.value("head_fit", nlohmann::json(nullptr));  // checkpoints before model.head: probe had none
  drops_ = state.at("drops");
  shadow_drops_ = state.at("shadow_drops");
  resumes_ = state.at("resumes");
  arrivals_ = state.at("arrivals");
  cached_before_ = state.at("cached_before").get<bool>();
  branched_ = state.value("branched_from", nlohmann::json(nullptr));  // checkpoints before branches had none
}

json RunReporter::finish(const RunTotals& totals, double wall_seconds, double full_seconds_per_image) {
  parts_.model->to(at::kCPU);  // model.pt loads on any machine
  parts_.out->save_model(*parts_.model);
  json s = summary(totals, wall_seconds, full_seconds_per_image);
  parts_.out->write_summary(s);
  parts_.out->remove_checkpoints();  // a finished run is not resumed
  std::string speed;
  if (!s["self_speedup"].is_null() && parts_.controller->frozen_cut() > 0) {
    speed = fmt::format(" ({:.2f}x its own full-training speed)", s["self_speedup"].get<double>());
  }
  spdlog::info(
      "done: test accuracy {:.2f}%, {} stages dropped of {}, forward {} vs {} full ({:.1f}% less), train {:.1f}s{}",
      100.0 * totals.last_eval.accuracy, parts_.controller->frozen_cut(), parts_.model->num_stages(),
      format_flops(static_cast<double>(totals.flops)), format_flops(static_cast<double>(totals.flops_full)),
      100.0 * s["flops_reduction"].get<double>(), totals.train_seconds, speed);
  return s;
}

json RunReporter::summary(const RunTotals& t, double wall_seconds, double full_seconds_per_image) const {
  const double reduction =
      t.flops_full > 0 ? 1.0 - static_cast<double>(t.flops) / static_cast<double>(t.flops_full) : 0.0;
  // Timed against itself: every training image at the speed of the run's own
  // full-training epochs, over the time it took (builds and row additions in).
  json self_speedup = nullptr, full_rate = nullptr, saving = nullptr;
  if (full_seconds_per_image > 0 && t.train_seconds > 0) {
    const double as_full = static_cast<double>(t.images) * full_seconds_per_image;
    self_speedup = as_full / t.train_seconds;
    full_rate = 1.0 / full_seconds_per_image;
    saving = as_full - t.train_seconds;
  }
  json arrival_accuracy = json::array();
  for (const auto& a : arrivals_) arrival_accuracy.push_back(a.value("test_accuracy", json(nullptr)));
  json stream = nullptr;
  if (parts_.schedule->stream()) {
    stream = {{"parts", cfg_.stream.parts}, {"order", cfg_.stream.order}, {"epochs", cfg_.stream.epochs},
              {"lr", cfg_.stream.lr}};
  }
  // Augmentation after a drop is the cache's only where a drop cached; a
  // freeze-only drop runs the frozen stages on the real augmented inputs.
  bool cached = false;
  for (const auto& d : drops_) cached = cached || d.value("mode", std::string()) == "cache";
  const std::string after_drop = cached           ? parts_.cache.augmentation_after_drop
                                 : drops_.empty() ? "no drop"
                                                  : "real: freeze-only drops, the frozen stages ran on the augmented "
                                                    "inputs";
  return {{"model", parts_.model_label},
          {"model_weights", cfg_.model_weights},
          {"model_head", cfg_.model_head},
          {"head_fit", head_fit_},
          {"frozen_from_start", parts_.freeze_stages},
          {"stream", stream},
          {"arrivals", arrivals_},
          {"arrival_accuracy", arrival_accuracy},
          {"images_trained", t.images},
          {"full_images_per_second", full_rate},
          {"self_speedup", self_speedup},
          {"measured_saving_seconds", saving},
          {"drop_mode", cfg_.drop_mode},
          {"cost_guard", cfg_.cost_guard},
          {"model_plugin", cfg_.model.plugin},
          {"dataset", cfg_.dataset.plugin},
          {"policy", cfg_.policy.plugin},
          {"cache", cfg_.cache.plugin},
          {"cache_views", cached ? parts_.cache.views : 0},
          {"augmentation_after_drop", after_drop},
          {"experiment", cfg_.name},
          {"seed", cfg_.seed},
          {"config_hash", cfg_.hash()},
          {"threads", cfg_.threads},
          {"device", device_text(parts_.device)},
          {"allocator", allocator_},
          {"precision", precision_text(parts_.precision)},
          {"cache_dtype", cfg_.cache_dtype},
          {"skipped_steps", parts_.scaler->skipped_steps()},
          {"epochs", cfg_.train.epochs},
          {"train_samples", parts_.n_train},
          {"test_samples", parts_.dataset->size(Split::kTest)},
          {"input_shape", parts_.dataset->sample_shape()},
          {"num_classes", parts_.dataset->num_classes()},
          {"classes", cfg_.dataset_classes},
          {"class_names", parts_.dataset->class_names()},
          {"num_stages", parts_.model->num_stages()},
          {"dropped_stages", parts_.controller->frozen_cut()},
          {"drops", drops_},
          {"policy_shadow", cfg_.policy_shadow},
          {"shadow_drops", shadow_drops_},
          {"cache_augment", !cached ? "none" : parts_.cache.feature_augment ? "feature" : "views"},
          {"test_accuracy", t.last_eval.accuracy},
          {"test_loss", t.last_eval.loss},
          {"train_seconds", t.train_seconds},
          {"cache_build_seconds", t.cache_seconds},
          {"cache_read_bytes", t.cache_read_bytes},
          {"cache_wait_seconds", t.cache_wait_seconds},
          {"checkpoint_seconds", t.checkpoint_seconds},
          {"wall_seconds", wall_seconds},
          {"forward_flops", t.flops},
          {"forward_flops_full", t.flops_full},
          {"flops_reduction", reduction},
          {"eval_forward_flops", t.eval_flops},
          {"stage_forward_flops", parts_.profile.stage_flops},
          {"head_forward_flops", parts_.profile.head_flops},
          {"resumes", resumes_},
          {"branched_from", branched_},
          {"world_size", opts_.group ? opts_.group->world() : 1},
          {"dist_backend", opts_.group ? opts_.group->backend() : "none"},
          {"allreduce_bytes_per_step", {{"first", t.allreduce_bytes_first}, {"last", t.allreduce_bytes_last}}}};
}

}  // namespace ld::core
