#pragma once
// Starting a run from trained weights (model.weights, model.head): the
// host's, for every model plugin; a plugin only maps names to torchvision's
// (StagedModel::torchvision_name), as it does for ldrop export.

#include <string>

#include "learndrop/model.h"

namespace ld::core {

/// Loads `path` into `model` before training and returns what was loaded,
/// for the log. `path` is
///  - a LearnDrop run folder (its model.pt), or a model.pt itself: the names
///    are LearnDrop's, the architecture must be this model's;
///  - a torchvision state dict (`torch.save(model.state_dict(), path)`): the
///    names are mapped with `model.torchvision_name`.
/// Every parameter and buffer must be in the file with its shape, and every
/// tensor of the file must be used. With `reset_head` the head's tensors are
/// not loaded (the head keeps the plugin's fresh initialisation, for a new
/// class count) and the file's head tensors are left unused. Throws ld::Error
/// naming the file (first, when it is missing or unreadable), the tensor and
/// both shapes; a head of another shape suggests `model.head: reset`.
std::string load_start_weights(StagedModel& model, const std::string& path, bool reset_head);

}  // namespace ld::core
