#include "learndrop/core/drop_controller.h"

#include "learndrop/core/batch_feed.h"
#include "learndrop/core/optimizer.h"

#include <chrono>
#include <cstdio>
#include <numeric>
#include <tuple>

#include <ATen/ATen.h>
#include <ATen/TensorIndexing.h>
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
}

std::uint64_t DropController::view_seed(std::int64_t v) const {
  return mix_seed(settings_.seed, 0x76696577ULL + static_cast<std::uint64_t>(v));  // "view"
}

std::int64_t DropController::view_of(std::uint64_t epoch_seed, std::int64_t sample) const {
  if (settings_.views == 1) return 0;
  return static_cast<std::int64_t>(mix_seed(epoch_seed, static_cast<std::uint64_t>(sample)) %
                                   static_cast<std::uint64_t>(settings_.views));
}

std::pair<std::int64_t, std::int64_t> DropController::shift_of(std::uint64_t epoch_seed, std::int64_t sample) const {
  if (shift_.max_shift == 0) return {0, 0};
  const auto span = static_cast<std::uint64_t>(2 * shift_.max_shift + 1);
  const std::uint64_t r = mix_seed(mix_seed(epoch_seed, 0x7368696674ULL), static_cast<std::uint64_t>(sample));  // "shift"
  return {static_cast<std::int64_t>(r % span) - shift_.max_shift,
          static_cast<std::int64_t>((r >> 32) % span) - shift_.max_shift};
}

