#include "learndrop/core/class_subset.h"

#include <algorithm>
#include <numeric>

#include <ATen/ATen.h>

#include "learndrop/core/config.h"
#include "learndrop/core/plugin_host.h"
#include "learndrop/core/seeds.h"
#include "learndrop/core/text.h"
#include "learndrop/error.h"

namespace ld::core {

namespace {
int slot(Split s) { return s == Split::kTrain ? 0 : 1; }
}  // namespace

std::vector<std::int64_t> parse_class_list(const std::string& text, const std::string& where) {
  std::vector<std::int64_t> out;
  if (text.empty()) return out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    std::string item = text.substr(start, comma - start);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    std::size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 0) {
      throw Error(where + ": expected a list of class labels such as [5, 6, 7, 8, 9], got '" + text + "' ('" +
                  item + "' is not a label)");
    }
    if (std::find(out.begin(), out.end(), v) != out.end()) {
      throw Error(where + ": class " + item + " is listed twice in '" + text + "'");
    }
    out.push_back(v);
    start = comma + 1;
  }
  return out;
}

ClassSubset::ClassSubset(std::shared_ptr<Dataset> inner, std::vector<std::int64_t> classes)
    : inner_(std::move(inner)), classes_(std::move(classes)) {
  const std::int64_t n = inner_->num_classes();
  if (classes_.empty()) throw Error("dataset.classes: an empty list keeps no sample");
  new_label_.assign(static_cast<std::size_t>(n), -1);
  for (std::size_t k = 0; k < classes_.size(); ++k) {
    const std::int64_t c = classes_[k];
    if (c < 0 || c >= n) {
      throw Error("dataset.classes: class " + std::to_string(c) + " is not a label of this data set (its labels are 0.." +
                  std::to_string(n - 1) + ")");
    }
    if (new_label_[static_cast<std::size_t>(c)] >= 0) {
      throw Error("dataset.classes: class " + std::to_string(c) + " is listed twice");
    }
    new_label_[static_cast<std::size_t>(c)] = static_cast<std::int64_t>(k);
  }
  for (Split split : {Split::kTrain, Split::kTest}) {
    const std::vector<std::int64_t> all = inner_->labels(split);
    if (static_cast<std::int64_t>(all.size()) != inner_->size(split)) {
      throw Error("dataset.classes: the data set reports " + std::to_string(all.size()) + " " + to_string(split) +
                  " labels for " + std::to_string(inner_->size(split)) + " samples");
    }
    for (std::size_t i = 0; i < all.size(); ++i) {
      const std::int64_t l = all[i];
      if (l < 0 || l >= n) {
        throw Error("dataset.classes: " + std::string(to_string(split)) + " sample " + std::to_string(i) +
                    " has label " + std::to_string(l) + ", outside 0.." + std::to_string(n - 1));
      }
      if (new_label_[static_cast<std::size_t>(l)] < 0) continue;
      index_[slot(split)].push_back(static_cast<std::int64_t>(i));
      labels_[slot(split)].push_back(new_label_[static_cast<std::size_t>(l)]);
    }
  }
  if (index_[0].empty()) throw Error("dataset.classes: no training sample has one of these labels");
}

std::int64_t ClassSubset::size(Split split) const { return static_cast<std::int64_t>(index_[slot(split)].size()); }

std::vector<std::int64_t> ClassSubset::inner_indices(Split split, const std::vector<std::int64_t>& indices) const {
  const auto& map = index_[slot(split)];
  std::vector<std::int64_t> out(indices.size());
  for (std::size_t k = 0; k < indices.size(); ++k) {
    const std::int64_t i = indices[k];
    if (i < 0 || i >= static_cast<std::int64_t>(map.size())) {
      throw Error("dataset.classes: " + std::string(to_string(split)) + " index " + std::to_string(i) +
                  " out of range [0, " + std::to_string(map.size()) + ")");
    }
    out[k] = map[static_cast<std::size_t>(i)];
  }
  return out;
}

Batch ClassSubset::relabel(Batch b) const {
  const at::Tensor lookup = at::tensor(new_label_, at::kLong);
  b.labels = lookup.index_select(0, b.labels.to(at::kLong));
  return b;
}

Batch ClassSubset::get_batch(Split split, const std::vector<std::int64_t>& indices, std::uint64_t augment_seed) const {
  return relabel(inner_->get_batch(split, inner_indices(split, indices), augment_seed));
}

Batch ClassSubset::get_untransformed(const std::vector<std::int64_t>& indices, bool mirrored) const {
  return relabel(inner_->get_untransformed(inner_indices(Split::kTrain, indices), mirrored));
}

std::vector<std::int64_t> ClassSubset::labels(Split split) const { return labels_[slot(split)]; }

std::vector<std::string> ClassSubset::class_names() const {
  const std::vector<std::string> all = inner_->class_names();
  if (all.size() != new_label_.size()) return {};
  std::vector<std::string> out;
  for (std::int64_t c : classes_) out.push_back(all[static_cast<std::size_t>(c)]);
  return out;
}

std::string ClassSubset::describe() const {
  std::string list;
  const std::vector<std::string> names = class_names();
  for (std::size_t k = 0; k < classes_.size(); ++k) {
    list += (k ? ", " : "") + std::to_string(classes_[k]) + (names.empty() ? "" : " " + names[k]);
  }
  return inner_->describe() + "; classes " + list + " (" + std::to_string(size(Split::kTrain)) + " train / " +
         std::to_string(size(Split::kTest)) + " test)";
}

std::shared_ptr<Dataset> open_dataset(const RunConfig& cfg, const PluginHost& host) {
  std::shared_ptr<Dataset> d =
      host.create_dataset(cfg.dataset.plugin, cfg.dataset.options, dataset_context_from_environment(cfg.seed));
  if (cfg.dataset_classes.empty()) return d;
  return std::make_shared<ClassSubset>(std::move(d), cfg.dataset_classes);
}

std::vector<std::int64_t> class_incremental_order(const std::vector<std::int64_t>& labels, std::uint64_t seed) {
  const auto n = static_cast<std::int64_t>(labels.size());
  std::vector<std::int64_t> order = epoch_order(n, mix_seed(seed, 0x636c6173736573ULL), 0);  // "classes"
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return labels[static_cast<std::size_t>(a)] < labels[static_cast<std::size_t>(b)];
  });
  return order;
}

}  // namespace ld::core
