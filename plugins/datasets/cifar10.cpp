// Dataset plugin `cifar10`: CIFAR-10's binary version (data_batch_1..5.bin,
// test_batch.bin, batches.meta.txt), from its folder or straight from the
// distributed cifar-10-binary.tar.gz (read with libarchive).

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <ATen/ATen.h>
#include <archive.h>
#include <archive_entry.h>
#include <tbb/parallel_for.h>

#include "learndrop/sdk.h"

namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kSide = 32;
constexpr std::int64_t kPixels = 3 * kSide * kSide;
constexpr std::int64_t kRecord = 1 + kPixels;
const float kMean[3] = {0.4914f, 0.4822f, 0.4465f};
const float kStd[3] = {0.2470f, 0.2435f, 0.2616f};

struct CifarOptions {
  std::string root;
  std::string batches;
  std::int64_t train_limit = 0;
  std::int64_t test_limit = 0;
  bool normalize = true;
  std::string augment;
};

// The keys, each with the member it sets (the manifest and the factory both use it).
const ld::OptionTable<CifarOptions>& options_table() {
  static const auto table = [] {
    const auto limits = ld::sample_limit_keys();
    return ld::OptionTable<CifarOptions>()
        .add(ld::ConfigKey("root", ld::ValueType::kPath, "",
                           "cifar-10-batches-bin/, its parent, or cifar-10-binary.tar.gz; default "
                           "$LEARNDROP_DATA/cifar10"),
             &CifarOptions::root)
        .add(limits[0], &CifarOptions::train_limit)
        .add(limits[1], &CifarOptions::test_limit)
        .add(ld::ConfigKey("batches", ld::ValueType::kString, "all",
                           "training batches to use: all (every data_batch_N.bin present) or a list such as 1,2"),
             &CifarOptions::batches)
        .add(ld::ConfigKey("normalize", ld::ValueType::kBool, "true",
                           "per-channel mean/std of CIFAR-10 (0.4914, 0.4822, 0.4465 / 0.2470, 0.2435, 0.2616)"),
             &CifarOptions::normalize)
        .add(ld::ConfigKey("augment", ld::ValueType::kString, "none",
                           "none | flip (horizontal, p = 0.5) | crop_flip (random 32x32 crop of the 4-px padded "
                           "image, then flip)")
                 .one_of({"none", "flip", "crop_flip"}),
             &CifarOptions::augment);
  }();
  return table;
}

// The files of the binary version, by name, from a folder or a .tar.gz.
class Source {
 public:
  explicit Source(const fs::path& root) {
    if (fs::is_regular_file(root)) {
      read_tar(root);
      return;
    }
    if (!fs::is_directory(root)) throw ld::Error("dataset.root: " + root.string() + " does not exist");
    folder_ = fs::is_directory(root / "cifar-10-batches-bin") ? root / "cifar-10-batches-bin" : root;
  }

  /// The bytes of `name` (e.g. "data_batch_1.bin"); `where` names it in errors.
  std::string read(const std::string& name, std::string& where) const {
    if (folder_.empty()) {
      where = tar_.string() + ":" + name;
      auto it = members_.find(name);
      if (it == members_.end()) throw ld::Error("dataset cifar10: " + tar_.string() + " has no " + name);
      return it->second;
    }
    fs::path p = folder_ / name;
    where = p.string();
    std::ifstream in(p, std::ios::binary);
    if (!in) throw ld::Error("dataset cifar10: " + folder_.string() + " has no " + name);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  bool has(const std::string& name) const {
    return folder_.empty() ? members_.count(name) != 0 : fs::is_regular_file(folder_ / name);
  }

  std::string describe() const { return folder_.empty() ? tar_.string() : folder_.string(); }

 private:
  void read_tar(const fs::path& file) {
    tar_ = file;
    struct archive* a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, file.c_str(), 1 << 16) != ARCHIVE_OK) {
      std::string err = archive_error_string(a) ? archive_error_string(a) : "unknown error";
      archive_read_free(a);
      throw ld::Error("dataset cifar10: cannot read " + file.string() + " as a tar archive: " + err);
    }
    struct archive_entry* entry = nullptr;
    int rc = ARCHIVE_OK;
    while ((rc = archive_read_next_header(a, &entry)) == ARCHIVE_OK) {
      std::string name = fs::path(archive_entry_pathname(entry)).filename().string();
      std::string data(static_cast<std::size_t>(archive_entry_size(entry)), '\0');
      la_ssize_t got = data.empty() ? 0 : archive_read_data(a, data.data(), data.size());
      if (got < 0 || static_cast<std::size_t>(got) != data.size()) {
        std::string err = archive_error_string(a) ? archive_error_string(a) : "short read";
        archive_read_free(a);
        throw ld::Error("dataset cifar10: " + file.string() + ": member " + name + " is truncated: " + err);
      }
      members_[name] = std::move(data);
    }
    std::string err = rc == ARCHIVE_EOF ? "" : (archive_error_string(a) ? archive_error_string(a) : "read error");
    archive_read_free(a);
    if (!err.empty()) throw ld::Error("dataset cifar10: " + file.string() + ": " + err);
  }

  fs::path folder_;
  fs::path tar_;
  std::map<std::string, std::string> members_;
};

