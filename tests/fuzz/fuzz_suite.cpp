// Fuzz target: the suite file (ldrop suite run/report).
// Input: a suite file, written next to a valid base config `base.yaml`.
// Checked: a suite loads (every run resolved) or is refused with ld::Error.
#include "fuzz_support.h"
#include "learndrop/core/suite.h"

using namespace ld;

namespace {
const char* kBase =
    "experiment:\n  name: base\ntrain:\n  epochs: 2\n  batch_size: 32\nmodel:\n  plugin: vgg\n"
    "  variant: vgg11_bn\n  width: 0.25\ndataset:\n  plugin: mnist\n  train_limit: 64\n  test_limit: 32\n";
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::maybe_write_seeds([](const std::filesystem::path& dir) {
    fuzz::write_file(dir / "matrix.yaml",
                     "base: base.yaml\noutput: out\nset:\n  train.epochs: 3\nmatrix:\n  policy.plugin: [none, "
                     "learn-drop]\n  experiment.seed: [1, 2]\nbaseline: {policy.plugin: none}\nbudget: time\n");
    fuzz::write_file(dir / "named_axis.yaml",
                     "base: base.yaml\noutput: ../runs\nmatrix:\n  net:\n    - {label: a, model.variant: vgg11_bn}\n"
                     "    - {label: b, model.variant: vgg16_bn, model.width: 0.125}\n  policy.plugin: [none, fixed]\n"
                     "baseline: {policy.plugin: none}\nbudget: flops\n");
    fuzz::write_file(dir / "exclude.yaml",
                     "base: base.yaml\noutput: runs\nmatrix:\n  train.lr: [0.1, 0.05]\n  cache.plugin: [ram, disk]\n"
                     "exclude:\n  - {train.lr: 0.05, cache.plugin: disk}\n");
    fuzz::write_file(dir / "inline_base.yaml",
                     "base:\n  train:\n    epochs: 1\noutput: o\nmatrix:\n  experiment.seed: [1, 2, 3]\n");
    fuzz::write_file(dir / "bad.yaml", "base: base.yaml\nmatrix:\n  nope: 1\nexclude: [{}]\n");
  });
  fuzz::write_file(fuzz::scratch() / "suite" / "base.yaml", kBase);
  fuzz::host();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = fuzz::scratch() / "suite" / "fuzz.yaml";
  fuzz::write_file(file, data, size);
  fuzz::expect_clean([&] { core::load_suite(file.string(), fuzz::host()); });
  return 0;
}