at::Tensor DropController::augment(const at::Tensor& stored, const std::vector<std::int64_t>& samples,
                                   std::uint64_t epoch_seed) const {
  if (shift_.max_shift == 0) return stored;
  std::vector<std::int64_t> dy(samples.size()), dx(samples.size());
  for (std::size_t k = 0; k < samples.size(); ++k) {
    std::tie(dy[k], dx[k]) = shift_of(epoch_seed, sample_of(samples[k]));
  }
  return shift_stored(stored.contiguous(), dy, dx, shift_.fill);
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

std::vector<std::int64_t> DropController::rows(const std::vector<std::int64_t>& samples,
                                               std::uint64_t epoch_seed) const {
  const std::int64_t n = cached_samples();
  std::vector<std::int64_t> r(samples.size());
  for (std::size_t k = 0; k < samples.size(); ++k) {
    r[k] = view_of(epoch_seed, sample_of(samples[k])) * n + samples[k];
  }
  return r;
}

std::int64_t DropController::cached_samples() const {
  return shard_.empty() ? dataset_.size(Split::kTrain) : static_cast<std::int64_t>(shard_.size());
}

void DropController::set_shard(std::vector<std::int64_t> samples) {
  if (cut_ != 0) throw Error("internal: a cache shard is set before the first drop");
  const std::int64_t n = dataset_.size(Split::kTrain);
  std::vector<bool> seen(static_cast<std::size_t>(n), false);
  for (std::int64_t i : samples) {
    if (i < 0 || i >= n || seen[static_cast<std::size_t>(i)]) {
      throw Error("internal: cache shard sample " + std::to_string(i) + " out of range or repeated");
    }
    seen[static_cast<std::size_t>(i)] = true;
  }
  shard_ = std::move(samples);
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
  const std::string rest = settings_.data_key + "|views=" + std::to_string(settings_.views) +
                           (settings_.feature_augment ? "|feature" : "") +
                           "|cut=" + std::to_string(cut) + "|dtype=" + c10::toString(settings_.dtype);
  h.add(rest.data(), rest.size());
  if (!shard_.empty()) h.add(shard_.data(), shard_.size() * sizeof(std::int64_t));
  return h.hex();
}

at::Tensor DropController::cached_rows(const std::vector<std::int64_t>& rows) const {
  if (cut_ == 0) throw Error("internal: no feature cache before the first drop");
  return to_model_layout(cache_->get(rows)).to(at::kCPU).to(at::kFloat);
}

void DropController::keep_dropped_in_eval() {
  for (std::size_t i = 0; i < cut_; ++i) model_.stage_module(i)->eval();
}

at::Tensor DropController::to_model_layout(const at::Tensor& stored) const {
  return from_storage_layout(stored, stage_shapes_.at(cut_ - 1));
}

std::unique_ptr<BatchSource> DropController::source(int loader_threads) const {
  if (cut_ == 0) return std::make_unique<DatasetSource>(dataset_, loader_threads);
  return std::make_unique<CacheSource>(*this);
}

DropOutcome DropController::apply(const Decision& decision, StagedOptimizer* optimizer, BatchFeed* feed) {
  DropOutcome out;
  out.asked = decision.cut;
  std::size_t target = decision.cut;
  const std::size_t stages = model_.num_stages();
  if (target > stages) {
    out.note = "cut " + std::to_string(target) + " asked for, but the model has " + std::to_string(stages) +
               " stages; clamped";
    target = stages;
  }
  if (target < cut_) {
    out.note = "cut " + std::to_string(target) + " asked for, below the current cut " + std::to_string(cut_) +
               "; drops are monotone, keeping " + std::to_string(cut_);
  }
  if (target <= cut_) {
    out.cut = cut_;
    return out;
  }
  // The feed's producer may be reading the current cache, which the build
  // below reads too and then releases: stop it first.
  if (feed) feed->stop();
  const bool training = model_.is_training();
  out.drop = advance(target);
  if (training) {
    model_.train();
    keep_dropped_in_eval();
  }
  if (optimizer) optimizer->drop_stages_before(target);
  if (feed) feed->replace_source(source());
  out.cut = cut_;
  return out;
}

namespace {
// A cache's reader that keeps the cache alive: the reader is destroyed
// first (its destructor may still use the cache, e.g. a disk reader's
// pending reads), then the cache reference is released.
class OwningReader final : public BatchReader {
 public:
  OwningReader(std::shared_ptr<FeatureCache> cache, std::unique_ptr<BatchReader> inner)
      : cache_(std::move(cache)), inner_(std::move(inner)) {}
  ~OwningReader() override { inner_.reset(); }
  at::Tensor next() override { return inner_->next(); }

 private:
  std::shared_ptr<FeatureCache> cache_;
  std::unique_ptr<BatchReader> inner_;
};
}  // namespace

std::unique_ptr<BatchReader> DropController::reader(const std::vector<std::int64_t>& order, std::int64_t batch_size,
                                                    std::uint64_t epoch_seed) const {
  if (cut_ == 0) throw Error("internal: no feature cache before the first drop");
  return std::make_unique<OwningReader>(cache_, cache_->reader(rows(order, epoch_seed), batch_size));
}

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
  layout.count = cached_samples() * settings_.views;  // rows v * N + i
  layout.shape = storage_shape(stage_shapes_.at(cut - 1));
  layout.dtype = settings_.dtype;
  layout.key = cache_key(cut);  // the stages before `cut` must be frozen as they will stay
  return layout;
}

void DropController::retain_cache() {
  if (cache_) cache_->retain();
}

