#pragma once

#include <functional>
#include <memory>

#include "learndrop/cache.h"
#include "learndrop/dataset.h"
#include "learndrop/manifest.h"
#include "learndrop/model.h"
#include "learndrop/options.h"
#include "learndrop/policy.h"

namespace ld {

using ModelFactory = std::function<std::unique_ptr<StagedModel>(const Options&, const ModelContext&)>;
using DatasetFactory = std::function<std::unique_ptr<Dataset>(const Options&, const DatasetContext&)>;
using PolicyFactory = std::function<std::unique_ptr<DropPolicy>(const Options&, const PolicyContext&)>;
using CacheFactory = std::function<std::unique_ptr<FeatureCache>(const Options&, const CacheContext&)>;

/// The host's registry as a plugin library sees it during registration.
///
/// A library registers each of its plugins explicitly, inside its entry
/// function; the manifest's `kind` must match the method.
class LEARNDROP_VISIBLE Registrar {
 public:
  virtual ~Registrar() = default;
  virtual void add_model(Manifest manifest, ModelFactory factory) = 0;
  virtual void add_dataset(Manifest manifest, DatasetFactory factory) = 0;
  virtual void add_policy(Manifest manifest, PolicyFactory factory) = 0;
  virtual void add_cache(Manifest manifest, CacheFactory factory) = 0;
};

}  // namespace ld
