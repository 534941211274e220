#pragma once
// A run's schedule: which samples it has at each epoch (all of them, or a
// stream's arrived parts), the steps of each epoch, the learning rate at any
// point, and the training still ahead (what the cost of a drop is weighed
// against). docs/online.md.

#include <cstdint>
#include <vector>

#include "learndrop/core/config.h"

namespace ld::core {

/// Optimizer steps of an epoch over `samples` samples in global batches of
/// `batch` over `world` ranks. A last batch of one sample per rank cannot
/// train batch norm, so it is left out of its epoch. The one place this is
/// computed (a run's full epoch, a stream's epochs).
std::int64_t steps_for(std::int64_t samples, std::int64_t batch, std::int64_t world);

class Schedule {
 public:
  /// `n_train` samples, global batches of `batch_size` over `world` ranks.
  Schedule(const RunConfig& cfg, std::int64_t n_train, std::int64_t batch_size, std::int64_t world = 1);

  bool stream() const { return parts_ > 1; }
  std::int64_t parts() const { return parts_; }

  /// The arrival whose epochs `epoch` belongs to (0-based).
  std::int64_t part_of(std::int64_t epoch) const { return epoch / per_part_; }
  /// Whether `epoch` is the last of its arrival (the test set is evaluated after it).
  bool last_of_part(std::int64_t epoch) const { return (epoch + 1) % per_part_ == 0; }
  /// Samples the run has once part `part` (0-based) has arrived:
  /// floor(n x (part + 1) / parts), so parts differ by at most one sample
  /// (256 in 5 parts: 51, 102, 153, 204, 256).
  std::int64_t samples_after(std::int64_t part) const;
  /// Samples the run trains on in `epoch`.
  std::int64_t samples_in(std::int64_t epoch) const { return samples_after(part_of(epoch)); }
  /// Optimizer steps of `epoch` (a last batch of one sample per rank is left
  /// out: it cannot train batch norm).
  std::int64_t steps_in(std::int64_t epoch) const;

  /// The learning rate at fractional epoch `epoch` (0-based): train's
  /// schedule over the whole run, or (stream.lr: restart) over each
  /// arrival's epochs, with the warm-up once at the start.
  double learning_rate(double epoch) const;

  /// Training images from step `step` of `epoch` to the end of the run.
  std::int64_t images_ahead(std::int64_t epoch, std::int64_t step) const;
  /// Samples that arrive after `epoch` (0 without a stream).
  std::int64_t samples_arriving_after(std::int64_t epoch) const;

 private:
  const TrainSettings& train_;
  std::int64_t n_ = 0, batch_ = 0, world_ = 1, parts_ = 1, per_part_ = 1, epochs_ = 0;
  bool restart_ = false;
};

}  // namespace ld::core
