#pragma once

#include <stdexcept>
#include <string>

#include "learndrop/export.h"

namespace ld {

/// The one error type of LearnDrop.
///
/// Plugins report malformed input or an impossible request by throwing it;
/// the host catches it at every call into a plugin and adds which plugin,
/// library and config key were involved. Messages are full sentences that say
/// what was expected.
///
/// Example:
/// ```
/// throw ld::Error("dataset.root: '" + root + "' has no train-images-idx3-ubyte[.gz]");
/// ```
class LEARNDROP_VISIBLE Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace ld
