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
                                  const std::string& width_override = "", const std::string& file = "weights.pt") {
  static auto host = test::builtin_host();
  auto io = read_io(folder + "/io.pt");
  std::string variant = variant_override.empty() ? io.at("variant").toStringRef() : variant_override;
  std::string plugin = variant.rfind("resnet", 0) == 0 ? "resnet" : "vgg";
  std::map<std::string, std::string> keys = {{"variant", variant}, {"weights", folder + "/" + file}};
  keys["width"] = width_override.empty() ? std::to_string(io.at("width").toDouble()) : width_override;
  if (plugin == "resnet") keys["stem"] = io.at("stem").toStringRef();
  std::int64_t size = io.at("input_size").toInt();
  return host->create_model(plugin, test::plugin_options(*host, PluginKind::kModel, plugin, keys),
                            ModelContext{3, size, size, io.at("num_classes").toInt()});
}

void expect_torchvision_output(const std::string& folder, const std::string& file) {
  SCOPED_TRACE(folder + "/" + file);
  auto io = read_io(folder + "/io.pt");
  auto model = load(folder, "", "", file);
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

TEST(ModelWeights, TorchvisionStateDictGivesTorchvisionsOutput) {
  expect_torchvision_output(kFixture, "weights.pt");              // torch.save(dict(model.state_dict()))
  expect_torchvision_output(kFixture, "weights-ordereddict.pt");  // torch.save(model.state_dict())
}

TEST(ModelWeights, FullSizeCasesWhenAsked) {
  const char* dir = std::getenv("LEARNDROP_WEIGHTS_CHECK");
  if (dir == nullptr) GTEST_SKIP() << "set LEARNDROP_WEIGHTS_CHECK (see tools/checks/torchvision_weights.py)";
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    expect_torchvision_output(e.path().string(), "weights.pt");
    expect_torchvision_output(e.path().string(), "weights-ordereddict.pt");
  }
}

TEST(ModelWeights, OrderedDictStateDictLoadsLikeAPlainDict) {
  // torch.save(model.state_dict()) writes an OrderedDict, which LibTorch 1.13 cannot unpickle by itself.
  static auto host = test::builtin_host();
  auto make = [&](const std::string& file) {
    std::map<std::string, std::string> keys = {
        {"variant", "resnet18"}, {"width", "0.0625"}, {"stem", "cifar"}, {"weights", kFixture + "/" + file}};
    return host->create_model("resnet", test::plugin_options(*host, PluginKind::kModel, "resnet", keys),
                              ModelContext{3, 16, 16, 10});
  };
  auto ordered = make("weights-ordereddict.pt")->named_parameters();
  auto plain = make("weights.pt")->named_parameters();
  ASSERT_EQ(ordered.size(), plain.size());
  for (const auto& p : plain) EXPECT_TRUE(p.value().equal(ordered[p.key()])) << p.key();
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
