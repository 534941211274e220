#pragma once

#include <cstdint>

#include <torch/version.h>

namespace ld {

/// Version of the binary interface between the host and plugins. Bumped
/// whenever an SDK interface changes its layout or virtual functions; the host
/// refuses a plugin built against another version.
// 2: FeatureCache::begin(CacheLayout), stats()
// 3: PolicyInput learning rates, StageStats::mean_grad_norm, Dataset::shift_flip / get_untransformed
// 4: CacheContext::device, FeatureCache::device(); get returns the storage type
// 5: StagedModel::label() / set_label (the host no longer reads a "variant" option)
// 6: DropPolicy::has_state / save_state / load_state, PolicyState
// 7: FeatureCache::retain / reopen (a resumed run adopts a kept cache), StagedModel::torchvision_name
// 8: FeatureCache::grow (rows of data that arrive later), PolicyInput::samples and arrivals (streams)
// 9: CacheContext::device is an at::Device (was a string); the memory and budget helpers moved to memory.h
// 10: PolicyInput::last_drop_epoch; DropGuards::clamp is const and keeps no state (save/load removed)
constexpr std::uint32_t kSdkAbiVersion = 10;

/// What a plugin library was built against. Plain integers only, so that the
/// host can read it before it trusts any C++ type from the library.
struct AbiStamp {
  std::uint32_t sdk_abi;
  std::uint32_t torch_major;
  std::uint32_t torch_minor;
  std::uint32_t torch_patch;
  std::uint32_t cxx11_abi;  ///< The value of `_GLIBCXX_USE_CXX11_ABI`.
};

/// The stamp of the translation unit that includes this header.
constexpr AbiStamp current_abi_stamp() {
  return AbiStamp {
    kSdkAbiVersion, TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH,
#if defined(_GLIBCXX_USE_CXX11_ABI)
        static_cast<std::uint32_t>(_GLIBCXX_USE_CXX11_ABI)
#else
        0
#endif
  };
}

}  // namespace ld
