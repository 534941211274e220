#pragma once

#include <cstdint>
#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "learndrop/error.h"
#include "learndrop/export.h"
#include "learndrop/manifest.h"

namespace ld {

/// Which part of a dataset.
enum class Split { kTrain, kTest };

/// Returns "train" or "test".
inline const char* to_string(Split split) { return split == Split::kTrain ? "train" : "test"; }

/// What a dataset plugin learns from the host when it is created.
struct DatasetContext {
  /// Value of the `LEARNDROP_DATA` environment variable ("" when unset): the
  /// folder under which datasets live by default (`$LEARNDROP_DATA/<name>`).
  std::string data_root;
  std::uint64_t seed = 0;
};

/// The context the host gives dataset plugins: `LEARNDROP_DATA` from the
/// environment and the run seed.
inline DatasetContext dataset_context_from_environment(std::uint64_t seed) {
  DatasetContext ctx;
  if (const char* root = std::getenv("LEARNDROP_DATA")) ctx.data_root = root;
  ctx.seed = seed;
  return ctx;
}

/// Where a dataset's files are: `root` when the config sets it, otherwise
/// `$LEARNDROP_DATA/<folder>`. `expected` says what root should point at, for
/// the error when neither is set.
inline std::string dataset_root(const std::string& root, const DatasetContext& ctx, const std::string& folder,
                                const std::string& expected) {
  if (!root.empty()) return root;
  if (ctx.data_root.empty()) {
    throw Error("dataset.root is not set and LEARNDROP_DATA is unset: point dataset.root at " + expected);
  }
  return ctx.data_root + "/" + folder;
}

/// The `train_limit` and `test_limit` keys every dataset plugin accepts.
inline std::vector<ConfigKey> sample_limit_keys() {
  return {
      ConfigKey("train_limit", ValueType::kInt, "0", "use only the first N training samples (0 = all)").range(0, 1e12),
      ConfigKey("test_limit", ValueType::kInt, "0", "use only the first N test samples (0 = all)").range(0, 1e12)};
}

/// The number of samples used of `available` under a `limit` key (0 = all).
inline std::int64_t limited_count(std::int64_t available, std::int64_t limit) {
  return limit > 0 && limit < available ? limit : available;
}

/// A batch of samples: `images` is float32 [B, C, H, W] (normalised),
/// `labels` is int64 [B].
struct Batch {
  at::Tensor images;
  at::Tensor labels;
};

/// A random training transform made only of a translation and a horizontal
/// mirror, which the host can therefore reproduce on cached feature maps
/// (`cache.augment: feature`): convolutional feature maps shift with their
/// input, by the input shift divided by the map's stride.
///
/// The transform of one sample: an integer shift (dy, dx), each uniform in
/// [-max_shift, max_shift], such that output pixel (y, x) is input pixel
/// (y + dy, x + dx) and `fill` (per channel, after normalisation) where that
/// is outside the image; and, when `flip` is set, a horizontal mirror with
/// probability 1/2 (of the image before the shift). CIFAR's "4-pixel padded
/// random crop + flip" is exactly this with max_shift 4.
struct ShiftFlip {
  std::int64_t max_shift = 0;
  std::vector<float> fill;  ///< One value per channel.
  bool flip = false;
};

/// A labelled image dataset with a train and a test split.
///
/// Implementations must be safe to call `get_batch` from several threads at
/// once, and deterministic: the same indices and `augment_seed` give the same
/// batch.
class LEARNDROP_VISIBLE Dataset {
 public:
  virtual ~Dataset() = default;

  /// Number of samples in `split`.
  virtual std::int64_t size(Split split) const = 0;

  /// Number of classes; labels are in [0, num_classes).
  virtual std::int64_t num_classes() const = 0;

  /// Shape of one sample as [C, H, W].
  virtual std::vector<std::int64_t> sample_shape() const = 0;

  /// Samples `indices` of `split`. Random training transforms (augmentation)
  /// draw from `augment_seed` only, so a batch is reproducible.
  virtual Batch get_batch(Split split, const std::vector<std::int64_t>& indices, std::uint64_t augment_seed) const = 0;

  /// Whether the training transform is random. A feature cache built from
  /// such a dataset would freeze one draw of the augmentation.
  virtual bool random_train_transform() const { return false; }

  /// The training transform as a ShiftFlip, when it is exactly one (and
  /// random); false otherwise. A dataset that returns true must implement
  /// get_untransformed.
  virtual bool shift_flip(ShiftFlip& /*transform*/) const { return false; }

  /// Training samples `indices` without their random transform, mirrored
  /// horizontally when `mirrored` (the views from which the host shifts
  /// cached feature maps).
  virtual Batch get_untransformed(const std::vector<std::int64_t>& /*indices*/, bool /*mirrored*/) const {
    throw Error("this dataset has no untransformed training samples (it declares no shift/flip transform)");
  }

  /// One line for logs, e.g. "Fashion-MNIST idx at /usr/share/... (60000/10000)".
  virtual std::string describe() const { return ""; }

  /// The label of every sample of `split`, in index order. The host reads
  /// them to keep a subset of the classes (`dataset.classes`) and to order a
  /// class-incremental stream. This default reads them through get_batch,
  /// which decodes every image once: a dataset that knows its labels
  /// without decoding should override it.
  virtual std::vector<std::int64_t> labels(Split split) const {
    std::vector<std::int64_t> out;
    const std::int64_t n = size(split);
    for (std::int64_t begin = 0; begin < n; begin += 256) {
      std::vector<std::int64_t> idx;
      for (std::int64_t i = begin; i < std::min(n, begin + 256); ++i) idx.push_back(i);
      const at::Tensor l = get_batch(split, idx, 0).labels.contiguous();
      if (l.scalar_type() != at::kLong) throw Error("labels: get_batch returned labels that are not int64");
      out.insert(out.end(), l.data_ptr<std::int64_t>(), l.data_ptr<std::int64_t>() + l.numel());
    }
    return out;
  }

  /// The name of each class, indexed by label ("airplane", ...); empty when
  /// the dataset does not know them.
  virtual std::vector<std::string> class_names() const { return {}; }
};

}  // namespace ld
