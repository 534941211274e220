#pragma once
// dataset.classes: a data set restricted to some of its classes, and the one
// place a run, `ldrop cache plan`, `ldrop data bench` and `ldrop export` open
// the configured data set.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "learndrop/dataset.h"

namespace ld::core {

class PluginHost;
struct RunConfig;

/// The samples of `inner` whose label is in `classes`, relabelled by their
/// position in that list (classes [5, 6, 7] make labels 5, 6, 7 into 0, 1, 2),
/// in the inner data set's order. Transforms, augmentation seeds and shift/
/// flip descriptions are the inner data set's, sample for sample.
///
/// Example:
/// ```
/// auto five = std::make_shared<ClassSubset>(cifar, std::vector<std::int64_t>{5, 6, 7, 8, 9});
/// five->num_classes();  // 5
/// ```
class ClassSubset final : public Dataset {
 public:
  /// Throws ld::Error naming dataset.classes when a class is not one of
  /// `inner`'s labels, is listed twice, or has no training sample.
  ClassSubset(std::shared_ptr<Dataset> inner, std::vector<std::int64_t> classes);

  std::int64_t size(Split split) const override;
  std::int64_t num_classes() const override { return static_cast<std::int64_t>(classes_.size()); }
  std::vector<std::int64_t> sample_shape() const override { return inner_->sample_shape(); }
  Batch get_batch(Split split, const std::vector<std::int64_t>& indices, std::uint64_t augment_seed) const override;
  bool random_train_transform() const override { return inner_->random_train_transform(); }
  bool shift_flip(ShiftFlip& transform) const override { return inner_->shift_flip(transform); }
  Batch get_untransformed(const std::vector<std::int64_t>& indices, bool mirrored) const override;
  std::string describe() const override;
  std::vector<std::int64_t> labels(Split split) const override;
  std::vector<std::string> class_names() const override;

  /// The inner data set's labels, in the order of dataset.classes.
  const std::vector<std::int64_t>& classes() const { return classes_; }

 private:
  std::vector<std::int64_t> inner_indices(Split split, const std::vector<std::int64_t>& indices) const;
  Batch relabel(Batch b) const;

  std::shared_ptr<Dataset> inner_;
  std::vector<std::int64_t> classes_;
  std::vector<std::int64_t> new_label_;              ///< inner label -> position in classes_, -1 if left out
  std::vector<std::int64_t> index_[2];               ///< subset index -> inner index, per split
  std::vector<std::int64_t> labels_[2];              ///< subset labels, per split
};

/// Parses dataset.classes as written ("5,6,7" or "" for every class):
/// distinct non-negative integers. Throws ld::Error naming `where`.
std::vector<std::int64_t> parse_class_list(const std::string& text, const std::string& where);

/// The data set of `cfg`: its plugin created by `host` with the run's seed
/// and LEARNDROP_DATA, restricted to dataset.classes when set.
std::shared_ptr<Dataset> open_dataset(const RunConfig& cfg, const PluginHost& host);

/// A stream's arrival order of the training samples for stream.order
/// `classes`: every sample of the first class (in `labels`' order of class
/// labels 0, 1, ...), then the second, ...; within a class, shuffled by
/// `seed`. The parts of a stream then bring new classes (class-incremental).
std::vector<std::int64_t> class_incremental_order(const std::vector<std::int64_t>& labels, std::uint64_t seed);

}  // namespace ld::core
