#include "learndrop/core/batch_feed.h"

#include <numeric>
#include <random>

#include <ATen/ATen.h>

#include "learndrop/core/drop_controller.h"

namespace ld::core {

std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b) {
  std::uint64_t x = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

std::vector<std::int64_t> epoch_order(std::int64_t n, std::uint64_t seed, std::int64_t epoch) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(mix_seed(seed, static_cast<std::uint64_t>(epoch) + 1));
  for (std::size_t i = order.size(); i > 1; --i) {
    std::size_t j = static_cast<std::size_t>(rng() % i);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

BatchFeed::BatchFeed(const DropController& controller, const Dataset& dataset, std::int64_t batch_size)
    : controller_(controller), dataset_(dataset), batch_size_(batch_size) {}

BatchFeed::~BatchFeed() {
  if (pending_.valid()) pending_.wait();
}

void BatchFeed::start(const std::vector<std::int64_t>& order, std::int64_t first_step, std::int64_t steps,
                      std::uint64_t epoch_seed) {
  if (pending_.valid()) pending_.wait();
  pending_ = {};
  order_ = &order;
  step_ = first_step;
  steps_ = steps;
  epoch_seed_ = epoch_seed;
  reader_.reset();
  if (step_ >= steps_) return;
  if (controller_.cut() > 0) {
    auto begin = order.begin() + step_ * batch_size_;
    auto end = order.begin() + std::min<std::int64_t>(steps_ * batch_size_, static_cast<std::int64_t>(order.size()));
    reader_ = controller_.reader(std::vector<std::int64_t>(begin, end), batch_size_);
  } else {
    prefetch(step_);
  }
}

bool BatchFeed::next(at::Tensor& images, at::Tensor& labels) {
  if (step_ >= steps_) return false;
  if (reader_) {
    images = controller_.to_model_layout(reader_->next());
    labels = controller_.train_labels().index_select(0, at::tensor(indices(step_), at::kLong));
  } else {
    Batch b = pending_.get();
    if (step_ + 1 < steps_) prefetch(step_ + 1);
    images = b.images.dim() == 4 ? b.images.contiguous(at::MemoryFormat::ChannelsLast) : b.images;
    labels = b.labels;
  }
  ++step_;
  return true;
}

std::vector<std::int64_t> BatchFeed::indices(std::int64_t step) const {
  std::int64_t begin = step * batch_size_;
  std::int64_t end = std::min<std::int64_t>(begin + batch_size_, static_cast<std::int64_t>(order_->size()));
  return std::vector<std::int64_t>(order_->begin() + begin, order_->begin() + end);
}

void BatchFeed::prefetch(std::int64_t step) {
  std::uint64_t seed = mix_seed(epoch_seed_, static_cast<std::uint64_t>(step));
  pending_ = std::async(std::launch::async,
                        [this, idx = indices(step), seed] { return dataset_.get_batch(Split::kTrain, idx, seed); });
}

}  // namespace ld::core
