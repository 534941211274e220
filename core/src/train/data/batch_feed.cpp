#include "learndrop/core/batch_feed.h"

#include <numeric>
#include <random>

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>

#include "learndrop/error.h"

namespace ld::core {

BatchFeed::BatchFeed(std::unique_ptr<BatchSource> source, const FeedSettings& settings)
    : source_(std::move(source)),
      settings_(settings),
      // A slot is refilled once its copy is done; one more than the queue
      // lets the producer stage the next batch while the queue is full.
      stager_(std::make_unique<DeviceStager>(settings.device,
                                             static_cast<int>(std::max<std::int64_t>(2, settings.prefetch + 1)))) {
  if (!source_) throw Error("internal: a batch feed without a source");
}

BatchFeed::~BatchFeed() { stop(); }

void BatchFeed::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (producer_.joinable()) producer_.join();
  queue_.clear();
  stopping_ = false;
  if (started_) source_->end();
  started_ = false;
  step_ = steps_;
}

void BatchFeed::start(std::vector<std::int64_t> order, std::int64_t first_step, std::int64_t steps,
                      std::uint64_t epoch_seed) {
  stop();
  order_ = std::move(order);
  has_epoch_ = true;
  step_ = produced_ = resume_step_ = first_step;
  steps_ = steps;
  epoch_seed_ = epoch_seed;
  if (step_ >= steps_) return;
  source_->begin(order_, settings_.batch_size, step_, steps_, epoch_seed_);
  started_ = true;
  if (settings_.prefetch > 0) producer_ = std::thread([this] { produce(); });
}

void BatchFeed::resume(std::unique_ptr<BatchSource> source) {
  stop();
  if (source) source_ = std::move(source);
  if (has_epoch_) start(std::move(order_), resume_step_, steps_, epoch_seed_);
}

void BatchFeed::reorder(std::vector<std::int64_t> order) {
  if (started_) throw Error("internal: a running batch feed reordered");
  if (order.size() != order_.size()) throw Error("internal: a batch feed reordered to another length");
  order_ = std::move(order);
}

BatchFeed::Item BatchFeed::make(std::int64_t step) {
  Item item;
  try {
    Batch b = source_->batch(step, indices(step));
    at::Tensor images = b.images, labels = b.labels;
    // On the CPU the producer also converts the stored type; on a GPU the
    // consumer does, after the copy of the (smaller) stored type.
    if (settings_.device.is_cpu() && images.scalar_type() != at::kFloat) {
      images = images.to(at::kFloat).contiguous(at::MemoryFormat::ChannelsLast);
    }
    if (images.device() == settings_.device) {
      item.staged.tensors = {images, labels.to(settings_.device)};  // a device-memory cache
    } else {
      // Storage layout (NHWC) is the contiguous form of the model layout.
      item.staged = stager_->stage({images.dim() == 4 ? images.permute({0, 2, 3, 1}) : images, labels});
      if (images.dim() == 4) item.staged.tensors[0] = item.staged.tensors[0].permute({0, 3, 1, 2});
    }
  } catch (...) {
    item.error = std::current_exception();
  }
  return item;
}

void BatchFeed::produce() {
  c10::OptionalDeviceGuard on_device;
  if (settings_.device.is_cuda()) on_device.reset_device(settings_.device);
  for (;;) {
    std::int64_t step = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || static_cast<std::int64_t>(queue_.size()) < settings_.prefetch; });
      if (stopping_ || produced_ >= steps_) return;
      step = produced_++;
    }
    Item item = make(step);
    const bool failed = item.error != nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(item));
    }
    changed_.notify_all();
    if (failed) return;
  }
}

bool BatchFeed::next(at::Tensor& images, at::Tensor& labels) {
  if (step_ >= steps_) return false;
  Item item;
  if (settings_.prefetch == 0) {
    item = make(step_);
  } else {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return !queue_.empty(); });
    item = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    changed_.notify_all();
  }
  if (item.error) {
    step_ = steps_;
    std::rethrow_exception(item.error);
  }
  DeviceStager::wait(item.staged);
  images = item.staged.tensors.at(0);
  labels = item.staged.tensors.at(1);
  if (images.scalar_type() != at::kFloat) images = images.to(at::kFloat);
  resume_step_ = ++step_;
  return true;
}

std::vector<std::int64_t> BatchFeed::indices(std::int64_t step) const {
  std::int64_t begin = step * settings_.batch_size;
  std::int64_t end = std::min<std::int64_t>(begin + settings_.batch_size, static_cast<std::int64_t>(order_.size()));
  return std::vector<std::int64_t>(order_.begin() + begin, order_.begin() + end);
}

}  // namespace ld::core
