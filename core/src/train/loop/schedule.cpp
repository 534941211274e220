#include "loop/schedule.h"

#include <algorithm>

#include "loop/optimizer.h"

namespace ld::core {

Schedule::Schedule(const RunConfig& cfg, std::int64_t n_train, std::int64_t batch_size, std::int64_t world)
    : train_(cfg.train),
      n_(n_train),
      batch_(batch_size),
      world_(world),
      parts_(cfg.stream.parts),
      per_part_(cfg.stream.epochs_per_part(cfg.train.epochs)),
      epochs_(cfg.train.epochs),
      restart_(cfg.stream.parts > 1 && cfg.stream.lr == "restart") {}

std::int64_t Schedule::samples_after(std::int64_t part) const {
  const std::int64_t k = std::clamp<std::int64_t>(part + 1, 0, parts_);
  return n_ * k / parts_;
}

std::int64_t steps_for(std::int64_t samples, std::int64_t batch, std::int64_t world) {
  return samples / batch + (samples % batch >= 2 * world ? 1 : 0);
}

std::int64_t Schedule::steps_in(std::int64_t epoch) const { return steps_for(samples_in(epoch), batch_, world_); }

double Schedule::learning_rate(double epoch) const {
  if (!restart_) return core::learning_rate(train_, epoch);
  // Each arrival's epochs run the schedule from its start; the warm-up
  // (which scales the rate up from zero) only at the start of the run.
  const double start = static_cast<double>(part_of(static_cast<std::int64_t>(epoch)) * per_part_);
  TrainSettings t = train_;
  t.epochs = per_part_;
  t.warmup_epochs = 0;
  return core::learning_rate(t, epoch - start) * warmup_factor(train_, epoch);
}

std::int64_t Schedule::images_ahead(std::int64_t epoch, std::int64_t step) const {
  std::int64_t images = std::max<std::int64_t>(0, samples_in(epoch) - step * batch_);
  for (std::int64_t e = epoch + 1; e < epochs_; ++e) images += samples_in(e);
  return images;
}

std::int64_t Schedule::samples_arriving_after(std::int64_t epoch) const {
  return samples_after(parts_ - 1) - samples_in(epoch);
}

}  // namespace ld::core
