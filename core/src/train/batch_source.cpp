#include "learndrop/core/batch_source.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "learndrop/core/drop_controller.h"
#include "learndrop/core/seeds.h"
#include "learndrop/error.h"

namespace ld::core {

DatasetSource::DatasetSource(const Dataset& dataset, int loader_threads, const DropController& controller)
    : dataset_(dataset),
      arena_(std::make_unique<tbb::task_arena>(std::max(1, loader_threads))),
      controller_(controller) {}

void DatasetSource::begin(const std::vector<std::int64_t>& /*order*/, std::int64_t /*batch_size*/,
                          std::int64_t /*first_step*/, std::int64_t /*steps*/, std::uint64_t epoch_seed) {
  epoch_seed_ = epoch_seed;
}

Batch DatasetSource::batch(std::int64_t step, const std::vector<std::int64_t>& indices) {
  // The augmentation of a batch depends on the epoch and the step only.
  const std::uint64_t seed = mix_seed(epoch_seed_, static_cast<std::uint64_t>(step));
  std::vector<std::int64_t> samples(indices.size());
  for (std::size_t k = 0; k < indices.size(); ++k) samples[k] = controller_.sample_of(indices[k]);
  Batch b = arena_->execute([&] { return dataset_.get_batch(Split::kTrain, samples, seed); });
  if (b.images.dim() == 4) b.images = b.images.contiguous(at::MemoryFormat::ChannelsLast);
  return b;
}

void CacheSource::begin(const std::vector<std::int64_t>& order, std::int64_t batch_size, std::int64_t first_step,
                        std::int64_t steps, std::uint64_t epoch_seed) {
  epoch_seed_ = epoch_seed;
  reader_.reset();
  const auto size = static_cast<std::int64_t>(order.size());
  const auto begin = order.begin() + std::min(first_step * batch_size, size);
  const auto end = order.begin() + std::min(steps * batch_size, size);
  if (begin < end) reader_ = controller_.reader(std::vector<std::int64_t>(begin, end), batch_size, epoch_seed);
}

Batch CacheSource::batch(std::int64_t step, const std::vector<std::int64_t>& indices) {
  if (!reader_) throw Error("internal: cache batch " + std::to_string(step) + " asked for outside begin/end");
  at::Tensor stored = reader_->next();
  if (!stored.defined() || stored.size(0) != static_cast<std::int64_t>(indices.size())) {
    throw Error("cache reader returned " +
                (stored.defined() ? std::to_string(stored.size(0)) + " samples" : std::string("no batch")) +
                " for batch " + std::to_string(step) + " of " + std::to_string(indices.size()));
  }
  return {controller_.to_model_layout(controller_.augment(stored, indices, epoch_seed_)),
          controller_.train_labels().index_select(0, at::tensor(indices, at::kLong))};
}

}  // namespace ld::core
