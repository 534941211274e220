#pragma once

#include <cstdint>

#include <torch/version.h>

namespace ld {

/// Version of what every plugin library shares with the host, whatever it
/// implements: the entry and its stamp, the Registrar, Manifest, ConfigKey,
/// Options and Error. The host refuses a library built against another one.
// 2: FeatureCache::begin(CacheLayout), stats()
// 3: PolicyInput learning rates, StageStats::mean_grad_norm, Dataset::shift_flip / get_untransformed
// 4: CacheContext::device, FeatureCache::device(); get returns the storage type
// 5: StagedModel::label() / set_label (the host no longer reads a "variant" option)
// 6: DropPolicy::has_state / save_state / load_state, PolicyState
// 7: FeatureCache::retain / reopen (a resumed run adopts a kept cache), StagedModel::torchvision_name
// 8: FeatureCache::grow (rows of data that arrive later), PolicyInput::samples and arrivals (streams)
// 9: CacheContext::device is an at::Device (was a string); the memory and budget helpers moved to memory.h
// 10: PolicyInput::last_drop_epoch; DropGuards::clamp is const and keeps no state (save/load removed)
// 11: one version per extension point (below); from here on a change to one
//     interface bumps that interface's version only
// 12: ValueType::kPath (a path key the host resolves against the config's
//     folder). Nothing else changed: the host still loads ABI 11 libraries
//     (kOldestSdkAbiVersion), which cannot declare a path key.
constexpr std::uint32_t kSdkAbiVersion = 12;
/// The oldest SDK ABI whose libraries this host loads: 11 and 12 share the
/// stamp's layout and every shared type's layout.
constexpr std::uint32_t kOldestSdkAbiVersion = 11;

/// The version of each extension point's interface: its classes (layout and
/// virtual functions), the context its factory receives and the structs its
/// calls take. A change to one bumps that one alone, so a plugin keeps
/// loading as long as the interfaces it implements are unchanged: a policy
/// plugin built before a change to the cache interface still loads. The
/// history of each is in docs/plugins.md#versions.
constexpr std::uint32_t kModelInterfaceVersion = 1;    ///< StagedModel, ModelContext
constexpr std::uint32_t kDatasetInterfaceVersion = 2;  ///< Dataset, DatasetContext, Batch, ShiftFlip
constexpr std::uint32_t kPolicyInterfaceVersion = 3;   ///< DropPolicy, PolicyInput, StageStats, Decision, PolicyContext, PolicyState
constexpr std::uint32_t kCacheInterfaceVersion = 2;    ///< FeatureCache, BatchReader, CacheLayout, CacheContext

/// What a plugin library was built against. Plain integers only, so that the
/// host can read it before it trusts any C++ type from the library. The
/// first field stays `sdk_abi` in every version: the host reads it first and
/// only reads on when it matches.
struct AbiStamp {
  std::uint32_t sdk_abi;
  std::uint32_t torch_major;
  std::uint32_t torch_minor;
  std::uint32_t torch_patch;
  std::uint32_t cxx11_abi;  ///< The value of `_GLIBCXX_USE_CXX11_ABI`.
  std::uint32_t model_interface;
  std::uint32_t dataset_interface;
  std::uint32_t policy_interface;
  std::uint32_t cache_interface;
};

/// The stamp of the translation unit that includes this header.
constexpr AbiStamp current_abi_stamp() {
  return AbiStamp {
    kSdkAbiVersion, TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH,
#if defined(_GLIBCXX_USE_CXX11_ABI)
        static_cast<std::uint32_t>(_GLIBCXX_USE_CXX11_ABI),
#else
        0,
#endif
        kModelInterfaceVersion, kDatasetInterfaceVersion, kPolicyInterfaceVersion, kCacheInterfaceVersion
  };
}

}  // namespace ld
