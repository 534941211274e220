#pragma once
// The differences between the LibTorch versions LearnDrop builds against —
// Debian's 1.13 (CPU, CI) and 2.x (the PyTorch wheel's C++ part, CUDA) — in
// one place, so that the rest of the code is written once. Each helper says
// what differs; none uses the preprocessor when the type system can tell.

#include <sstream>
#include <string>
#include <type_traits>

#include <ATen/core/Tensor.h>

namespace ld::core::compat {

/// The key under which torch::optim::Optimizer::state() keeps a parameter's
/// state. LibTorch 1.13 keys it by the TensorImpl address printed to a string
/// (`c10::guts::to_string`, removed in 2.x); 2.x keys it by the address.
template <class StateMap>
typename StateMap::key_type optimizer_state_key(const StateMap& /*state*/, const at::Tensor& param) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream key;
    key << param.unsafeGetTensorImpl();
    return key.str();
  } else {
    return param.unsafeGetTensorImpl();
  }
}

}  // namespace ld::core::compat