std::string DropController::restore(const std::vector<std::size_t>& drops, const at::Tensor& labels,
                                    StagedOptimizer* optimizer) {
  if (cut_ != 0) throw Error("internal: restore on a controller that has dropped already");
  if (!shard_.empty()) throw Error("internal: a sharded cache is not restored from a checkpoint");
  if (drops.empty()) return "";
  for (std::size_t i = 0; i < drops.size(); ++i) {
    if (drops[i] == 0 || drops[i] > model_.num_stages() || (i > 0 && drops[i] <= drops[i - 1])) {
      throw Error("checkpoint: drop " + std::to_string(i + 1) + " to cut " + std::to_string(drops[i]) +
                  " is not a valid drop of this " + std::to_string(model_.num_stages()) + "-stage model");
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const std::size_t last = drops.back();
  const bool training = model_.is_training();
  std::string how;
  // The kept cache of the last cut, when its key (a digest of the restored
  // frozen weights) finds it intact.
  const CacheLayout layout = layout_at(last);
  std::shared_ptr<FeatureCache> kept = make_cache_();
  if (kept->reopen(layout)) {
    freeze(0, last);
    cache_ = std::move(kept);
    cache_key_ = layout.key;
    ++generation_;
    cut_ = last;
    drops_ = drops;
    labels_ = labels.to(at::kLong).contiguous();
    shift_ = shift_at(last);
    how = "cut-" + std::to_string(last) + " cache reopened without recomputation: " + cache_->describe();
  } else {
    kept.reset();
    std::int64_t flops = 0;
    for (std::size_t cut : drops) flops += advance(cut).flops;
    if (!labels_.equal(labels.to(at::kLong))) {
      throw Error("checkpoint: the training labels differ from the data set's (has the data changed?)");
    }
    how = "cache rebuilt from the frozen stages (cuts";
    for (std::size_t cut : drops) how += " " + std::to_string(cut);
    how += ", " + format_flops(static_cast<double>(flops)) + ")";
  }
  if (training) {
    model_.train();
    keep_dropped_in_eval();
  }
  if (optimizer) optimizer->drop_stages_before(last);
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, " in %.1fs",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return how + seconds;
}

DropReport DropController::advance(std::size_t new_cut) {
  if (new_cut <= cut_ || new_cut > model_.num_stages()) {
    throw Error("internal: invalid drop from cut " + std::to_string(cut_) + " to " + std::to_string(new_cut) + " of " +
                std::to_string(model_.num_stages()) + " stages");
  }
  auto start = std::chrono::steady_clock::now();
  DropReport report;
  report.from_cut = cut_;
  report.to_cut = new_cut;

  // Freeze the newly dropped stages before computing their outputs.
  freeze(cut_, new_cut);

  // Rows v * N + i hold view v of sample i (of the shard's position i).
  const std::int64_t n = cached_samples();
  const CacheLayout layout = layout_at(new_cut);
  const std::int64_t count = layout.count;
  std::shared_ptr<FeatureCache> next = make_cache_();
  next->begin(layout);
  std::vector<at::Tensor> labels;
  const std::int64_t per_sample =
      std::accumulate(stage_flops_.begin() + static_cast<std::ptrdiff_t>(cut_),
                      stage_flops_.begin() + static_cast<std::ptrdiff_t>(new_cut), std::int64_t{0});
  {
    at::NoGradGuard no_grad;
    // The frozen stages run where training runs and in its precision, so the
    // cached maps are what the prefix computed during training.
    AutocastGuard autocast(settings_.device, settings_.precision);
    for (std::int64_t begin = 0, end = 0; begin < count; begin = end) {
      throw_if_interrupted();
      // A batch never spans two views, so that it is one call of the dataset.
      const std::int64_t view = begin / n;
      end = std::min({count, begin + settings_.build_batch, (view + 1) * n});
      std::vector<std::int64_t> row(static_cast<std::size_t>(end - begin));
      std::iota(row.begin(), row.end(), begin);
      at::Tensor x;
      if (cut_ == 0) {
        std::vector<std::int64_t> idx(row.size());
        for (std::size_t k = 0; k < row.size(); ++k) idx[k] = sample_of(row[k] - view * n);
        Batch b = settings_.feature_augment ? dataset_.get_untransformed(idx, view == 1)
                                            : dataset_.get_batch(Split::kTrain, idx, view_seed(view));
        x = b.images.dim() == 4 ? b.images.contiguous(at::MemoryFormat::ChannelsLast) : b.images;
        if (view == 0) labels.push_back(b.labels);
      } else {
        x = to_model_layout(cache_->get(row));
      }
      x = x.to(settings_.device).to(at::kFloat);
      for (std::size_t s = cut_; s < new_cut; ++s) x = model_.forward_stage(s, x);
      next->put(row, to_storage_layout(x).to(settings_.dtype).to(next->device()));
      report.flops += per_sample * (end - begin);
    }
  }
  next->finish();
  if (cut_ == 0) labels_ = at::cat(labels);
  cache_ = std::move(next);  // the old cache is released here, or by the last reader still holding it
  cache_key_ = layout.key;
  ++generation_;
  cut_ = new_cut;
  drops_.push_back(new_cut);
  shift_ = shift_at(new_cut);
  report.shift = shift_;
  report.cache_bytes = cache_->bytes();
  report.cache_description = cache_->describe();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace ld::core
