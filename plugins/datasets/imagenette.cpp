// Dataset plugin `imagenette`: the imagenette2 tree (train/<wnid>/*.JPEG,
// val/<wnid>/*.JPEG, noisy_imagenette.csv), decoded with libjpeg-turbo.
//
// Each sample is decoded when asked (TBB-parallel over a batch), with the
// JPEG's DCT scaling when the crop is at least twice the output size, then
// resampled to image_size x image_size with an antialiasing triangle filter.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <ATen/ATen.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>
#include <turbojpeg.h>

#include "learndrop/sdk.h"

namespace {

namespace fs = std::filesystem;

const float kMean[3] = {0.485f, 0.456f, 0.406f};  // ImageNet's, as torchvision
const float kStd[3] = {0.229f, 0.224f, 0.225f};

// The ten Imagenette classes; other wnids (an ImageNet subset in the same
// layout, e.g. Imagewoof) are named by their wnid.
const std::map<std::string, std::string> kClassNames = {
    {"n01440764", "tench"},         {"n02102040", "English springer"}, {"n02979186", "cassette player"},
    {"n03000684", "chain saw"},     {"n03028079", "church"},           {"n03394916", "French horn"},
    {"n03417042", "garbage truck"}, {"n03425413", "gas pump"},         {"n03445777", "golf ball"},
    {"n03888605", "parachute"}};

struct ImagenetteOptions {
  std::string root;
  std::int64_t train_limit = 0;
  std::int64_t test_limit = 0;
  std::int64_t image_size = 0;
  std::int64_t noise = 0;
  bool normalize = true;
  std::string augment;
  double min_scale = 0.35;