// Appends the records of one batch file to images (uint8 CHW) and labels.
void parse_batch(const std::string& bytes, const std::string& where, std::vector<std::uint8_t>& images,
                 std::vector<std::int64_t>& labels) {
  if (bytes.empty() || bytes.size() % kRecord != 0) {
    throw ld::Error("dataset cifar10: " + where + " is truncated or not a CIFAR-10 batch: " +
                    std::to_string(bytes.size()) + " bytes is not a whole number of " + std::to_string(kRecord) +
                    "-byte records (the last record starts at byte offset " +
                    std::to_string(bytes.size() / kRecord * kRecord) + ")");
  }
  for (std::size_t off = 0; off < bytes.size(); off += kRecord) {
    auto label = static_cast<unsigned char>(bytes[off]);
    if (label > 9) {
      throw ld::Error("dataset cifar10: " + where + ": label " + std::to_string(label) + " at byte offset " +
                      std::to_string(off) + " is not a class in [0, 9]");
    }
    labels.push_back(label);
    images.insert(images.end(), bytes.begin() + static_cast<std::ptrdiff_t>(off + 1),
                  bytes.begin() + static_cast<std::ptrdiff_t>(off + kRecord));
  }
}

std::vector<int> parse_batch_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.size() != 1 || item[0] < '1' || item[0] > '5') {
      throw ld::Error("dataset.batches: expected 'all' or a comma-separated list of training batches 1-5, got '" +
                      text + "'");
    }
    if (std::find(out.begin(), out.end(), item[0] - '0') != out.end()) {
      throw ld::Error("dataset.batches: batch " + item + " is listed twice in '" + text +
                      "' (its images would be trained on twice per epoch)");
    }
    out.push_back(item[0] - '0');
  }
  if (out.empty()) throw ld::Error("dataset.batches: no training batch chosen");
  return out;
}

class Cifar10Dataset : public ld::Dataset {
 public:
  Cifar10Dataset(const CifarOptions& o, const ld::DatasetContext& ctx) : o_(o) {
    fs::path root = ld::dataset_root(o.root, ctx, "cifar10", "cifar-10-batches-bin/ or cifar-10-binary.tar.gz");
    Source src(root);
    source_ = src.describe();
    std::string where;
    std::vector<int> batches;
    if (o.batches == "all") {
      for (int b = 1; b <= 5; ++b) {
        if (src.has("data_batch_" + std::to_string(b) + ".bin")) batches.push_back(b);
      }
      if (batches.empty()) throw ld::Error("dataset cifar10: " + source_ + " has no data_batch_N.bin");
    } else {
      batches = parse_batch_list(o.batches);
    }
    for (int b : batches) {
      parse_batch(src.read("data_batch_" + std::to_string(b) + ".bin", where), where, train_images_, train_labels_);
    }
    parse_batch(src.read("test_batch.bin", where), where, test_images_, test_labels_);
    if (src.has("batches.meta.txt")) {
      std::stringstream names(src.read("batches.meta.txt", where));
      std::string line;
      while (std::getline(names, line)) {
        if (!line.empty()) class_names_.push_back(line);
      }
    }
    train_count_ = ld::limited_count(static_cast<std::int64_t>(train_labels_.size()), o.train_limit);
    test_count_ = ld::limited_count(static_cast<std::int64_t>(test_labels_.size()), o.test_limit);
  }

  std::int64_t size(ld::Split s) const override { return s == ld::Split::kTrain ? train_count_ : test_count_; }
  std::int64_t num_classes() const override { return 10; }
  std::vector<std::int64_t> sample_shape() const override { return {3, kSide, kSide}; }
  bool random_train_transform() const override { return o_.augment != "none"; }

  ld::Batch get_batch(ld::Split s, const std::vector<std::int64_t>& indices, std::uint64_t seed) const override {
    const bool augment = s == ld::Split::kTrain && o_.augment != "none";
    return gather(s, indices, [&](std::int64_t i) { return augment ? draw(seed, i) : Augmentation{}; });
  }

  bool shift_flip(ld::ShiftFlip& t) const override {
    if (o_.augment == "none") return false;
    t.max_shift = o_.augment == "crop_flip" ? kPad : 0;
    t.flip = true;
    t.fill.clear();
    for (int c = 0; c < 3; ++c) t.fill.push_back(o_.normalize ? -kMean[c] / kStd[c] : 0.0f);
    return true;
  }

