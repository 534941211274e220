// Feature-space augmentation (cache.augment: feature): the shift of cached
// maps against the frozen prefix run on shifted inputs, the dataset's
// declared transform against its real one, and the feed after a drop.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <set>

#include <ATen/ATen.h>

#include "cifar_fixture.h"
#include "learndrop/core/batch_feed.h"
#include "learndrop/core/drop_controller.h"
#include "learndrop/core/feature_shift.h"
#include "learndrop/core/seeds.h"
#include "learndrop/core/flops.h"
#include "learndrop/registrar.h"
#include "drop_helpers.h"
#include "test_env.h"

namespace ld::core {

namespace {

std::shared_ptr<Dataset> cifar(const core::PluginHost& host, const std::string& root, const std::string& augment) {
  return host.create_dataset("cifar10",
                             test::plugin_options(host, PluginKind::kDataset, "cifar10",
                                                  {{"root", root}, {"augment", augment}}),
                             DatasetContext{});
}

std::vector<std::int64_t> iota(std::int64_t n) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// A real network with its batch-norm statistics set from `images` (eval mode after).
std::shared_ptr<StagedModel> calibrated(const core::PluginHost& host, const std::string& plugin,
                                        const std::map<std::string, std::string>& keys, const at::Tensor& images) {
  at::manual_seed(3);
  auto model =
      host.create_model(plugin, test::plugin_options(host, PluginKind::kModel, plugin, keys), ModelContext{3, 32, 32, 10});
  for (auto& p : model->parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
  at::NoGradGuard no_grad;
  model->train();
  for (int i = 0; i < 5; ++i) model->forward(images.contiguous(at::MemoryFormat::ChannelsLast), 0);
  model->eval();
  return model;
}

at::Tensor prefix(StagedModel& m, std::size_t cut, at::Tensor x) {
  at::NoGradGuard no_grad;
  x = x.contiguous(at::MemoryFormat::ChannelsLast);
  for (std::size_t s = 0; s < cut; ++s) x = m.forward_stage(s, x);
  return x;
}

// Receptive-field radius of stages [0, cut) in input pixels: how far from the
// centre an input pixel still reaches the centre output.
std::int64_t receptive_radius(StagedModel& m, std::size_t cut) {
  at::Tensor x = at::randn({1, 3, 96, 96}).requires_grad_(true);
  at::Tensor y = x.contiguous(at::MemoryFormat::ChannelsLast);
  for (std::size_t s = 0; s < cut; ++s) y = m.forward_stage(s, y);
  y.index({0, at::indexing::Slice(), y.size(2) / 2, y.size(3) / 2}).sum().backward();
  at::Tensor touched = x.grad().abs().sum(at::IntArrayRef{0, 1}).ne(0).nonzero();
  const std::int64_t centre = 48;
  return std::max((touched - centre).abs().max().item<std::int64_t>(), std::int64_t{0});
}

struct ShiftError {
  double interior_max = 0;  // max |A - B| away from the borders, relative to max |A|
  double overall_rms = 0;   // ‖A - B‖ / ‖A‖ over the whole map
  double border_max = 0;    // max |A - B| / max |A| over the whole map
};

// prefix(shift(x)) against shift(prefix(x)) for one input shift (dy, dx).
ShiftError compare(StagedModel& m, std::size_t cut, const at::Tensor& x, std::int64_t dy, std::int64_t dx,
                   const std::vector<float>& input_fill, const FeatureShift& f) {
  const std::int64_t b = x.size(0), s = f.stride;
  at::Tensor a = prefix(m, cut, shift_images(x, std::vector<std::int64_t>(b, dy), std::vector<std::int64_t>(b, dx),
                                             input_fill));
  at::Tensor mapped = prefix(m, cut, x).permute({0, 2, 3, 1}).contiguous();
  at::Tensor bb = shift_stored(mapped, std::vector<std::int64_t>(b, dy / s), std::vector<std::int64_t>(b, dx / s),
                               f.fill)
                      .permute({0, 3, 1, 2});
  at::Tensor diff = (a - bb).abs();
  const double scale = a.abs().max().item<double>();
  const std::int64_t margin = (receptive_radius(m, cut) + s - 1) / s + std::max(std::abs(dy), std::abs(dx)) / s;
  const std::int64_t h = a.size(2), w = a.size(3);
  ShiftError e;
  e.overall_rms = (a - bb).norm().item<double>() / a.norm().item<double>();
  e.border_max = diff.max().item<double>() / scale;
  if (margin < h - margin && margin < w - margin) {
    e.interior_max =
        diff.index({at::indexing::Slice(), at::indexing::Slice(), at::indexing::Slice(margin, h - margin),
                    at::indexing::Slice(margin, w - margin)})
            .max()
            .item<double>() /
        scale;
  }
  return e;
}

// Runs the comparison at `cuts` of a model for every shift the cut can
// express; returns the worst errors.
void expect_equivariance(const std::string& plugin, const std::map<std::string, std::string>& keys,
                         const std::vector<std::size_t>& cuts) {
  auto host = test::builtin_host();
  test::TempDir dir;
  test::write_cifar_fixture(dir.str(), {64, 1, 10});
  // Noise images from the fixture; real CIFAR-10 images where LEARNDROP_DATA
  // has them (the border error is smaller on natural images).
  std::string root = dir.str(), images = "fixture noise images";
  const char* env = std::getenv("LEARNDROP_DATA");
  if (env != nullptr && std::filesystem::exists(std::string(env) + "/cifar10/cifar-10-batches-bin/test_batch.bin")) {
    root = std::string(env) + "/cifar10";
    images = "CIFAR-10 images";
  }
  auto data = cifar(*host, root, "crop_flip");
  ShiftFlip t;
  ASSERT_TRUE(data->shift_flip(t));
  at::Tensor x = data->get_untransformed(iota(16), false).images;
  auto model = calibrated(*host, plugin, keys, data->get_untransformed(iota(64), false).images);
  ModelProfile profile = profile_model(*model, {3, 32, 32});
  DropSettings settings;
  settings.feature_augment = true;
  settings.shift_flip = t;
  settings.views = 2;
  DropController controller(
      *model, *data, [&] { return host->create_cache("ram", Options(), CacheContext{}); }, profile.stage_flops,
      profile.stage_output_shapes, settings);
  for (std::size_t cut : cuts) {
    test::drop_to(controller, cut);
    const FeatureShift& f = controller.feature_shift();
    ASSERT_GT(f.stride, 0) << "cut " << cut;
    ASSERT_EQ(f.max_shift, t.max_shift / f.stride) << "cut " << cut;
    if (f.max_shift == 0) continue;  // nothing to shift at this stride
    ASSERT_EQ(static_cast<std::int64_t>(f.fill.size()), profile.stage_output_shapes[cut - 1][0]);
    ShiftError worst;
    double mean_rms = 0;
    int shifts = 0;
    for (std::int64_t dy = -f.max_shift; dy <= f.max_shift; ++dy) {
      for (std::int64_t dx = -f.max_shift; dx <= f.max_shift; ++dx) {
        ShiftError e = compare(*model, cut, x, dy * f.stride, dx * f.stride, t.fill, f);
        worst.interior_max = std::max(worst.interior_max, e.interior_max);
        worst.overall_rms = std::max(worst.overall_rms, e.overall_rms);
        worst.border_max = std::max(worst.border_max, e.border_max);
        mean_rms += e.overall_rms;
        ++shifts;
      }
    }
    mean_rms /= shifts;
    std::printf("[ measured ] %s cut %zu (%s, stride %lld, shifts +-%lld), %s: away from the borders max %.1e; "
                "whole map relative RMS error %.3f mean over the %d shifts, %.3f worst; max %.3f of the map's max\n",
                keys.at("variant").c_str(), cut, model->stage_name(cut - 1).c_str(),
                static_cast<long long>(f.stride), static_cast<long long>(f.max_shift), images.c_str(), worst.interior_max,
                mean_rms, shifts, worst.overall_rms, worst.border_max);
    EXPECT_LE(worst.interior_max, 1e-5) << "cut " << cut << ": the shifted map differs away from the borders";
    // At the borders the error is bounded by the map's own scale, and it is
    // there (a test that never saw it would not test the border handling).
    EXPECT_LE(worst.border_max, 1.0 + 1e-6) << "cut " << cut;
    EXPECT_LT(mean_rms, 1.0) << "cut " << cut;
    EXPECT_GT(mean_rms, 1e-3) << "cut " << cut;
  }
}

}  // namespace

TEST(FeatureShift, ShiftStoredMovesEverySampleAndFillsWhatIsShiftedIn) {
  // Two 3x4 maps with 2 channels; value = 100 * sample + 10 * y + x (+ 0.5 in channel 1).
  at::Tensor m = at::empty({2, 3, 4, 2});
  for (int b = 0; b < 2; ++b)
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 4; ++x)
        for (int c = 0; c < 2; ++c) m[b][y][x][c] = 100 * b + 10 * y + x + 0.5 * c;
  at::Tensor out = shift_stored(m, {1, -2}, {-1, 3}, {-7.0f, -8.0f});
  for (int b = 0; b < 2; ++b) {
    const int dy = b == 0 ? 1 : -2, dx = b == 0 ? -1 : 3;
    for (int y = 0; y < 3; ++y) {
      for (int x = 0; x < 4; ++x) {
        for (int c = 0; c < 2; ++c) {
          const int sy = y + dy, sx = x + dx;
          const bool inside = sy >= 0 && sy < 3 && sx >= 0 && sx < 4;
          const float want = inside ? 100.0f * b + 10.0f * sy + sx + 0.5f * c : (c == 0 ? -7.0f : -8.0f);
          EXPECT_EQ(out[b][y][x][c].item<float>(), want) << b << " " << y << " " << x << " " << c;
        }
      }
    }
  }
  EXPECT_TRUE(shift_stored(m, {0, 0}, {0, 0}, {0, 0}).equal(m));
  EXPECT_NE(test::error_of([&] { shift_stored(m, {0}, {0}, {0, 0}); }).find("shifts for a batch of 2"),
            std::string::npos);
}

TEST(FeatureShift, TheDeclaredTransformIsExactlyTheDatasetsTransform) {
  // Every augmented CIFAR sample is its untransformed or mirrored image,
  // shifted within the declared range and filled with the declared value.
  auto host = test::builtin_host();
  test::TempDir dir;
  test::write_cifar_fixture(dir.str(), {40, 1, 10});
  auto data = cifar(*host, dir.str(), "crop_flip");
  ShiftFlip t;
  ASSERT_TRUE(data->shift_flip(t));
  EXPECT_EQ(t.max_shift, 4);
  EXPECT_TRUE(t.flip);
  const auto idx = iota(40);
  const at::Tensor plain = data->get_untransformed(idx, false).images;
  const at::Tensor mirrored = data->get_untransformed(idx, true).images;
  EXPECT_TRUE(mirrored.equal(plain.flip({3})));
  const at::Tensor augmented = data->get_batch(Split::kTrain, idx, 77).images;
  int mirrored_count = 0, shifted_count = 0;
  for (std::int64_t i = 0; i < 40; ++i) {
    bool found = false;
    for (int m = 0; m < 2 && !found; ++m) {
      const at::Tensor src = (m ? mirrored : plain).narrow(0, i, 1);
      for (std::int64_t dy = -4; dy <= 4 && !found; ++dy) {
        for (std::int64_t dx = -4; dx <= 4 && !found; ++dx) {
          if (shift_images(src, {dy}, {dx}, t.fill).equal(augmented.narrow(0, i, 1))) {
            found = true;
            mirrored_count += m;
            shifted_count += dy != 0 || dx != 0;
          }
        }
      }
    }
    EXPECT_TRUE(found) << "sample " << i << " is not a declared shift/flip of its image";
  }
  EXPECT_GT(mirrored_count, 5);
  EXPECT_LT(mirrored_count, 35);
  EXPECT_GT(shifted_count, 30);
  // Without augmentation there is nothing to declare.
  ShiftFlip none;
  EXPECT_FALSE(cifar(*host, dir.str(), "none")->shift_flip(none));
}

TEST(FeatureShift, ShiftedMapsOfAResNetPrefixEqualThePrefixOnShiftedInputsAwayFromTheBorders) {
  expect_equivariance("resnet", {{"variant", "resnet18"}, {"stem", "cifar"}, {"width", "0.25"}}, {1, 3, 5, 7});
}

TEST(FeatureShift, ShiftedMapsOfAVggPrefixEqualThePrefixOnShiftedInputsAwayFromTheBorders) {
  expect_equivariance("vgg", {{"variant", "vgg11_bn"}, {"width", "0.25"}, {"classifier", "compact"}}, {1, 2, 4});
}

TEST(FeatureShift, TheFeedShiftsEachCachedSampleByItsDrawForTheEpoch) {
  auto host = test::builtin_host();
  test::TempDir dir;
  test::write_cifar_fixture(dir.str(), {48, 1, 10});
  auto data = cifar(*host, dir.str(), "crop_flip");
  ShiftFlip t;
  ASSERT_TRUE(data->shift_flip(t));
  auto model = calibrated(*host, "resnet", {{"variant", "resnet18"}, {"stem", "cifar"}, {"width", "0.125"}},
                          data->get_untransformed(iota(48), false).images);
  ModelProfile profile = profile_model(*model, {3, 32, 32});
  DropSettings settings;
  settings.feature_augment = true;
  settings.shift_flip = t;
  settings.views = 2;
  settings.seed = 9;
  DropController controller(
      *model, *data, [&] { return host->create_cache("ram", Options(), CacheContext{}); }, profile.stage_flops,
      profile.stage_output_shapes, settings);
  test::drop_to(controller, 3);  // stride 1: shifts of up to 4 map pixels
  ASSERT_EQ(controller.feature_shift().max_shift, 4);
  BatchFeed feed(controller.source(), FeedSettings{16, 2});
  const std::vector<std::int64_t> order = epoch_order(48, 9, 2);
  const std::uint64_t epoch_seed = 1234;
  feed.start(order, 0, 3, epoch_seed);
  at::Tensor x, y;
  std::set<std::pair<std::int64_t, std::int64_t>> shifts;
  std::set<std::int64_t> views;
  for (std::int64_t step = 0; feed.next(x, y); ++step) {
    for (std::int64_t k = 0; k < 16; ++k) {
      const std::int64_t sample = order[static_cast<std::size_t>(step * 16 + k)];
      const std::int64_t view = controller.view_of(epoch_seed, sample);
      const auto [dy, dx] = controller.shift_of(epoch_seed, sample);
      shifts.insert({dy, dx});
      views.insert(view);
      at::Tensor stored = controller.cached_rows({controller.row(sample, view)}).permute({0, 2, 3, 1}).contiguous();
      at::Tensor want = shift_stored(stored, {dy}, {dx}, controller.feature_shift().fill).permute({0, 3, 1, 2});
      ASSERT_TRUE(x.narrow(0, k, 1).equal(want)) << "sample " << sample;
      // The cached view equals stage 0..2 of the (mirrored) untransformed image.
      at::Tensor direct = prefix(*model, 3, data->get_untransformed({sample}, view == 1).images);
      ASSERT_TRUE(controller.cached_rows({controller.row(sample, view)}).allclose(direct, 1e-5, 1e-5)) << "sample " << sample;
    }
  }
  EXPECT_EQ(views.size(), 2u);
  EXPECT_GT(shifts.size(), 20u);  // 48 draws from 81 shifts
  // Another epoch draws other shifts.
  int same = 0;
  for (std::int64_t i = 0; i < 48; ++i) same += controller.shift_of(epoch_seed, i) == controller.shift_of(99, i);
  EXPECT_LT(same, 10);
}

}  // namespace ld::core
