#pragma once
// The differences between the LibTorch versions LearnDrop builds against —
// Debian's 1.13 (CPU, CI) and 2.x (the PyTorch wheel's C++ part, CUDA) — in
// one place, so that the rest of the code is written once. Each helper says
// what differs; none uses the preprocessor when the type system can tell.

#include <sstream>
#include <string>
#include <type_traits>

#include <ATen/autocast_mode.h>
#include <ATen/core/Tensor.h>
#include <torch/version.h>

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

// Autocast state per device type. LibTorch 1.13 has one function per device
// type (set_enabled / set_cpu_enabled, set_autocast_gpu_dtype /
// set_autocast_cpu_dtype); 2.4 and later take the device type as an
// argument and deprecate (later remove) the old names. The version decides
// which names exist at all, so this is the one place with a version test.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
inline bool autocast_enabled(at::DeviceType type) { return at::autocast::is_autocast_enabled(type); }
inline at::ScalarType autocast_dtype(at::DeviceType type) { return at::autocast::get_autocast_dtype(type); }
inline void set_autocast(at::DeviceType type, bool enabled, at::ScalarType dtype) {
  at::autocast::set_autocast_enabled(type, enabled);
  at::autocast::set_autocast_dtype(type, dtype);
}
#else
inline bool autocast_enabled(at::DeviceType type) {
  return type == at::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
inline at::ScalarType autocast_dtype(at::DeviceType type) {
  return type == at::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
inline void set_autocast(at::DeviceType type, bool enabled, at::ScalarType dtype) {
  if (type == at::kCUDA) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
}
#endif

}  // namespace ld::core::compat
