// Fuzz target: the YAML config loader with --set overrides.
// Input: a config file. Lines of the form "#set KEY=VALUE" (YAML comments,
// so the parser skips them) are also applied as --set overrides, in order.
// Checked: a config either resolves or is refused with ld::Error, and an
// effective config resolves to the same run (same hash) again.
#include <sstream>

#include "fuzz_support.h"
#include "learndrop/core/config.h"

using namespace ld;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::maybe_write_seeds([](const std::filesystem::path& dir) {
    fuzz::write_file(dir / "empty.yaml", "");
    fuzz::write_file(dir / "small.yaml",
                     "experiment:\n  name: fuzz\n  seed: 3\ntrain:\n  epochs: 2\n  lr: 0.05\n"
                     "  lr_schedule: cosine\n#set train.batch_size=64\n#set policy.plugin=fixed\n");
    fuzz::write_file(dir / "sections.yaml",
                     "model:\n  plugin: resnet\n  variant: resnet18\n  stem: cifar\ndataset:\n  plugin: cifar10\n"
                     "  augment: crop_flip\npolicy:\n  plugin: learn-drop\n  window: 3\ncache:\n  plugin: auto\n"
                     "  dtype: float16\n  views: 2\nruntime:\n  threads: auto\n  device: cpu\n"
                     "#set runtime.prefetch=4\n#set cache.ram_budget=1G\n");
    fuzz::write_file(dir / "bad.yaml", "train:\n  epochs: [1\n  lr: 0.1\n  lr: 0.2\n#set train.epochs\n");
  });
  fuzz::host();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> sets;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("#set ", 0) == 0) sets.push_back(line.substr(5));
  }
  fuzz::expect_clean([&] {
    core::ConfigTree tree = core::parse_config(text, "fuzz.yaml");
    for (const auto& s : sets) core::apply_override(tree, s);
    const core::RunConfig config = core::resolve_config(tree, fuzz::host());
    const std::string effective = config.effective_yaml();
    const core::RunConfig again = core::resolve_config(core::parse_config(effective, "effective.yaml"), fuzz::host());
    fuzz::check(again.hash() == config.hash(), "the effective config resolves to another run:\n" + effective);
  });
  return 0;
}
