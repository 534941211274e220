// Dataset plugin `mnist`: the idx format of MNIST and Fashion-MNIST (raw or
// gzip-compressed files), held in memory as normalised float tensors.

#include <cstdlib>
#include <filesystem>

#include <ATen/ATen.h>
#include <zlib.h>

#include "learndrop/sdk.h"

namespace {

namespace fs = std::filesystem;

struct MnistOptions {
  std::string root;
  std::int64_t train_limit = 0;
  std::int64_t test_limit = 0;
  bool normalize = true;
};

// The keys, each with the member it sets (the manifest and the factory both use it).
const ld::OptionTable<MnistOptions>& options_table() {
  static const auto table = [] {
    const auto limits = ld::sample_limit_keys();
    return ld::OptionTable<MnistOptions>()
        .add(ld::ConfigKey(
                 "root", ld::ValueType::kPath, "",
                 "folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]; default $LEARNDROP_DATA/mnist"),
             &MnistOptions::root)
        .add(limits[0], &MnistOptions::train_limit)
        .add(limits[1], &MnistOptions::test_limit)
        .add(ld::ConfigKey("normalize", ld::ValueType::kBool, "true",
                           "subtract the training pixels' mean and divide by their standard deviation"),
             &MnistOptions::normalize);
  }();
  return table;
}

// Reads an idx file (raw or .gz) through zlib, which passes raw files through.
class IdxReader {
 public:
  explicit IdxReader(fs::path path) : path_(std::move(path)) {
    file_ = gzopen(path_.c_str(), "rb");
    if (file_ == nullptr) throw ld::Error("dataset mnist: cannot open " + path_.string());
  }
  ~IdxReader() { gzclose(file_); }
  IdxReader(const IdxReader&) = delete;
  IdxReader& operator=(const IdxReader&) = delete;

  std::uint32_t read_u32(const char* what) {
    unsigned char b[4];
    read(b, 4, what);
    return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
  }

  void read(void* out, std::size_t bytes, const char* what) {
    std::size_t done = 0;
    auto* dst = static_cast<unsigned char*>(out);
    while (done < bytes) {
      unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(bytes - done, 1u << 30));
      int got = gzread(file_, dst + done, chunk);
      if (got < 0) {
        int err = 0;
        throw ld::Error("dataset mnist: " + path_.string() + ": read error at byte offset " +
                        std::to_string(offset_ + done) + ": " + gzerror(file_, &err));
      }
      if (got == 0) {
        throw ld::Error("dataset mnist: " + path_.string() + " is truncated: expected " + std::to_string(bytes) +
                        " bytes of " + what + " at byte offset " + std::to_string(offset_) + ", found " +
                        std::to_string(done));
      }
      done += static_cast<std::size_t>(got);
    }
    offset_ += bytes;
  }

  /// Throws when bytes remain after the data the header announced.
  void expect_end() {
    unsigned char extra;
    if (gzread(file_, &extra, 1) == 1) {
      throw ld::Error("dataset mnist: " + path_.string() +
                      " has more data than its header announces (extra bytes at offset " + std::to_string(offset_) +
                      ")");
    }
  }

