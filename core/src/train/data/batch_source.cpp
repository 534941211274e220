#include "learndrop/core/batch_source.h"

#include <algorithm>
#include <tuple>

#include <ATen/ATen.h>

#include "learndrop/core/drop_controller.h"
#include "learndrop/core/seeds.h"
#include "learndrop/error.h"

namespace ld::core {

std::int64_t SampleDraw::view_of(std::uint64_t epoch_seed, std::int64_t sample) const {
  if (views == 1) return 0;
  return static_cast<std::int64_t>(mix_seed(epoch_seed, static_cast<std::uint64_t>(sample)) %
                                   static_cast<std::uint64_t>(views));
}

std::pair<std::int64_t, std::int64_t> SampleDraw::shift_of(std::uint64_t epoch_seed, std::int64_t sample) const {
  if (shift.max_shift == 0) return {0, 0};
  const auto span = static_cast<std::uint64_t>(2 * shift.max_shift + 1);
  const std::uint64_t r = mix_seed(mix_seed(epoch_seed, 0x7368696674ULL), static_cast<std::uint64_t>(sample));  // "shift"
  return {static_cast<std::int64_t>(r % span) - shift.max_shift,
          static_cast<std::int64_t>((r >> 32) % span) - shift.max_shift};
}

std::vector<std::int64_t> SampleDraw::rows(const std::vector<std::int64_t>& positions, std::uint64_t epoch_seed) const {
  std::vector<std::int64_t> r(positions.size());
  for (std::size_t k = 0; k < positions.size(); ++k) {
    r[k] = row(positions[k], view_of(epoch_seed, sample_of(positions[k])));
  }
  return r;
}

at::Tensor SampleDraw::augment(const at::Tensor& stored, const std::vector<std::int64_t>& positions,
                               std::uint64_t epoch_seed) const {
  if (shift.max_shift == 0) return stored;
  std::vector<std::int64_t> dy(positions.size()), dx(positions.size());
  for (std::size_t k = 0; k < positions.size(); ++k) {
    std::tie(dy[k], dx[k]) = shift_of(epoch_seed, sample_of(positions[k]));
  }
  return shift_stored(stored.contiguous(), dy, dx, shift.fill);
}

DatasetSource::DatasetSource(const Dataset& dataset, int loader_threads, std::vector<std::int64_t> samples)
    : dataset_(dataset),
      arena_(std::make_unique<tbb::task_arena>(std::max(1, loader_threads))),
      samples_(std::move(samples)) {}

void DatasetSource::begin(const std::vector<std::int64_t>& /*order*/, std::int64_t /*batch_size*/,
                          std::int64_t /*first_step*/, std::int64_t /*steps*/, std::uint64_t epoch_seed) {
  epoch_seed_ = epoch_seed;
}

Batch DatasetSource::batch(std::int64_t step, const std::vector<std::int64_t>& indices) {
  // The augmentation of a batch depends on the epoch and the step only.
  const std::uint64_t seed = mix_seed(epoch_seed_, static_cast<std::uint64_t>(step));
  std::vector<std::int64_t> samples(indices);
  if (!samples_.empty()) {
    for (auto& i : samples) i = samples_[static_cast<std::size_t>(i)];
  }
  Batch b = arena_->execute([&] { return dataset_.get_batch(Split::kTrain, samples, seed); });
  if (b.images.dim() == 4) b.images = b.images.contiguous(at::MemoryFormat::ChannelsLast);
  return b;
}

namespace {
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

std::unique_ptr<BatchReader> owning_reader(std::shared_ptr<FeatureCache> cache, std::vector<std::int64_t> rows,
                                           std::int64_t batch_size) {
  if (!cache) throw Error("internal: no feature cache before the first cached drop");
  std::unique_ptr<BatchReader> inner = cache->reader(std::move(rows), batch_size);
  return std::make_unique<OwningReader>(std::move(cache), std::move(inner));
}

void CacheSource::begin(const std::vector<std::int64_t>& order, std::int64_t batch_size, std::int64_t first_step,
                        std::int64_t steps, std::uint64_t epoch_seed) {
  epoch_seed_ = epoch_seed;
  reader_.reset();
  const auto size = static_cast<std::int64_t>(order.size());
  const auto begin = order.begin() + std::min(first_step * batch_size, size);
  const auto end = order.begin() + std::min(steps * batch_size, size);
  if (begin < end) {
    reader_ = owning_reader(features_.cache, features_.draw.rows(std::vector<std::int64_t>(begin, end), epoch_seed),
                            batch_size);
  }
}

Batch CacheSource::batch(std::int64_t step, const std::vector<std::int64_t>& indices) {
  if (!reader_) throw Error("internal: cache batch " + std::to_string(step) + " asked for outside begin/end");
  at::Tensor stored = reader_->next();
  if (!stored.defined() || stored.size(0) != static_cast<std::int64_t>(indices.size())) {
    throw Error("cache reader returned " +
                (stored.defined() ? std::to_string(stored.size(0)) + " samples" : std::string("no batch")) +
                " for batch " + std::to_string(step) + " of " + std::to_string(indices.size()));
  }
  return {from_storage_layout(features_.draw.augment(stored, indices, epoch_seed_), features_.model_shape),
          features_.labels.index_select(0, at::tensor(indices, at::kLong))};
}

}  // namespace ld::core