  static ImagenetteOptions from(const ld::Options& o);
};

// The keys, each with the member it sets (the manifest and the factory both use it).
const ld::OptionTable<ImagenetteOptions>& options_table() {
  static const auto table = [] {
    const auto limits = ld::sample_limit_keys();
    return ld::OptionTable<ImagenetteOptions>()
        .add(ld::ConfigKey("root", ld::ValueType::kPath, "",
                           "imagenette2 folder (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG) or its parent; default "
                           "$LEARNDROP_DATA/imagenette"),
             &ImagenetteOptions::root)
        .add(limits[0], &ImagenetteOptions::train_limit)
        .add(limits[1], &ImagenetteOptions::test_limit)
        .add(ld::ConfigKey("image_size", ld::ValueType::kInt, "128",
                           "side of the square samples: the shorter side is resized to it and the centre cropped "
                           "(e.g. 64, 128, 160, 224)")
                 .range(8, 1024),
             &ImagenetteOptions::image_size)
        .add(ld::ConfigKey("noise", ld::ValueType::kInt, "0",
                           "percent of noisy training labels from noisy_imagenette.csv: 0, 1, 5, 25 or 50")
                 .range(0, 50),
             &ImagenetteOptions::noise)
        .add(ld::ConfigKey("normalize", ld::ValueType::kBool, "true",
                           "per-channel ImageNet mean/std (0.485, 0.456, 0.406 / 0.229, 0.224, 0.225)"),
             &ImagenetteOptions::normalize)
        .add(ld::ConfigKey("augment", ld::ValueType::kString, "none",
                           "none | flip (horizontal, p = 0.5) | crop_flip (random resized crop, area min_scale..1, "
                           "aspect 3/4..4/3, then flip)")
                 .one_of({"none", "flip", "crop_flip"}),
             &ImagenetteOptions::augment)
        .add(ld::ConfigKey("min_scale", ld::ValueType::kFloat, "0.35",
                           "smallest crop area of crop_flip, as a fraction of the image (torchvision's default is "
                           "0.08)")
                 .range(0.01, 1.0),
             &ImagenetteOptions::min_scale);
  }();
  return table;
}

ImagenetteOptions ImagenetteOptions::from(const ld::Options& o) {
  ImagenetteOptions r = options_table().read(o);
  if (r.noise != 0 && r.noise != 1 && r.noise != 5 && r.noise != 25 && r.noise != 50) {
    throw ld::Error("dataset.noise: expected one of 0, 1, 5, 25, 50 (percent of noisy training labels), got " +
                    std::to_string(r.noise));
  }
  return r;
}

struct Sample {
  std::string relative;  // e.g. "train/n01440764/ILSVRC2012_val_00000293.JPEG"
  std::int64_t label = 0;
};

bool is_jpeg(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpeg" || ext == ".jpg";
}

std::vector<std::string> sorted_names(const fs::path& dir, bool dirs) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (dirs ? e.is_directory() : (e.is_regular_file() && is_jpeg(e.path()))) {
      names.push_back(e.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Samples of one split, classes interleaved (first image of every class, then
// the second, ...) so that `train_limit: N` keeps the classes balanced.
std::vector<Sample> list_split(const fs::path& root, const std::string& split,
                               const std::map<std::string, std::int64_t>& classes) {
  std::vector<std::vector<Sample>> per_class;
  for (const auto& [wnid, label] : classes) {
    fs::path dir = root / split / wnid;
    if (!fs::is_directory(dir)) continue;
    std::vector<Sample> files;
    for (const auto& name : sorted_names(dir, false)) files.push_back({split + "/" + wnid + "/" + name, label});
    if (files.empty()) {
      throw ld::Error("dataset imagenette: class folder " + dir.string() +
                      " has no JPEG images (a class without samples; remove the folder or restore its files)");
    }
    per_class.push_back(std::move(files));
  }
  std::vector<Sample> out;
  for (std::size_t k = 0;; ++k) {
    bool any = false;
    for (const auto& files : per_class) {
      if (k < files.size()) {
        out.push_back(files[k]);
        any = true;
      }
    }
    if (!any) break;
  }
  return out;
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream ss(line);
  std::string cell;
  while (std::getline(ss, cell, ',')) {
    if (!cell.empty() && cell.back() == '\r') cell.pop_back();
    cells.push_back(cell);
  }
  return cells;
}

// Replaces the training labels by column noisy_labels_<noise> of the csv.
void apply_noisy_labels(const fs::path& csv, std::int64_t noise, const std::map<std::string, std::int64_t>& classes,
                        std::vector<Sample>& train) {
  std::ifstream in(csv);
  if (!in) {
    throw ld::Error("dataset imagenette: noise " + std::to_string(noise) + " needs " + csv.string() +
                    ", which cannot be opened");
  }
  std::string line;
  std::getline(in, line);
  auto header = split_csv_line(line);
  const std::string column = "noisy_labels_" + std::to_string(noise);
  auto path_col = std::find(header.begin(), header.end(), "path") - header.begin();
  auto label_col = std::find(header.begin(), header.end(), column) - header.begin();
  if (path_col == static_cast<std::ptrdiff_t>(header.size()) ||
      label_col == static_cast<std::ptrdiff_t>(header.size())) {
    throw ld::Error("dataset imagenette: " + csv.string() + ": header has no 'path' or '" + column + "' column");
  }
  std::map<std::string, std::int64_t> noisy;
  std::size_t line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line == "\r") continue;
    auto cells = split_csv_line(line);
    if (cells.size() != header.size()) {
      throw ld::Error("dataset imagenette: " + csv.string() + " line " + std::to_string(line_no) + ": " +
                      std::to_string(cells.size()) + " cells, the header has " + std::to_string(header.size()));
    }
    auto it = classes.find(cells[static_cast<std::size_t>(label_col)]);
    if (it == classes.end()) {
      throw ld::Error("dataset imagenette: " + csv.string() + " line " + std::to_string(line_no) + ": label '" +
                      cells[static_cast<std::size_t>(label_col)] + "' is not one of the class folders");
    }
    noisy[cells[static_cast<std::size_t>(path_col)]] = it->second;
  }
  for (auto& s : train) {
    auto it = noisy.find(s.relative);
    if (it == noisy.end()) throw ld::Error("dataset imagenette: " + csv.string() + " has no row for " + s.relative);
    s.label = it->second;
  }
}

// A crop box in source pixels, and whether to mirror it.
struct Crop {
  double x = 0, y = 0, w = 0, h = 0;
  bool flip = false;
};

// The central square (the evaluation transform).
Crop center_square(int width, int height) {
  double side = std::min(width, height);
  return {(width - side) / 2.0, (height - side) / 2.0, side, side, false};
}

// torchvision's RandomResizedCrop: area in [min_scale, 1] of the image,
// aspect ratio log-uniform in [3/4, 4/3]; ten tries, then the central square.
Crop random_resized(std::mt19937_64& rng, int width, int height, double min_scale) {
  std::uniform_real_distribution<double> area_d(min_scale, 1.0);
  std::uniform_real_distribution<double> log_ratio(std::log(3.0 / 4.0), std::log(4.0 / 3.0));
  const double area = static_cast<double>(width) * height;
  for (int attempt = 0; attempt < 10; ++attempt) {
    double target = area * area_d(rng);
    double ratio = std::exp(log_ratio(rng));
    double w = std::round(std::sqrt(target * ratio));
    double h = std::round(std::sqrt(target / ratio));
    if (w >= 1 && h >= 1 && w <= width && h <= height) {
      double x = std::floor(std::uniform_real_distribution<double>(0, width - w + 1)(rng));
      double y = std::floor(std::uniform_real_distribution<double>(0, height - h + 1)(rng));
      return {x, y, w, h, false};
    }
  }
  return center_square(width, height);
}

// Weights of a triangle (bilinear) filter widened by the downscale factor:
// output o of `out` covers [start, start + length) of `in` pixels.
struct Taps {
  std::vector<int> first;
  std::vector<std::vector<float>> weights;
};

Taps make_taps(double start, double length, int in, int out, bool mirror) {
  Taps t;
  const double scale = length / out;
  const double support = std::max(scale, 1.0);
  for (int o = 0; o < out; ++o) {
    int oo = mirror ? out - 1 - o : o;
    double center = start + (oo + 0.5) * scale;
    int lo = std::max(0, static_cast<int>(std::floor(center - support)));
    int hi = std::min(in - 1, static_cast<int>(std::ceil(center + support)));
    std::vector<float> w;
    double sum = 0;
    for (int i = lo; i <= hi; ++i) {
      double v = std::max(0.0, 1.0 - std::abs(i + 0.5 - center) / support);
      w.push_back(static_cast<float>(v));
      sum += v;
    }
    if (sum <= 0) {  // a box narrower than a pixel: the nearest one
      lo = std::clamp(static_cast<int>(center), 0, in - 1);
      w.assign(1, 1.0f);
      sum = 1;
    }
    for (auto& v : w) v = static_cast<float>(v / sum);
    t.first.push_back(lo);
    t.weights.push_back(std::move(w));
  }
  return t;
}

// Resamples box `crop` of the interleaved RGB image into `dst` (planar
// [3, size, size] float), mapping each byte v to v * scale[c] - shift[c].
void resample(const std::uint8_t* rgb, int width, int height, const Crop& crop, int size, const float* scale,
              const float* shift, float* dst) {
  Taps tx = make_taps(crop.x, crop.w, width, size, crop.flip);
  Taps ty = make_taps(crop.y, crop.h, height, size, false);
  int row_lo = height, row_hi = -1;
  for (int o = 0; o < size; ++o) {
    row_lo = std::min(row_lo, ty.first[o]);
    row_hi = std::max(row_hi, ty.first[o] + static_cast<int>(ty.weights[o].size()) - 1);
  }
  // Horizontal pass over the rows the vertical taps need.
  std::vector<float> rows(static_cast<std::size_t>(row_hi - row_lo + 1) * size * 3);
  for (int y = row_lo; y <= row_hi; ++y) {
    const std::uint8_t* src = rgb + static_cast<std::size_t>(y) * width * 3;
    float* out = rows.data() + static_cast<std::size_t>(y - row_lo) * size * 3;
    for (int o = 0; o < size; ++o) {
      float r = 0, g = 0, b = 0;
      const auto& w = tx.weights[o];
      const std::uint8_t* p = src + static_cast<std::size_t>(tx.first[o]) * 3;
      for (std::size_t k = 0; k < w.size(); ++k, p += 3) {
        r += w[k] * p[0];
        g += w[k] * p[1];
        b += w[k] * p[2];
      }
      out[o * 3] = r;
      out[o * 3 + 1] = g;
      out[o * 3 + 2] = b;
    }
  }
  const std::size_t plane = static_cast<std::size_t>(size) * size;
  for (int o = 0; o < size; ++o) {
    const auto& w = ty.weights[o];
    for (int x = 0; x < size; ++x) {
      float acc[3] = {0, 0, 0};
      for (std::size_t k = 0; k < w.size(); ++k) {
        const float* p =
            rows.data() + (static_cast<std::size_t>(ty.first[o] - row_lo + static_cast<int>(k)) * size + x) * 3;
        acc[0] += w[k] * p[0];
        acc[1] += w[k] * p[1];
        acc[2] += w[k] * p[2];
      }
      for (int c = 0; c < 3; ++c)
        dst[c * plane + static_cast<std::size_t>(o) * size + x] = acc[c] * scale[c] - shift[c];
    }
  }
}

// One TurboJPEG decompressor per thread.
class Decoders {
 public:
  tjhandle get() {
    Handle& h = handles_.local();
    if (h.h == nullptr) h.h = tjInitDecompress();
    if (h.h == nullptr) throw ld::Error("dataset imagenette: cannot create a libjpeg-turbo decompressor");
    return h.h;
  }

 private:
  struct Handle {
    tjhandle h = nullptr;
    Handle() = default;
    Handle(const Handle&) : h(nullptr) {}
    ~Handle() {
      if (h != nullptr) tjDestroy(h);
    }
  };
  tbb::enumerable_thread_specific<Handle> handles_;
};

class ImagenetteDataset : public ld::Dataset {
 public:
  ImagenetteDataset(const ImagenetteOptions& o, const ld::DatasetContext& ctx) : o_(o) {
    fs::path root =
        ld::dataset_root(o.root, ctx, "imagenette", "an imagenette2 folder (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG)");
    if (!fs::is_directory(root / "train") && fs::is_directory(root / "imagenette2" / "train")) root /= "imagenette2";
    if (!fs::is_directory(root)) throw ld::Error("dataset.root: folder " + root.string() + " does not exist");
    if (!fs::is_directory(root / "train") || !fs::is_directory(root / "val")) {
      throw ld::Error("dataset imagenette: " + root.string() +
                      " has no train/ and val/ folders (expected the imagenette2 "
                      "layout: train/<wnid>/*.JPEG, val/<wnid>/*.JPEG)");
    }
    root_ = root;
    for (const auto& wnid : sorted_names(root / "train", true)) {
      auto label = static_cast<std::int64_t>(classes_.size());
      classes_[wnid] = label;
      auto it = kClassNames.find(wnid);
      class_names_.push_back(it == kClassNames.end() ? wnid : it->second);
    }
    for (const auto& wnid : sorted_names(root / "val", true)) {
      if (classes_.count(wnid) == 0) {
        throw ld::Error("dataset imagenette: " + (root / "val" / wnid).string() + " is a class with no train/" + wnid +
                        " folder");
      }
    }
    samples_[0] = list_split(root, "train", classes_);
    samples_[1] = list_split(root, "val", classes_);
    if (samples_[0].empty())
      throw ld::Error("dataset imagenette: no JPEG files in " + (root / "train").string() + "/<wnid>/");
    if (samples_[1].empty())
      throw ld::Error("dataset imagenette: no JPEG files in " + (root / "val").string() + "/<wnid>/");
    if (o.noise != 0) apply_noisy_labels(root / "noisy_imagenette.csv", o.noise, classes_, samples_[0]);
    samples_[0].resize(
        static_cast<std::size_t>(ld::limited_count(static_cast<std::int64_t>(samples_[0].size()), o.train_limit)));
    samples_[1].resize(
        static_cast<std::size_t>(ld::limited_count(static_cast<std::int64_t>(samples_[1].size()), o.test_limit)));
    for (int c = 0; c < 3; ++c) {
      scale_[c] = o.normalize ? 1.0f / (255.0f * kStd[c]) : 1.0f / 255.0f;
      shift_[c] = o.normalize ? kMean[c] / kStd[c] : 0.0f;
    }
  }

  std::int64_t size(ld::Split s) const override { return static_cast<std::int64_t>(samples_[index(s)].size()); }
  std::int64_t num_classes() const override { return static_cast<std::int64_t>(classes_.size()); }
  std::vector<std::int64_t> sample_shape() const override { return {3, o_.image_size, o_.image_size}; }
  bool random_train_transform() const override { return o_.augment != "none"; }

  ld::Batch get_batch(ld::Split s, const std::vector<std::int64_t>& indices, std::uint64_t seed) const override {
    const bool augment = s == ld::Split::kTrain && o_.augment != "none";
    return gather(s, indices, augment ? seed : 0, augment ? kRandom : kCentre);
  }

  // Only `flip` is a ShiftFlip: a random resized crop rescales the image,
  // which feature maps cannot follow.
  bool shift_flip(ld::ShiftFlip& t) const override {
    if (o_.augment != "flip") return false;
    t.max_shift = 0;
    t.flip = true;
    t.fill.assign(3, 0.0f);
    return true;
  }

  ld::Batch get_untransformed(const std::vector<std::int64_t>& indices, bool mirrored) const override {
    return gather(ld::Split::kTrain, indices, 0, mirrored ? kCentreMirrored : kCentre);
  }

  std::vector<std::int64_t> labels(ld::Split s) const override {
    std::vector<std::int64_t> out;
    for (const Sample& sample : samples_[index(s)]) out.push_back(sample.label);
    return out;
  }

  std::vector<std::string> class_names() const override { return class_names_; }

  std::string describe() const override {
    return "imagenette at " + root_.string() + " (" + std::to_string(size(ld::Split::kTrain)) + " train / " +
           std::to_string(size(ld::Split::kTest)) + " val, " + std::to_string(o_.image_size) + " px" +
           (o_.noise ? ", " + std::to_string(o_.noise) + "% noisy labels" : "") +
           (o_.augment != "none" ? ", augment " + o_.augment : "") + ")";
  }

 private:
  // How a sample is cropped: the random training transform, or the centre square (mirrored or not).
  enum CropMode { kRandom, kCentre, kCentreMirrored };

  ld::Batch gather(ld::Split s, const std::vector<std::int64_t>& indices, std::uint64_t seed, CropMode mode) const {
    const auto& samples = samples_[index(s)];
    const auto b = static_cast<std::int64_t>(indices.size());
    const std::int64_t n = size(s);
    at::Tensor x = at::empty({b, 3, o_.image_size, o_.image_size});
    at::Tensor y = at::empty({b}, at::kLong);
    for (std::int64_t r = 0; r < b; ++r) {
      std::int64_t i = indices[static_cast<std::size_t>(r)];
      if (i < 0 || i >= n) {
        throw ld::Error("dataset imagenette: index " + std::to_string(i) + " out of range [0, " + std::to_string(n) +
                        ")");
      }
      y.data_ptr<std::int64_t>()[r] = samples[static_cast<std::size_t>(i)].label;
    }
    const std::int64_t per_sample = 3 * o_.image_size * o_.image_size;
    float* out = x.data_ptr<float>();
    tbb::parallel_for(std::int64_t{0}, b, [&](std::int64_t r) {
      std::int64_t i = indices[static_cast<std::size_t>(r)];
      load(samples[static_cast<std::size_t>(i)], seed, i, mode, out + r * per_sample);
    });
    return {x, y};
  }

  static int index(ld::Split s) { return s == ld::Split::kTrain ? 0 : 1; }

  void load(const Sample& sample, std::uint64_t seed, std::int64_t i, CropMode mode, float* dst) const {
    const fs::path path = root_ / sample.relative;
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ld::Error("dataset imagenette: cannot read " + path.string());
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    tjhandle tj = decoders_.get();
    auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
    int width = 0, height = 0, subsamp = 0, colorspace = 0;
    if (tjDecompressHeader3(tj, data, bytes.size(), &width, &height, &subsamp, &colorspace) != 0) {
      throw ld::Error("dataset imagenette: " + path.string() + ": not a readable JPEG: " + tjGetErrorStr2(tj));
    }
    // A corrupt header can claim 65500x65500 (12 GiB of RGB): bound the
    // decode before allocating for it.
    constexpr std::int64_t kMaxPixels = std::int64_t{1} << 26;  // 64 megapixels
    if (width <= 0 || height <= 0 || static_cast<std::int64_t>(width) * height > kMaxPixels) {
      throw ld::Error("dataset imagenette: " + path.string() + ": the JPEG header claims " + std::to_string(width) +
                      "x" + std::to_string(height) + " pixels, more than the " + std::to_string(kMaxPixels >> 20) +
                      " megapixels an image may have here (a corrupt header?)");
    }
    Crop crop = center_square(width, height);
    crop.flip = mode == kCentreMirrored;
    if (mode == kRandom) {
      std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(i) + 1);
      if (o_.augment == "crop_flip") crop = random_resized(rng, width, height, o_.min_scale);
      crop.flip = (rng() & 1) != 0;
    }
    // DCT scaling: the smallest factor <= 1 that keeps the crop at least as
    // large as the output (decoding at 1/2, 1/4 or 1/8 is that much cheaper).
    const auto target = static_cast<double>(o_.image_size);
    int num = 1, denom = 1, count = 0;
    const tjscalingfactor* factors = tjGetScalingFactors(&count);
    double best = 1.0;
    for (int k = 0; k < count; ++k) {
      double f = static_cast<double>(factors[k].num) / factors[k].denom;
      if (f < best && crop.w * f >= target && crop.h * f >= target) {
        best = f;
        num = factors[k].num;
        denom = factors[k].denom;
      }
    }
    const int sw = (width * num + denom - 1) / denom;
    const int sh = (height * num + denom - 1) / denom;
    const bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
    std::vector<std::uint8_t> pixels(static_cast<std::size_t>(sw) * sh * (cmyk ? 4 : 3));
    // Warnings count: a truncated file or garbage in the entropy-coded data
    // decodes "successfully" into grey or smeared pixels that train silently.
    if (tjDecompress2(tj, data, bytes.size(), pixels.data(), sw, 0, sh, cmyk ? TJPF_CMYK : TJPF_RGB,
                      TJFLAG_ACCURATEDCT) != 0) {
      throw ld::Error("dataset imagenette: " + path.string() + ": " +
                      (tjGetErrorCode(tj) == TJERR_FATAL ? "cannot decode JPEG: " : "corrupt JPEG: ") +
                      tjGetErrorStr2(tj) + " (remove or replace the file)");
    }
    if (cmyk) {  // Adobe-style (inverted) CMYK to RGB
      for (std::size_t p = 0, q = 0; p < pixels.size(); p += 4, q += 3) {
        const unsigned k = pixels[p + 3];
        for (int c = 0; c < 3; ++c)
          pixels[q + static_cast<std::size_t>(c)] =
              static_cast<std::uint8_t>(pixels[p + static_cast<std::size_t>(c)] * k / 255);
      }
      pixels.resize(static_cast<std::size_t>(sw) * sh * 3);
    }
    const double fx = static_cast<double>(sw) / width, fy = static_cast<double>(sh) / height;
    Crop scaled{crop.x * fx, crop.y * fy, crop.w * fx, crop.h * fy, crop.flip};
    resample(pixels.data(), sw, sh, scaled, static_cast<int>(o_.image_size), scale_, shift_, dst);
  }

  ImagenetteOptions o_;
  fs::path root_;
  std::map<std::string, std::int64_t> classes_;
  std::vector<std::string> class_names_;
  std::vector<Sample> samples_[2];
  float scale_[3] = {}, shift_[3] = {};
  mutable Decoders decoders_;
};

ld::Manifest manifest() {
  ld::Manifest m;
  m.kind = ld::PluginKind::kDataset;
  m.name = "imagenette";
  m.version = "1.0.0";
  m.description = "Imagenette (imagenette2 tree of JPEGs, libjpeg-turbo), optionally with noisy labels";
  m.keys = options_table().keys();
  return m;
}

void register_plugins(ld::Registrar& r) {
  r.add_dataset(manifest(), [](const ld::Options& o, const ld::DatasetContext& ctx) {
    return std::make_unique<ImagenetteDataset>(ImagenetteOptions::from(o), ctx);
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
