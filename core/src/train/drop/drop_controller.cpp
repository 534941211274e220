#include "learndrop/core/drop_controller.h"

#include "loop/optimizer.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <tuple>

#include <ATen/ATen.h>
#include <ATen/TensorIndexing.h>
#include <tbb/task_arena.h>
#include <torch/nn/module.h>

#include "learndrop/core/seeds.h"
#include "learndrop/core/interrupt.h"
#include "learndrop/core/text.h"
#include "learndrop/error.h"

namespace ld::core {

at::Tensor to_storage_layout(const at::Tensor& batch) {
  if (batch.dim() != 4) return batch.contiguous();
  return batch.permute({0, 2, 3, 1}).contiguous();  // a plain copy when already channels-last
}

at::Tensor from_storage_layout(const at::Tensor& stored, const std::vector<std::int64_t>& model_shape) {
  if (model_shape.size() != 3) return stored;
  return stored.permute({0, 3, 1, 2});  // NCHW view with channels-last strides
}

namespace {
// Test seam (tests/integration/test_resume.cpp): two SIGTERMs in the middle
// of a cache build, as from a user who pressed Ctrl-C twice.
void test_signals_in_build(std::size_t batch) {
  static const bool on = [] {
    const char* v = std::getenv("LEARNDROP_TEST_SIGTERM_TWICE_IN_BUILD");
    return v != nullptr && std::string(v) == "1";
  }();
  if (on && batch == 0) {
    std::raise(SIGTERM);
    std::raise(SIGTERM);
  }
}

std::vector<std::int64_t> storage_shape(const std::vector<std::int64_t>& model_shape) {
  if (model_shape.size() != 3) return model_shape;
  return {model_shape[1], model_shape[2], model_shape[0]};
}
}  // namespace

DropController::DropController(StagedModel& model, const Dataset& dataset, CacheMaker make_cache,
                               std::vector<std::int64_t> stage_flops,
                               std::vector<std::vector<std::int64_t>> stage_shapes, const DropSettings& settings)
    : model_(model),
      dataset_(dataset),
      make_cache_(std::move(make_cache)),
      stage_flops_(std::move(stage_flops)),
      stage_shapes_(std::move(stage_shapes)),
      settings_(settings) {
  if (settings_.views < 1) throw Error("internal: cache views must be at least 1");
  if (settings_.feature_augment && settings_.views != (settings_.shift_flip.flip ? 2 : 1)) {
    throw Error("internal: feature augmentation caches 2 views with a flip and 1 without");
  }
  if (settings_.build_batch < 1) throw Error("internal: cache build batch must be at least 1");
  draw_.views = settings_.views;
}

std::uint64_t DropController::view_seed(std::int64_t v) const {
  return mix_seed(settings_.seed, 0x76696577ULL + static_cast<std::uint64_t>(v));  // "view"
}

// The stride of the maps at `cut` and, for feature augmentation, the shift
// range and the prefix's response to an image of fill values.
FeatureShift DropController::shift_at(std::size_t cut) const {
  FeatureShift f;
  const std::vector<std::int64_t> in = dataset_.sample_shape();
  const std::vector<std::int64_t>& out = stage_shapes_.at(cut - 1);
  if (out.size() != 3 || in.size() != 3 || out[1] == 0 || out[2] == 0 || in[1] % out[1] != 0 ||
      in[2] % out[2] != 0 || in[1] / out[1] != in[2] / out[2]) {
    f.stride = 0;  // not a map with an integer stride: no shifts
    return f;
  }
  f.stride = in[1] / out[1];
  if (!settings_.feature_augment) return f;
  f.max_shift = settings_.shift_flip.max_shift / f.stride;
  if (f.max_shift == 0) return f;
  // The response to a constant image is constant away from the zero padding
  // of the convolutions: take the centre of an image large enough that its
  // neighbourhood is constant too.
  at::NoGradGuard no_grad;
  const auto& fill = settings_.shift_flip.fill;
  for (std::int64_t side = 3 * std::max(in[1], in[2]); side <= 8192; side *= 2) {
    at::Tensor x = at::tensor(std::vector<float>(fill.begin(), fill.end()))
                       .view({1, in[0], 1, 1})
                       .expand({1, in[0], side, side})
                       .contiguous(at::MemoryFormat::ChannelsLast);
    x = x.to(settings_.device);
    for (std::size_t s = 0; s < cut; ++s) x = model_.forward_stage(s, x);
    x = x.to(at::kCPU).to(at::kFloat);
    const std::int64_t cy = x.size(2) / 2, cx = x.size(3) / 2;
    if (cy < 1 || cx < 1) continue;
    at::Tensor centre = x.index({0, at::indexing::Slice(), cy, cx});
    at::Tensor around = x.index({0, at::indexing::Slice(), at::indexing::Slice(cy - 1, cy + 2),
                                 at::indexing::Slice(cx - 1, cx + 2)});
    const double spread = (around - centre.view({-1, 1, 1})).abs().max().item<double>();
    if (spread <= 1e-5 * (1.0 + centre.abs().max().item<double>())) {
      at::Tensor c = centre.to(at::kFloat).contiguous();
      f.fill.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
      return f;
    }
  }
  f.max_shift = 0;  // no constant response found: leave the maps unshifted
  return f;
}

const char* to_string(DropMode mode) { return mode == DropMode::kCache ? "cache" : "freeze"; }

std::int64_t DropController::samples() const {
  if (draw_.samples.empty() && !stream_) return dataset_.size(Split::kTrain);
  return visible_ >= 0 ? visible_ : static_cast<std::int64_t>(draw_.samples.size());
}

namespace {
// Distinct dataset indices of the training split, or an internal error naming `what`.
void check_samples(const std::vector<std::int64_t>& samples, std::int64_t n, const char* what) {
  std::vector<bool> seen(static_cast<std::size_t>(n), false);
  for (std::int64_t i : samples) {
    if (i < 0 || i >= n || seen[static_cast<std::size_t>(i)]) {
      throw Error(std::string("internal: ") + what + " sample " + std::to_string(i) + " out of range or repeated");
    }
    seen[static_cast<std::size_t>(i)] = true;
  }
}
}  // namespace

void DropController::set_shard(std::vector<std::int64_t> samples) {
  if (cache_cut_ != 0 || stream_) throw Error("internal: a cache shard is set before the first cached drop, without a stream");
  check_samples(samples, dataset_.size(Split::kTrain), "cache shard");
  draw_.samples = std::move(samples);
  visible_ = -1;
}

void DropController::set_stream(std::vector<std::int64_t> order) {
  if (frozen_ != 0 || !history_.empty() || !draw_.samples.empty()) {
    throw Error("internal: a stream is set before anything arrives or drops");
  }
  check_samples(order, dataset_.size(Split::kTrain), "stream");
  draw_.samples = std::move(order);
  visible_ = 0;
  stream_ = true;
}

std::string DropController::cache_key(std::size_t cut) const {
  Fnv1a64 h;
  auto add_tensor = [&](const at::Tensor& t) {
    // The bytes are read on the host: a model on a GPU is copied here first
    // (once per drop; reading a device pointer on the host crashed the first
    // CUDA drop on the device kit's build).
    at::Tensor c = t.to(at::kCPU).contiguous();
    h.add(c.data_ptr(), static_cast<std::size_t>(c.numel() * c.element_size()));
  };
  for (std::size_t i = 0; i < cut; ++i) {
    for (const auto& p : model_.stage_module(i)->parameters()) add_tensor(p);
    for (const auto& b : model_.stage_module(i)->buffers()) add_tensor(b);
  }
  // Rows are sample-major (row p * views + v); the count is not part of the
  // key, since arrivals add rows to the same cache.
  const std::string rest = settings_.data_key + "|views=" + std::to_string(settings_.views) +
                           (settings_.feature_augment ? "|feature" : "") + "|rows=sample-major" +
                           "|cut=" + std::to_string(cut) + "|dtype=" + c10::toString(settings_.dtype);
  h.add(rest.data(), rest.size());
  if (!draw_.samples.empty()) h.add(draw_.samples.data(), draw_.samples.size() * sizeof(std::int64_t));
  return h.hex();
}

at::Tensor DropController::cached_rows(const std::vector<std::int64_t>& rows) const {
  if (!cache_) throw Error("internal: no feature cache before the first cached drop");
  return to_model_layout(cache_->get(rows)).to(at::kCPU).to(at::kFloat);
}

void DropController::keep_dropped_in_eval() {
  for (std::size_t i = 0; i < frozen_; ++i) model_.stage_module(i)->eval();
}

at::Tensor DropController::to_model_layout(const at::Tensor& stored) const {
  return from_storage_layout(stored, stage_shapes_.at(cache_cut_ - 1));
}

std::unique_ptr<BatchSource> DropController::source() const {
  if (cache_cut_ == 0) return std::make_unique<DatasetSource>(dataset_, settings_.loader_threads, draw_.samples);
  return std::make_unique<CacheSource>(CachedFeatures{cache_, labels_, draw_, stage_shapes_.at(cache_cut_ - 1)});
}

at::Tensor DropController::forward(const at::Tensor& batch) {
  at::Tensor h = batch;
  if (frozen_ > cache_cut_) {
    at::NoGradGuard no_grad;
    for (std::size_t s = cache_cut_; s < frozen_; ++s) h = model_.forward_stage(s, h);
  }
  return model_.forward(h, frozen_);
}

std::vector<std::size_t> DropController::drops() const {
  std::vector<std::size_t> out;
  for (const auto& e : history_) {
    if (e.kind == DropEvent::Kind::kDrop) out.push_back(e.cut);
  }
  return out;
}

DropOutcome DropController::apply(const Decision& decision, StagedOptimizer* optimizer, DropMode mode) {
  DropOutcome out;
  std::size_t target = decision.cut;
  const std::size_t stages = model_.num_stages();
  if (target > stages) {
    out.note = "cut " + std::to_string(target) + " asked for, but the model has " + std::to_string(stages) +
               " stages; clamped";
    target = stages;
  }
  if (target < frozen_) {
    out.note = "cut " + std::to_string(target) + " asked for, below the current cut " + std::to_string(frozen_) +
               "; drops are monotone, keeping " + std::to_string(frozen_);
  }
  if (target <= frozen_) {
    out.cut = frozen_;
    return out;
  }
  const bool training = model_.is_training();
  out.drop = mode == DropMode::kCache ? advance(target) : freeze_only(target);
  if (training) {
    model_.train();
    keep_dropped_in_eval();
  }
  if (optimizer) optimizer->drop_stages_before(target);
  out.source = source();
  out.cut = frozen_;
  return out;
}

namespace {
double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

void DropController::freeze(std::size_t from, std::size_t to) {
  for (std::size_t i = from; i < to; ++i) {
    auto stage = model_.stage_module(i);
    stage->eval();
    for (auto& p : stage->parameters()) p.set_requires_grad(false);
  }
}

CacheLayout DropController::layout_at(std::size_t cut) const {
  CacheLayout layout;
  layout.cut = cut;
  layout.count = samples() * settings_.views;  // rows p * views + v
  layout.shape = storage_shape(stage_shapes_.at(cut - 1));
  layout.dtype = settings_.dtype;
  layout.key = cache_key(cut);  // the stages before `cut` hold the weights they will keep
  return layout;
}

void DropController::retain_cache() {
  if (cache_) cache_->retain();
}

at::Tensor DropController::compute_rows(FeatureCache& cache, std::size_t cut, std::int64_t from, std::int64_t to,
                                        std::int64_t& flops) const {
  const std::int64_t views = settings_.views;
  const std::int64_t per_sample =
      std::accumulate(stage_flops_.begin(), stage_flops_.begin() + static_cast<std::ptrdiff_t>(cut), std::int64_t{0});
  // Batches of build_batch positions of one view. Each batch is loaded in
  // this thread, then run through the stages: loading the next one on
  // another thread meanwhile made the forward pass twice as slow on 2 cores
  // (the loader's TBB workers and LibTorch's OpenMP threads took turns),
  // while loading took 2 % of a build (docs/results.md#builds-at-training-speed).
  struct Part {
    std::int64_t view, begin, end;
  };
  std::vector<Part> parts;
  for (std::int64_t v = 0; v < views; ++v) {
    for (std::int64_t b = from; b < to; b += settings_.build_batch) parts.push_back({v, b, std::min(to, b + settings_.build_batch)});
  }
  tbb::task_arena loaders(std::max(1, settings_.loader_threads));
  auto load = [&](const Part& part) {
    std::vector<std::int64_t> idx(static_cast<std::size_t>(part.end - part.begin));
    for (std::size_t k = 0; k < idx.size(); ++k) idx[k] = sample_of(part.begin + static_cast<std::int64_t>(k));
    Batch b = loaders.execute([&] {
      return settings_.feature_augment ? dataset_.get_untransformed(idx, part.view == 1)
                                       : dataset_.get_batch(Split::kTrain, idx, view_seed(part.view));
    });
    if (b.images.dim() == 4) b.images = b.images.contiguous(at::MemoryFormat::ChannelsLast);
    return b;
  };
  std::vector<at::Tensor> labels;
  at::NoGradGuard no_grad;
  // The frozen stages run where training runs and in its precision, so the
  // cached maps are what the prefix computed during training.
  AutocastGuard autocast(settings_.device, settings_.precision);
  for (std::size_t i = 0; i < parts.size(); ++i) {
    test_signals_in_build(i);
    throw_if_interrupted();
    Batch b = load(parts[i]);
    const Part& part = parts[i];
    if (part.view == 0) labels.push_back(b.labels);
    at::Tensor x = b.images.to(settings_.device).to(at::kFloat);
    for (std::size_t s = 0; s < cut; ++s) x = model_.forward_stage(s, x);
    std::vector<std::int64_t> r(static_cast<std::size_t>(part.end - part.begin));
    for (std::size_t k = 0; k < r.size(); ++k) r[k] = row(part.begin + static_cast<std::int64_t>(k), part.view);
    cache.put(r, to_storage_layout(x).to(settings_.dtype).to(cache.device()));
    flops += per_sample * (part.end - part.begin);
  }
  return labels.empty() ? at::empty({0}, at::kLong) : at::cat(labels).to(at::kLong);
}

DropReport DropController::freeze_only(std::size_t new_cut) {
  auto start = std::chrono::steady_clock::now();
  DropReport report;
  report.from_cut = frozen_;
  report.to_cut = new_cut;
  report.mode = DropMode::kFreeze;
  freeze(frozen_, new_cut);
  frozen_ = new_cut;
  history_.push_back({DropEvent::Kind::kDrop, new_cut, DropMode::kFreeze, samples()});
  report.cache_description = cache_ ? "cache at cut " + std::to_string(cache_cut_) + " kept" : "no cache";
  report.shift = draw_.shift;
  report.cache_bytes = cache_ ? cache_->bytes() : 0;
  report.seconds = seconds_since(start);
  return report;
}

DropReport DropController::advance(std::size_t new_cut) {
  if (new_cut <= frozen_ || new_cut > model_.num_stages()) {
    throw Error("internal: invalid drop from cut " + std::to_string(frozen_) + " to " + std::to_string(new_cut) +
                " of " + std::to_string(model_.num_stages()) + " stages");
  }
  auto start = std::chrono::steady_clock::now();
  DropReport report;
  report.from_cut = frozen_;
  report.to_cut = new_cut;
  report.mode = DropMode::kCache;

  // The new stages compute in eval mode (batch norm with its running
  // statistics), as they will once frozen; they are frozen only once the
  // cache is complete, so that a failed build leaves the run as it was.
  std::vector<bool> was_training;
  for (std::size_t s = frozen_; s < new_cut; ++s) {
    was_training.push_back(model_.stage_module(s)->is_training());
    model_.stage_module(s)->eval();
  }
  auto undo = [&] {
    for (std::size_t s = frozen_; s < new_cut; ++s) {
      if (was_training[s - frozen_]) model_.stage_module(s)->train();
    }
  };
  std::shared_ptr<FeatureCache> next;
  CacheLayout layout;
  try {
    // Rows p * views + v hold view v of position p.
    const std::int64_t n = samples();
    layout = layout_at(new_cut);
    next = make_cache_();
    const auto allocating = std::chrono::steady_clock::now();
    next->begin(layout);
    report.allocate_seconds = seconds_since(allocating);
    const std::int64_t per_sample =
        std::accumulate(stage_flops_.begin() + static_cast<std::ptrdiff_t>(cache_cut_),
                        stage_flops_.begin() + static_cast<std::ptrdiff_t>(new_cut), std::int64_t{0});
    if (cache_cut_ == 0) {
      labels_ = compute_rows(*next, new_cut, 0, n, report.flops);
    } else {
      at::NoGradGuard no_grad;
      AutocastGuard autocast(settings_.device, settings_.precision);
      std::size_t batch = 0;
      for (std::int64_t begin = 0, end = 0; begin < layout.count; begin = end) {
        test_signals_in_build(batch++);
        throw_if_interrupted();
        end = std::min(layout.count, begin + settings_.build_batch);
        std::vector<std::int64_t> row(static_cast<std::size_t>(end - begin));
        std::iota(row.begin(), row.end(), begin);
        at::Tensor x = to_model_layout(cache_->get(row)).to(settings_.device).to(at::kFloat);
        for (std::size_t s = cache_cut_; s < new_cut; ++s) x = model_.forward_stage(s, x);
        next->put(row, to_storage_layout(x).to(settings_.dtype).to(next->device()));
        report.flops += per_sample * (end - begin);
      }
    }
    next->finish();
  } catch (...) {
    undo();
    throw;
  }
  freeze(frozen_, new_cut);
  cache_ = std::move(next);  // the old cache is released here, or by the last reader still holding it
  cache_key_ = layout.key;
  ++generation_;
  cache_cut_ = frozen_ = new_cut;
  history_.push_back({DropEvent::Kind::kDrop, new_cut, DropMode::kCache, samples()});
  draw_.shift = shift_at(new_cut);
  report.shift = draw_.shift;
  report.cache_bytes = cache_->bytes();
  report.cache_description = cache_->describe();
  report.seconds = seconds_since(start);
  return report;
}

ArrivalReport DropController::arrive(std::int64_t samples_now) {
  if (!stream_) throw Error("internal: an arrival without a stream");
  const std::int64_t before = samples();
  if (samples_now <= before || samples_now > static_cast<std::int64_t>(draw_.samples.size())) {
    throw Error("internal: arrival of samples " + std::to_string(before) + ".." + std::to_string(samples_now) +
                " of a stream of " + std::to_string(draw_.samples.size()));
  }
  ArrivalReport report = add_rows(before, samples_now);
  history_.push_back({DropEvent::Kind::kArrival, frozen_, DropMode::kCache, samples_now});
  report.source = source();
  return report;
}

ArrivalReport DropController::add_rows(std::int64_t from, std::int64_t to) {
  const auto start = std::chrono::steady_clock::now();
  ArrivalReport report;
  report.samples = to - from;
  visible_ = to;
  if (!cache_) return report;
  // The new samples pass through the cached stages once (eval mode, as frozen).
  const std::int64_t views = settings_.views;
  std::shared_ptr<FeatureCache> target = cache_;
  if (!cache_->grow(to * views)) {
    // No growth in place: a new cache of the larger layout, the old rows copied.
    report.copied = true;
    const CacheLayout layout = layout_at(cache_cut_);
    target = make_cache_();
    target->begin(layout);
    for (std::int64_t begin = 0, end = 0; begin < from * views; begin = end) {
      end = std::min(from * views, begin + settings_.build_batch);
      std::vector<std::int64_t> row(static_cast<std::size_t>(end - begin));
      std::iota(row.begin(), row.end(), begin);
      target->put(row, cache_->get(row).to(target->device()));
    }
  }
  at::Tensor labels = compute_rows(*target, cache_cut_, from, to, report.flops);
  target->finish();
  if (target != cache_) {
    cache_ = std::move(target);
    ++generation_;
  }
  labels_ = at::cat({labels_, labels});
  report.rows = (to - from) * views;
  report.seconds = seconds_since(start);
  return report;
}

std::string DropController::resume_drops(const std::vector<DropEvent>& history, const at::Tensor& labels,
                                    StagedOptimizer* optimizer) {
  if (frozen_ != 0 || !history_.empty()) throw Error("internal: restore on a controller that has dropped already");
  if (history.empty()) return "";
  std::size_t last_cut = 0, last_cache_cut = 0;
  std::int64_t last_samples = -1;
  for (std::size_t i = 0; i < history.size(); ++i) {
    const DropEvent& e = history[i];
    if (e.kind == DropEvent::Kind::kDrop) {
      if (e.cut == 0 || e.cut > model_.num_stages() || e.cut <= last_cut) {
        throw Error("checkpoint: drop " + std::to_string(i + 1) + " to cut " + std::to_string(e.cut) +
                    " is not a valid drop of this " + std::to_string(model_.num_stages()) + "-stage model");
      }
      last_cut = e.cut;
      if (e.mode == DropMode::kCache) last_cache_cut = e.cut;
    } else {
      if (!stream_ || e.samples <= last_samples || e.samples > static_cast<std::int64_t>(draw_.samples.size())) {
        throw Error("checkpoint: arrival " + std::to_string(i + 1) + " of " + std::to_string(e.samples) +
                    " samples does not fit this run's stream");
      }
      last_samples = e.samples;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const bool training = model_.is_training();
  std::string how;
  // The kept cache of the last cut, when its key (a digest of the restored
  // frozen weights) finds it intact.
  std::shared_ptr<FeatureCache> kept;
  if (last_cache_cut > 0) {
    if (stream_) visible_ = last_samples;
    const CacheLayout layout = layout_at(last_cache_cut);
    kept = make_cache_();
    if (!kept->reopen(layout)) {
      kept.reset();
      if (stream_) visible_ = 0;
    } else {
      freeze(0, last_cut);
      cache_ = std::move(kept);
      cache_key_ = layout.key;
      ++generation_;
      cache_cut_ = last_cache_cut;
      frozen_ = last_cut;
      history_ = history;
      labels_ = labels.to(at::kLong).contiguous();
      draw_.shift = shift_at(last_cache_cut);
      how = "cut-" + std::to_string(last_cache_cut) + " cache reopened without recomputation: " + cache_->describe();
    }
  }
  if (how.empty()) {
    std::int64_t flops = 0;
    std::string cuts;
    for (const DropEvent& e : history) {
      if (e.kind == DropEvent::Kind::kArrival) {
        flops += arrive(e.samples).flops;
      } else if (e.mode == DropMode::kCache) {
        flops += advance(e.cut).flops;
        cuts += " " + std::to_string(e.cut);
      } else {
        freeze_only(e.cut);
      }
    }
    if (cache_ && !labels_.equal(labels.to(at::kLong))) {
      throw Error("checkpoint: the training labels differ from the data set's (has the data changed?)");
    }
    how = cuts.empty() ? "" : "cache rebuilt from the frozen stages (cuts" + cuts + ", " +
                                  format_flops(static_cast<double>(flops)) + ")";
  }
  if (training) {
    model_.train();
    keep_dropped_in_eval();
  }
  if (optimizer) optimizer->drop_stages_before(frozen_);
  if (how.empty()) return how;
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, " in %.1fs", seconds_since(start));
  return how + seconds;
}

}  // namespace ld::core