  ld::Batch get_untransformed(const std::vector<std::int64_t>& indices, bool mirrored) const override {
    return gather(ld::Split::kTrain, indices, [&](std::int64_t) { return Augmentation{0, 0, mirrored}; });
  }

  std::vector<std::int64_t> labels(ld::Split s) const override {
    const auto& all = s == ld::Split::kTrain ? train_labels_ : test_labels_;
    return {all.begin(), all.begin() + size(s)};
  }

  std::vector<std::string> class_names() const override { return class_names_; }

  std::string describe() const override {
    return "CIFAR-10 binary at " + source_ + " (" + std::to_string(train_count_) + " train / " +
           std::to_string(test_count_) + " test" + (o_.augment != "none" ? ", augment " + o_.augment : "") + ")";
  }

  /// One sample's random transform: a shift of the 32x32 window inside the
  /// 4-pixel zero-padded image (crop) and a horizontal flip.
  struct Augmentation {
    int dy = 0, dx = 0;
    bool flip = false;
  };

  /// The transform of sample `index` under `seed` (deterministic).
  Augmentation draw(std::uint64_t seed, std::int64_t index) const {
    std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(index) + 1);
    Augmentation a;
    if (o_.augment == "crop_flip") {
      a.dy = static_cast<int>(rng() % (2 * kPad + 1)) - kPad;
      a.dx = static_cast<int>(rng() % (2 * kPad + 1)) - kPad;
    }
    a.flip = (rng() & 1) != 0;
    return a;
  }

 private:
  static constexpr int kPad = 4;

  // Samples `indices` of `split`, sample i transformed by transform(i).
  template <typename Transform>
  ld::Batch gather(ld::Split s, const std::vector<std::int64_t>& indices, const Transform& transform) const {
    const bool train = s == ld::Split::kTrain;
    const auto& images = train ? train_images_ : test_images_;
    const auto& labels = train ? train_labels_ : test_labels_;
    const std::int64_t n = size(s);
    const auto b = static_cast<std::int64_t>(indices.size());
    at::Tensor x = at::empty({b, 3, kSide, kSide});
    at::Tensor y = at::empty({b}, at::kLong);
    float* out = x.data_ptr<float>();
    std::int64_t* lab = y.data_ptr<std::int64_t>();
    for (std::int64_t r = 0; r < b; ++r) {
      std::int64_t i = indices[static_cast<std::size_t>(r)];
      if (i < 0 || i >= n) {
        throw ld::Error("dataset cifar10: index " + std::to_string(i) + " out of range [0, " + std::to_string(n) + ")");
      }
      lab[r] = labels[static_cast<std::size_t>(i)];
    }
    tbb::parallel_for(std::int64_t{0}, b, [&](std::int64_t r) {
      std::int64_t i = indices[static_cast<std::size_t>(r)];
      write_sample(&images[static_cast<std::size_t>(i * kPixels)], out + r * kPixels, transform(i));
    });
    return {x, y};
  }

  void write_sample(const std::uint8_t* src, float* dst, const Augmentation& a) const {
    for (int c = 0; c < 3; ++c) {
      const float scale = o_.normalize ? 1.0f / (255.0f * kStd[c]) : 1.0f / 255.0f;
      const float shift = o_.normalize ? kMean[c] / kStd[c] : 0.0f;
      for (int y = 0; y < kSide; ++y) {
        for (int x = 0; x < kSide; ++x) {
          int sy = y + a.dy;
          int sx = (a.flip ? kSide - 1 - x : x) + a.dx;
          bool inside = sy >= 0 && sy < kSide && sx >= 0 && sx < kSide;
          float v = inside ? src[(c * kSide + sy) * kSide + sx] * scale : 0.0f;
          // Padding is black in pixel space, i.e. -mean/std after normalisation.
          dst[(c * kSide + y) * kSide + x] = v - shift;
        }
      }
    }
  }

  CifarOptions o_;
  std::string source_;
  std::vector<std::uint8_t> train_images_, test_images_;
  std::vector<std::int64_t> train_labels_, test_labels_;
  std::vector<std::string> class_names_;
  std::int64_t train_count_ = 0, test_count_ = 0;
};

ld::Manifest manifest() {
  ld::Manifest m;
  m.kind = ld::PluginKind::kDataset;
  m.name = "cifar10";
  m.version = "1.0.0";
  m.description = "CIFAR-10 binary version, from its folder or cifar-10-binary.tar.gz";
  m.keys = options_table().keys();
  return m;
}

void register_plugins(ld::Registrar& r) {
  r.add_dataset(manifest(), [](const ld::Options& o, const ld::DatasetContext& ctx) {
    return std::make_unique<Cifar10Dataset>(options_table().read(o), ctx);
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
