#include "learndrop/core/drop_controller.h"

#include <chrono>
#include <numeric>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "learndrop/core/batch_feed.h"
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

std::vector<std::int64_t> DropController::rows(const std::vector<std::int64_t>& samples,
                                               std::uint64_t epoch_seed) const {
  const std::int64_t n = dataset_.size(Split::kTrain);
  std::vector<std::int64_t> r(samples.size());
  for (std::size_t k = 0; k < samples.size(); ++k) r[k] = view_of(epoch_seed, samples[k]) * n + samples[k];
  return r;
}

std::string DropController::cache_key(std::size_t cut) const {
  Fnv1a64 h;
  auto add_tensor = [&](const at::Tensor& t) {
    at::Tensor c = t.contiguous();
    h.add(c.data_ptr(), static_cast<std::size_t>(c.numel() * c.element_size()));
  };
  for (std::size_t i = 0; i < cut; ++i) {
    for (const auto& p : model_.stage_module(i)->parameters()) add_tensor(p);
    for (const auto& b : model_.stage_module(i)->buffers()) add_tensor(b);
  }
  const std::string rest = settings_.data_key + "|views=" + std::to_string(settings_.views) +
                           "|cut=" + std::to_string(cut) + "|dtype=" + c10::toString(settings_.dtype);
  h.add(rest.data(), rest.size());
  return h.hex();
}

at::Tensor DropController::cached_rows(const std::vector<std::int64_t>& rows) const {
  if (cut_ == 0) throw Error("internal: no feature cache before the first drop");
  return to_model_layout(cache_->get(rows));
}

void DropController::keep_dropped_in_eval() {
  for (std::size_t i = 0; i < cut_; ++i) model_.stage_module(i)->eval();
}

at::Tensor DropController::to_model_layout(const at::Tensor& stored) const {
  return from_storage_layout(stored, stage_shapes_.at(cut_ - 1));
}

at::Tensor DropController::inputs(const std::vector<std::int64_t>& indices, std::uint64_t epoch_seed) const {
  if (cut_ == 0) {
    at::Tensor x = dataset_.get_batch(Split::kTrain, indices, epoch_seed).images;
    return x.dim() == 4 ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
  }
  return to_model_layout(cache_->get(rows(indices, epoch_seed)));
}

std::unique_ptr<BatchReader> DropController::reader(const std::vector<std::int64_t>& order, std::int64_t batch_size,
                                                    std::uint64_t epoch_seed) const {
  if (cut_ == 0) throw Error("internal: no feature cache before the first drop");
  return cache_->reader(rows(order, epoch_seed), batch_size);
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
  for (std::size_t i = cut_; i < new_cut; ++i) {
    auto stage = model_.stage_module(i);
    stage->eval();
    for (auto& p : stage->parameters()) p.set_requires_grad(false);
  }

  // Rows v * N + i hold view v of sample i.
  const std::int64_t n = dataset_.size(Split::kTrain);
  const std::int64_t count = n * settings_.views;
  std::shared_ptr<FeatureCache> next = make_cache_();
  const auto& out_shape = stage_shapes_.at(new_cut - 1);
  CacheLayout layout;
  layout.cut = new_cut;
  layout.count = count;
  layout.shape = storage_shape(out_shape);
  layout.dtype = settings_.dtype;
  layout.key = cache_key(new_cut);
  next->begin(layout);
  std::vector<at::Tensor> labels;
  const std::int64_t per_sample =
      std::accumulate(stage_flops_.begin() + static_cast<std::ptrdiff_t>(cut_),
                      stage_flops_.begin() + static_cast<std::ptrdiff_t>(new_cut), std::int64_t{0});
  {
    at::NoGradGuard no_grad;
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
        for (std::size_t k = 0; k < row.size(); ++k) idx[k] = row[k] - view * n;
        Batch b = dataset_.get_batch(Split::kTrain, idx, view_seed(view));
        x = b.images.dim() == 4 ? b.images.contiguous(at::MemoryFormat::ChannelsLast) : b.images;
        if (view == 0) labels.push_back(b.labels);
      } else {
        x = to_model_layout(cache_->get(row));
      }
      for (std::size_t s = cut_; s < new_cut; ++s) x = model_.forward_stage(s, x);
      next->put(row, to_storage_layout(x));
      report.flops += per_sample * (end - begin);
    }
  }
  next->finish();
  if (cut_ == 0) labels_ = at::cat(labels);
  cache_ = std::move(next);  // the old cache is released here
  cut_ = new_cut;
  report.cache_bytes = cache_->bytes();
  report.cache_description = cache_->describe();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace ld::core
