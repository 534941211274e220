// Loading torchvision state dicts (`model.weights`) against outputs computed
// by torchvision itself (tools/checks/torchvision_weights.py wrote the fixture).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include <torch/csrc/jit/serialization/pickle.h>

#include "learndrop/registrar.h"
#include "test_env.h"

namespace ld::core {

namespace {

c10::Dict<c10::IValue, c10::IValue> read_io(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return torch::jit::pickle_load(bytes).toGenericDict();
}

std::shared_ptr<StagedModel> load(const std::string& folder, const std::string& variant_override = "",
                                  const std::string& width_override = "") {
  static auto host = test::builtin_host();
  auto io = read_io(folder + "/io.pt");
  std::string variant = variant_override.empty() ? io.at("variant").toStringRef() : variant_override;
  std::string plugin = variant.rfind("resnet", 0) == 0 ? "resnet" : "vgg";
  std::map<std::string, std::string> keys = {{"variant", variant}, {"weights", folder + "/weights.pt"}};
  keys["width"] = width_override.empty() ? std::to_string(io.at("width").toDouble()) : width_override;
  if (plugin == "resnet") keys["stem"] = io.at("stem").toStringRef();
  std::int64_t size = io.at("input_size").toInt();
  return host->create_model(plugin, test::plugin_options(*host, PluginKind::kModel, plugin, keys),
                            ModelContext{3, size, size, io.at("num_classes").toInt()});
}

void expect_torchvision_output(const std::string& folder) {
  SCOPED_TRACE(folder);
  auto io = read_io(folder + "/io.pt");
  auto model = load(folder);
  for (auto& p : model->parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
  model->eval();
  at::NoGradGuard no_grad;
  at::Tensor x = io.at("input").toTensor().contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor expected = io.at("output").toTensor();
  double diff = (model->forward(x, 0) - expected).abs().max().item<double>();
  EXPECT_LE(diff, 1e-4);
}

const std::string kFixture = std::string(LEARNDROP_SOURCE_DIR) + "/tests/fixtures/resnet18_narrow";

}  // namespace

TEST(ModelWeights, TorchvisionStateDictGivesTorchvisionsOutput) { expect_torchvision_output(kFixture); }

TEST(ModelWeights, FullSizeCasesWhenAsked) {
  const char* dir = std::getenv("LEARNDROP_WEIGHTS_CHECK");
  if (dir == nullptr) GTEST_SKIP() << "set LEARNDROP_WEIGHTS_CHECK (see tools/checks/torchvision_weights.py)";
  for (const auto& e : std::filesystem::directory_iterator(dir)) expect_torchvision_output(e.path().string());
}

TEST(ModelWeights, OrderedDictGetsAMessageWithTheFix) {
  static auto host = test::builtin_host();
  std::map<std::string, std::string> keys = {{"variant", "resnet18"},
                                             {"width", "0.0625"},
                                             {"stem", "cifar"},
                                             {"weights", kFixture + "/weights-ordereddict.pt"}};
  try {
    host->create_model("resnet", test::plugin_options(*host, PluginKind::kModel, "resnet", keys),
                       ModelContext{3, 16, 16, 10});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("torch.save(dict(model.state_dict()), path)"), std::string::npos) << e.what();
  }
}

TEST(ModelWeights, AnotherArchitectureIsRefused) {
  try {
    load(kFixture, "resnet34");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has no 'layer1.2.conv1.weight'"), std::string::npos) << e.what();
  }
  try {
    load(kFixture, "", "0.125");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'conv1.weight' has shape [4, 3, 3, 3], expected [8, 3, 3, 3]"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace ld::core
