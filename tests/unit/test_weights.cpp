// Starting from trained weights (`model.weights`, `model.head`): torchvision
// state dicts against outputs computed by torchvision itself
// (tools/checks/torchvision_weights.py wrote the fixture), LearnDrop run
// folders, head resets and the errors for missing, garbage or foreign files.
#include <gtest/gtest.h>

#include <limits>

#include <cstdlib>
#include <fstream>

#include <torch/csrc/jit/serialization/pickle.h>

#include "learndrop/registrar.h"
#include "run/run_output.h"
#include "run/start_weights.h"
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
  std::map<std::string, std::string> keys = {{"variant", variant}};
  keys["width"] = width_override.empty() ? std::to_string(io.at("width").toDouble()) : width_override;
  if (plugin == "resnet") keys["stem"] = io.at("stem").toStringRef();
  std::int64_t size = io.at("input_size").toInt();
  auto model = host->create_model(plugin, test::plugin_options(*host, PluginKind::kModel, plugin, keys),
                                  ModelContext{3, size, size, io.at("num_classes").toInt()});
  load_start_weights(*model, folder + "/" + file, false);
  return model;
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
    std::map<std::string, std::string> keys = {{"variant", "resnet18"}, {"width", "0.0625"}, {"stem", "cifar"}};
    auto model = host->create_model("resnet", test::plugin_options(*host, PluginKind::kModel, "resnet", keys),
                                    ModelContext{3, 16, 16, 10});
    load_start_weights(*model, kFixture + "/" + file, false);
    return model;
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
    EXPECT_NE(std::string(e.what()).find("'conv1.weight' has shape [4, 3, 3, 3], this model's stage0.conv1.weight "
                                         "[8, 3, 3, 3]; the file holds another architecture or width"),
              std::string::npos)
        << e.what();
  }
}

std::shared_ptr<StagedModel> tiny_resnet(std::int64_t classes) {
  static auto host = test::builtin_host();
  std::map<std::string, std::string> keys = {{"variant", "resnet18"}, {"width", "0.0625"}, {"stem", "cifar"}};
  return host->create_model("resnet", test::plugin_options(*host, PluginKind::kModel, "resnet", keys),
                            ModelContext{3, 16, 16, classes});
}

// A model.pt as a run writes it (RunOutput::save_model) in a run folder.
std::string save_run(const test::TempDir& dir, StagedModel& model) {
  RunOutput out(dir.path() / "run");
  out.save_model(model);
  return (dir.path() / "run").string();
}

TEST(ModelWeights, ARunFolderOrItsModelPtStartsTheSameModel) {
  test::TempDir dir;
  auto trained = tiny_resnet(10);
  {
    at::NoGradGuard no_grad;
    for (auto& p : trained->parameters()) p.add_(0.25);  // not the initialisation
  }
  const std::string run = save_run(dir, *trained);
  for (const std::string& path : {run, run + "/model.pt"}) {
    auto model = tiny_resnet(10);
    const std::string what = load_start_weights(*model, path, false);
    EXPECT_NE(what.find("(LearnDrop names)"), std::string::npos) << what;
    auto want = trained->named_parameters();
    for (const auto& p : model->named_parameters()) EXPECT_TRUE(p.value().equal(want[p.key()])) << p.key();
    auto buffers = trained->named_buffers();
    for (const auto& b : model->named_buffers()) EXPECT_TRUE(b.value().equal(buffers[b.key()])) << b.key();
  }
}

TEST(ModelWeights, AHeadForAnotherClassCountIsRefusedUnlessReset) {
  test::TempDir dir;
  auto trained = tiny_resnet(10);
  const std::string run = save_run(dir, *trained);
  auto model = tiny_resnet(4);
  const std::string error = test::error_of([&] { load_start_weights(*model, run, false); });
  EXPECT_NE(error.find("'head.fc.weight' has shape [10, 32], this model's head.fc.weight [4, 32]"), std::string::npos)
      << error;
  EXPECT_NE(error.find("set model.head: reset"), std::string::npos) << error;
  // Reset: every stage from the file, the head as the plugin initialised it.
  auto fresh = tiny_resnet(4);
  const auto head_before = fresh->head_module()->named_parameters();
  std::map<std::string, at::Tensor> head_copy;
  for (const auto& p : head_before) head_copy[p.key()] = p.value().clone();
  const std::string what = load_start_weights(*fresh, run, true);
  EXPECT_NE(what.find("head reset (2 tensors newly initialised)"), std::string::npos) << what;
  auto want = trained->named_parameters();
  for (const auto& p : fresh->named_parameters()) {
    if (p.key().rfind("head.", 0) == 0) continue;
    EXPECT_TRUE(p.value().equal(want[p.key()])) << p.key();
  }
  for (const auto& p : fresh->head_module()->named_parameters()) {
    EXPECT_TRUE(p.value().equal(head_copy.at(p.key()))) << "head " << p.key() << " was loaded";
  }
  EXPECT_EQ(fresh->head_module()->named_parameters()["fc.weight"].size(0), 4);
}

// Issue 31, defect 3: a fine-tune from a diverged run's weights was accepted.
TEST(ModelWeights, NonFiniteWeightsAreRefusedNamingTheTensor) {
  test::TempDir dir;
  auto trained = tiny_resnet(10);
  {
    at::NoGradGuard no_grad;
    trained->parameters()[0].view(-1)[3] = std::numeric_limits<float>::quiet_NaN();
  }
  const std::string first = trained->named_parameters().begin()->key();
  const std::string run = save_run(dir, *trained);
  auto model = tiny_resnet(10);
  const std::string error = test::error_of([&] { load_start_weights(*model, run, false); });
  EXPECT_NE(error.find("'" + first + "' holds non-finite values (NaN or inf): the run that saved it diverged"),
            std::string::npos)
      << error;
}

TEST(ModelWeights, AMissingOrGarbageFileIsNamedFirst) {
  test::TempDir dir;
  auto model = tiny_resnet(10);
  const std::string missing = (dir.path() / "nope.pt").string();
  std::string error = test::error_of([&] { load_start_weights(*model, missing, false); });
  EXPECT_NE(error.find("model.weights: " + missing + " does not exist"), std::string::npos) << error;
  const std::string garbage = (dir.path() / "garbage.pt").string();
  std::ofstream(garbage) << "not a tensor archive";
  error = test::error_of([&] { load_start_weights(*model, garbage, false); });
  EXPECT_NE(error.find("model.weights: " + garbage + " is neither a LearnDrop model.pt nor a state dict"),
            std::string::npos)
      << error;
  std::filesystem::create_directories(dir.path() / "unfinished");
  std::ofstream(dir.path() / "unfinished" / "config.yaml") << "x: 1\n";
  error = test::error_of([&] { load_start_weights(*model, (dir.path() / "unfinished").string(), false); });
  EXPECT_NE(error.find("is a folder without model.pt (the run has not finished)"), std::string::npos) << error;
}

}  // namespace ld::core
