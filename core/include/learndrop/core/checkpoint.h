#pragma once
// A run's checkpoint folder: what a resumed run needs to go on exactly as
// the run would have (docs/checkpoints.md).

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

namespace ld::core {

/// A checkpoint's contents: counters, names and structure as JSON, every
/// floating-point value and model tensor as a named tensor (kept exactly),
/// and the optimizer's own archive.
struct Checkpoint {
  nlohmann::json meta = nlohmann::json::object();
  std::map<std::string, at::Tensor> tensors;
  std::string optimizer;       ///< The optimizer's serialized archive.
  std::filesystem::path from;  ///< The folder it was read from.

  /// Tensor `name`; throws ld::Error naming the checkpoint when absent.
  const at::Tensor& tensor(const std::string& name) const;
};

/// Writes `ckpt` as RUN_DIR/checkpoint/: state.json, tensors.pt,
/// optimizer.pt and MANIFEST.json (bytes and CRC-32 of each file), written
/// into a temporary folder, synced, and renamed. The checkpoint it replaces
/// becomes checkpoint.prev/ and stays until the next one is complete.
/// Throws ld::Error naming the file at fault; then nothing of the new
/// checkpoint is left and the older ones are untouched.
void write_checkpoint(const std::filesystem::path& run_dir, const Checkpoint& ckpt);

/// Whether RUN_DIR has a checkpoint folder (complete or not).
bool has_checkpoint(const std::filesystem::path& run_dir);

/// Reads RUN_DIR/checkpoint/, checking every file against the manifest; when
/// it is missing, truncated or corrupt, checkpoint.prev/ with a warning that
/// names the bad file. Throws ld::Error naming the file at fault when neither
/// is usable.
Checkpoint read_checkpoint(const std::filesystem::path& run_dir);

/// train.checkpoint_keep: all: the checkpoint just written (RUN_DIR/checkpoint/,
/// at the end of epoch `epochs_done`) also as RUN_DIR/checkpoints/epoch-N/
/// (hard links where the file system allows, copies elsewhere; made under a
/// temporary name and renamed). Another run branches from it.
void keep_epoch_checkpoint(const std::filesystem::path& run_dir, std::int64_t epochs_done);

/// The kept epoch checkpoints of RUN_DIR (checkpoints/epoch-N), by N.
std::map<std::int64_t, std::filesystem::path> kept_epoch_checkpoints(const std::filesystem::path& run_dir);

/// Reads one checkpoint folder (a kept epoch checkpoint), checking each file
/// against its manifest. Throws ld::Error naming the file at fault.
Checkpoint read_checkpoint_folder(const std::filesystem::path& folder);

}  // namespace ld::core
