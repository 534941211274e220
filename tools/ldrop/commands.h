#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ld {
class StagedModel;
}

namespace ld::core {
class PluginHost;
struct RunConfig;
}  // namespace ld::core

namespace ld::cli {

/// Arguments of `ldrop model summary`.
struct ModelSummaryArgs {
  std::string variant;
  std::string stem = "imagenet";
  std::int64_t input_size = 224;
  std::int64_t in_channels = 3;
  std::int64_t num_classes = 1000;
  std::string width = "1.0";
  bool json = false;
};

/// `ldrop model summary`: one row per stage with output shape, parameters,
/// forward FLOPs and share, plus totals.
int model_summary(const core::PluginHost& host, const ModelSummaryArgs& args);

/// The model `args` describes (a model plugin whose `variant` key accepts it,
/// other keys at their defaults).
std::shared_ptr<StagedModel> create_summary_model(const core::PluginHost& host, const ModelSummaryArgs& args);

/// `ldrop model bench`: training images/s of the model on random data.
int model_bench(const core::PluginHost& host, const ModelSummaryArgs& args, std::int64_t batch, std::int64_t steps,
                int threads);

/// `ldrop data bench`: training samples/s of the config's dataset (decode,
/// transform, batch) with `threads` TBB and intra-op threads, over `samples`
/// samples (0 = one epoch).
int data_bench(const core::PluginHost& host, const core::RunConfig& cfg, int threads, std::int64_t samples);

/// `ldrop cache plan`: per possible cut, the bytes per sample, the cache
/// size for the training set and the forward FLOPs each epoch would save.
int cache_plan(const core::PluginHost& host, const core::RunConfig& cfg, const std::string& run_dir, bool json);

/// Arguments of `ldrop cache bench`.
struct CacheBenchArgs {
  std::string plugin = "disk";
  std::string dir;
  std::int64_t rows = 4096;
  std::int64_t row_bytes = 256 * 1024;
  std::int64_t batch = 128;
  std::int64_t prefetch = 4;
  int threads = 2;
  int epochs = 3;
};

/// `ldrop cache bench`: write and shuffled-read bandwidth of a cache plugin
/// with the page cache dropped (the reader alone, no training).
int cache_bench(const core::PluginHost& host, const CacheBenchArgs& args);

/// `ldrop plugins list [--json]`.
int plugins_list(const core::PluginHost& host, bool json);

/// `ldrop plugins describe NAME [--json]`.
int plugins_describe(const core::PluginHost& host, const std::string& name, bool json);

/// `ldrop compare BASELINE RUN...`: a table of runs against a baseline run.
int compare_runs(const std::string& baseline, const std::vector<std::string>& runs);

}  // namespace ld::cli