  std::size_t offset() const { return offset_; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  gzFile file_ = nullptr;
  std::size_t offset_ = 0;
};

fs::path find_file(const fs::path& root, const std::string& stem) {
  for (const char* suffix : {"", ".gz"}) {
    fs::path p = root / (stem + suffix);
    if (fs::is_regular_file(p)) return p;
  }
  throw ld::Error("dataset mnist: " + root.string() + " has no " + stem + " or " + stem + ".gz");
}

// Loads images [N, 1, H, W] uint8 and labels [N] int64.
std::pair<at::Tensor, at::Tensor> load_split(const fs::path& root, const std::string& prefix, std::int64_t limit) {
  IdxReader images(find_file(root, prefix + "-images-idx3-ubyte"));
  std::uint32_t magic = images.read_u32("magic number");
  if (magic != 0x00000803) {
    throw ld::Error("dataset mnist: " + images.path().string() +
                    ": bad magic number at byte offset 0: expected 0x00000803 (idx3 ubyte images), found 0x" + [&] {
                      char b[9];
                      std::snprintf(b, sizeof b, "%08x", magic);
                      return std::string(b);
                    }());
  }
  std::int64_t n = images.read_u32("image count");
  std::int64_t h = images.read_u32("row count");
  std::int64_t w = images.read_u32("column count");
  if (h == 0 || w == 0 || h > 4096 || w > 4096) {
    throw ld::Error("dataset mnist: " + images.path().string() + ": implausible image size " + std::to_string(h) + "x" +
                    std::to_string(w) + " in the header (bytes 8-15)");
  }
  IdxReader labels(find_file(root, prefix + "-labels-idx1-ubyte"));
  std::uint32_t lmagic = labels.read_u32("magic number");
  if (lmagic != 0x00000801) {
    throw ld::Error("dataset mnist: " + labels.path().string() +
                    ": bad magic number at byte offset 0: expected 0x00000801 (idx1 ubyte labels), found 0x" + [&] {
                      char b[9];
                      std::snprintf(b, sizeof b, "%08x", lmagic);
                      return std::string(b);
                    }());
  }
  std::int64_t nl = labels.read_u32("label count");
  if (nl != n) {
    throw ld::Error("dataset mnist: " + labels.path().string() + " announces " + std::to_string(nl) + " labels but " +
                    images.path().string() + " announces " + std::to_string(n) + " images");
  }
  at::Tensor img = at::empty({n, 1, h, w}, at::kByte);
  images.read(img.data_ptr<std::uint8_t>(), static_cast<std::size_t>(n * h * w), "pixels");
  images.expect_end();
  at::Tensor lab = at::empty({n}, at::kByte);
  labels.read(lab.data_ptr<std::uint8_t>(), static_cast<std::size_t>(n), "labels");
  labels.expect_end();
  const std::int64_t used = ld::limited_count(n, limit);
  if (used < n) {
    img = img.narrow(0, 0, used).clone();
    lab = lab.narrow(0, 0, used).clone();
  }
  return {img, lab.to(at::kLong)};
}

class MnistDataset : public ld::Dataset {
 public:
  MnistDataset(const MnistOptions& o, const ld::DatasetContext& ctx) {
    root_ =
        ld::dataset_root(o.root, ctx, "mnist", "a folder with train-images-idx3-ubyte[.gz] and the other idx files");
    if (!fs::is_directory(root_)) throw ld::Error("dataset.root: folder " + root_.string() + " does not exist");
    auto [train_img, train_lab] = load_split(root_, "train", o.train_limit);
    auto [test_img, test_lab] = load_split(root_, "t10k", o.test_limit);
    if (train_img.sizes().slice(1) != test_img.sizes().slice(1)) {
      throw ld::Error("dataset mnist: train and test images in " + root_.string() + " differ in size");
    }
    std::int64_t max_label = std::max(train_lab.max().item<std::int64_t>(), test_lab.max().item<std::int64_t>());
    num_classes_ = max_label + 1;
    // The classes are 0..max. When most of them have no sample at all, a label
    // byte is corrupt (one 200 in MNIST built a 201-class model). A few empty
    // classes are allowed: train_limit/test_limit may leave some out.
    const at::Tensor counts = at::bincount(at::cat({train_lab, test_lab}).to(at::kLong), {}, num_classes_);
    const std::int64_t empty = counts.eq(0).sum().item<std::int64_t>();
    if (2 * empty > num_classes_) {
      throw ld::Error("dataset mnist: the labels in " + root_.string() + " go up to " + std::to_string(max_label) +
                      ", but " + std::to_string(empty) + " of the classes 0.." + std::to_string(max_label) +
                      " have no sample: a label file is corrupt or not an idx label file");
    }
    at::Tensor train_f = train_img.to(at::kFloat).div_(255.0);
    at::Tensor test_f = test_img.to(at::kFloat).div_(255.0);
    if (o.normalize) {
      // Mean and standard deviation of the training pixels (MNIST: 0.1307, 0.3081).
      double mean = train_f.mean().item<double>();
      double std = train_f.std().item<double>();
      train_f.sub_(mean).div_(std);
      test_f.sub_(mean).div_(std);
    }
    images_[0] = train_f;
    images_[1] = test_f;
    labels_[0] = train_lab;
    labels_[1] = test_lab;
  }

  std::int64_t size(ld::Split s) const override { return labels_[index(s)].size(0); }
  std::int64_t num_classes() const override { return num_classes_; }
  std::vector<std::int64_t> sample_shape() const override {
    auto sizes = images_[0].sizes();
    return {sizes[1], sizes[2], sizes[3]};
  }
  ld::Batch get_batch(ld::Split s, const std::vector<std::int64_t>& indices, std::uint64_t) const override {
    at::Tensor idx = at::tensor(indices, at::kLong);
    std::int64_t n = size(s);
    for (auto i : indices) {
      if (i < 0 || i >= n)
        throw ld::Error("dataset mnist: index " + std::to_string(i) + " out of range [0, " + std::to_string(n) + ")");
    }
    return {images_[index(s)].index_select(0, idx), labels_[index(s)].index_select(0, idx)};
  }
  std::vector<std::int64_t> labels(ld::Split s) const override {
    const at::Tensor l = labels_[index(s)].to(at::kLong).contiguous();
    return {l.data_ptr<std::int64_t>(), l.data_ptr<std::int64_t>() + l.numel()};
  }

  std::string describe() const override {
    return "idx at " + root_.string() + " (" + std::to_string(size(ld::Split::kTrain)) + " train / " +
           std::to_string(size(ld::Split::kTest)) + " test)";
  }

 private:
  static int index(ld::Split s) { return s == ld::Split::kTrain ? 0 : 1; }
  fs::path root_;
  at::Tensor images_[2];
  at::Tensor labels_[2];
  std::int64_t num_classes_ = 0;
};

ld::Manifest manifest() {
  ld::Manifest m;
  m.kind = ld::PluginKind::kDataset;
  m.name = "mnist";
  m.version = "1.0.0";
  m.description = "MNIST, Fashion-MNIST or any idx-format image set (raw or .gz)";
  m.keys = options_table().keys();
  return m;
}

void register_plugins(ld::Registrar& r) {
  r.add_dataset(manifest(), [](const ld::Options& o, const ld::DatasetContext& ctx) {
    return std::make_unique<MnistDataset>(options_table().read(o), ctx);
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
