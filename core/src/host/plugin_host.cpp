#include "learndrop/core/plugin_host.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>

#include <link.h>

#define BOOST_DLL_USE_STD_FS
#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include "learndrop/core/config.h"
#include "learndrop/core/text.h"
#include "learndrop/drop_guards.h"
#include "learndrop/plugin.h"
#include "plugin_guard.h"

namespace ld::core {

namespace fs = std::filesystem;
using Library = std::shared_ptr<boost::dll::shared_library>;

namespace {

std::string stamp_torch(const AbiStamp& s) {
  return std::to_string(s.torch_major) + "." + std::to_string(s.torch_minor) + "." + std::to_string(s.torch_patch);
}

// Throws when a library's stamp does not match the host's in what every
// plugin shares (the SDK ABI, LibTorch, the C++ ABI). The interfaces of the
// extension points are checked per plugin (interface_refusal).
void check_stamp(const AbiStamp& plugin, const std::string& library) {
  const AbiStamp host = current_abi_stamp();
  // Only sdk_abi is read before it matches: an older stamp is shorter.
  if (plugin.sdk_abi < kOldestSdkAbiVersion || plugin.sdk_abi > host.sdk_abi) {
    throw Error("plugin library " + library + " was built for LearnDrop SDK ABI " + std::to_string(plugin.sdk_abi) +
                ", but this host has SDK ABI " + std::to_string(host.sdk_abi) + " (it loads " +
                std::to_string(kOldestSdkAbiVersion) + " to " + std::to_string(host.sdk_abi) + ")" +
                (plugin.sdk_abi < 11 ? " (ABI 11 introduced one version per extension point)" : "") +
                "; rebuild the plugin against this SDK");
  }
  if (plugin.torch_major != host.torch_major || plugin.torch_minor != host.torch_minor ||
      plugin.torch_patch != host.torch_patch) {
    throw Error("plugin library " + library + " was built against LibTorch " + stamp_torch(plugin) +
                ", but this host uses LibTorch " + stamp_torch(host) + "; plugins must use the host's LibTorch");
  }
  if (plugin.cxx11_abi != host.cxx11_abi) {
    throw Error("plugin library " + library +
                " was built with _GLIBCXX_USE_CXX11_ABI=" + std::to_string(plugin.cxx11_abi) +
                ", but this host uses _GLIBCXX_USE_CXX11_ABI=" + std::to_string(host.cxx11_abi));
  }
}

std::uint32_t interface_version(const AbiStamp& s, PluginKind kind) {
  switch (kind) {
    case PluginKind::kModel:
      return s.model_interface;
    case PluginKind::kDataset:
      return s.dataset_interface;
    case PluginKind::kPolicy:
      return s.policy_interface;
    default:
      return s.cache_interface;
  }
}

}  // namespace

std::string interface_refusal(const AbiStamp& plugin, PluginKind kind, const std::string& name,
                              const std::string& library) {
  const std::uint32_t built = interface_version(plugin, kind), here = interface_version(current_abi_stamp(), kind);
  if (built == here) return "";
  return std::string(to_string(kind)) + " plugin '" + name + "' in " + library + " implements the " +
         to_string(kind) + " interface version " + std::to_string(built) + ", but this host has version " +
         std::to_string(here) + "; rebuild it against this SDK (the library's plugins of other kinds still load)";
}

namespace {

// Whether `address` lies in an executable segment of a loaded object: code,
// as opposed to data.
bool is_code(const void* address) {
  struct Query {
    std::uintptr_t address;
    bool code = false;
  } q{reinterpret_cast<std::uintptr_t>(address)};
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        auto* query = static_cast<Query*>(data);
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD || (ph.p_flags & PF_X) == 0) continue;
          const std::uintptr_t begin = info->dlpi_addr + ph.p_vaddr;
          if (query->address >= begin && query->address < begin + ph.p_memsz) {
            query->code = true;
            return 1;
          }
        }
        return 0;
      },
      &q);
  return q.code;
}

// Keeps `library` loaded for as long as the object lives.
template <typename T>
std::shared_ptr<T> keep_loaded(std::unique_ptr<T> object, Library library) {
  return std::shared_ptr<T>(object.release(), [library](T* p) { delete p; });
}

}  // namespace

struct Registered {
  Library library;  // declared first: destroyed after the factory that lives in it
  PluginInfo info;
  ModelFactory model;
  DatasetFactory dataset;
  PolicyFactory policy;
  CacheFactory cache;
};

// Collects one library's registrations; they join the host only if the whole
// entry succeeded.
class CollectingRegistrar final : public Registrar {
 public:
  CollectingRegistrar(Library library, std::string path, const AbiStamp& stamp)
      : library_(std::move(library)), path_(std::move(path)), stamp_(stamp) {}

  void add_model(Manifest m, ModelFactory f) override { add(std::move(m), PluginKind::kModel).model = std::move(f); }
  void add_dataset(Manifest m, DatasetFactory f) override {
    add(std::move(m), PluginKind::kDataset).dataset = std::move(f);
  }
  void add_policy(Manifest m, PolicyFactory f) override {
    add(std::move(m), PluginKind::kPolicy).policy = std::move(f);
  }
  void add_cache(Manifest m, CacheFactory f) override { add(std::move(m), PluginKind::kCache).cache = std::move(f); }

  std::vector<Registered> take() { return std::move(collected_); }
  /// Plugins refused because an interface they implement changed: why.
  std::vector<std::pair<PluginInfo, std::string>> refused() { return std::move(refused_); }

 private:
  Registered& add(Manifest m, PluginKind kind) {
    if (m.kind != kind) {
      throw Error("plugin library " + path_ + " registers '" + m.name + "' as a " + to_string(kind) +
                  " but its manifest says " + to_string(m.kind));
    }
    if (m.name.empty()) throw Error("plugin library " + path_ + " registers a plugin with no name");
    if (std::string why = interface_refusal(stamp_, kind, m.name, path_); !why.empty()) {
      // Refused alone: the library's plugins of unchanged interfaces load.
      refused_.emplace_back(PluginInfo{m, path_}, std::move(why));
      return scratch_;
    }
    Registered r;
    r.library = library_;
    r.info = PluginInfo{std::move(m), path_};
    collected_.push_back(std::move(r));
    return collected_.back();
  }

  Library library_;
  std::string path_;
  AbiStamp stamp_;
  std::vector<Registered> collected_;
  std::vector<std::pair<PluginInfo, std::string>> refused_;
  Registered scratch_;  // takes a refused plugin's factory, never used
};

struct PluginHost::Impl {
  std::vector<Registered> plugins;
  std::vector<std::pair<PluginInfo, std::string>> refused;
  std::set<fs::path> loaded_files;

  const Registered& get(PluginKind kind, const std::string& name) const {
    std::vector<std::string> known;
    for (const auto& r : plugins) {
      if (r.info.manifest.kind != kind) continue;
      if (r.info.manifest.name == name) return r;
      known.push_back(r.info.manifest.name);
    }
    for (const auto& [info, why] : refused) {
      if (info.manifest.kind == kind && info.manifest.name == name) throw Error("cannot use " + why);
    }
    std::sort(known.begin(), known.end());
    throw Error(std::string("no ") + to_string(kind) + " plugin named '" + name + "'" + did_you_mean(name, known) +
                " (known: " + quoted_list(known) + ")");
  }

  // Calls a plugin factory, turning whatever it throws into an ld::Error
  // naming the plugin and its library.
  template <typename T, typename Factory, typename Context>
  std::shared_ptr<T> create(PluginKind kind, const std::string& name, const Factory Registered::*member,
                            const Options& options, const Context& context) const {
    const Registered& r = get(kind, name);
    std::string where = std::string(to_string(kind)) + " plugin '" + name + "' (" + r.info.library + ")";
    std::unique_ptr<T> object;
    try {
      object = (r.*member)(options, context);
    } catch (const Error& e) {
      throw PluginError(where + " failed: " + e.what(), false);
    } catch (const std::exception& e) {
      throw PluginError(where + " failed: " + e.what(), true);
    } catch (...) {
      throw PluginError(where + " failed with an unknown exception", true);
    }
    if (!object) throw Error(where + " returned no object");
    return keep_loaded(std::move(object), r.library);
  }
};

PluginHost::PluginHost() : impl_(std::make_unique<Impl>()) {}
PluginHost::~PluginHost() = default;

void PluginHost::load_library(const fs::path& file) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(file, ec);
  if (ec) canonical = file;
  if (impl_->loaded_files.count(canonical)) return;  // the same file listed twice
  const std::string path = file.string();
  if (!fs::exists(file)) throw Error("plugin library " + path + " does not exist");

  Library library;
  try {
    library = std::make_shared<boost::dll::shared_library>(
        // RTLD_NOW: an unresolved symbol is an error here, not a crash hours later.
        file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    // Boost wraps dlerror's message and appends an unrelated errno text
    // ("...: Bad file descriptor"): keep dlerror's own words.
    std::string why = e.what();
    const std::string marker = "dlerror system message: ";
    const auto at = why.find(marker);
    const auto end = why.rfind(')');
    if (at != std::string::npos && end != std::string::npos && end > at) {
      why = why.substr(at + marker.size(), end - at - marker.size());
    }
    throw Error("cannot load plugin library " + path + ": " + why);
  }
  if (!library->has(LEARNDROP_ENTRY_SYMBOL)) {
    throw Error("plugin library " + path + " is not a LearnDrop plugin: it does not export '" + LEARNDROP_ENTRY_SYMBOL +
                "' (declare it with LEARNDROP_PLUGIN(...))");
  }
  // LEARNDROP_PLUGIN exports a pointer to the entry function. A library that
  // exports a null pointer or a function under that name crashed the host
  // when the pointer was called: check what the symbol is before calling.
  const void* const* slot = &library->get<const void*>(LEARNDROP_ENTRY_SYMBOL);
  if (is_code(slot)) {
    throw Error("plugin library " + path + " exports '" + LEARNDROP_ENTRY_SYMBOL +
                "' as a function, not as the entry pointer LEARNDROP_PLUGIN(...) declares");
  }
  if (*slot == nullptr) {
    throw Error("plugin library " + path + ": its '" + LEARNDROP_ENTRY_SYMBOL +
                "' is a null pointer (declare it with LEARNDROP_PLUGIN(...))");
  }
  if (!is_code(*slot)) {
    throw Error("plugin library " + path + ": its '" + LEARNDROP_ENTRY_SYMBOL +
                "' does not point to a function (declare it with LEARNDROP_PLUGIN(...))");
  }
  const PluginEntry* entry = nullptr;
  try {
    entry = library->get_alias<const PluginEntry*()>(LEARNDROP_ENTRY_SYMBOL)();
  } catch (const std::exception& e) {
    throw Error("plugin library " + path + ": its entry failed: " + e.what());
  }
  if (entry == nullptr || entry->register_plugins == nullptr) {
    throw Error("plugin library " + path + ": its entry returned no registration function");
  }
  check_stamp(entry->stamp, path);

  CollectingRegistrar registrar(library, path, entry->stamp);
  try {
    entry->register_plugins(registrar);
  } catch (const std::exception& e) {
    throw Error("plugin library " + path + " failed while registering its plugins: " + e.what());
  } catch (...) {
    throw Error("plugin library " + path + " failed while registering its plugins");
  }
  std::vector<Registered> added = registrar.take();
  for (std::size_t i = 0; i < added.size(); ++i) {
    const Manifest& m = added[i].info.manifest;
    // A key the host reads in the plugin's section never reaches the plugin.
    const std::string section = to_string(m.kind);
    for (const auto& key : m.keys) {
      for (const auto& host_key : host_section_keys(section)) {
        if (key.name != host_key.name) continue;
        throw Error("plugin library " + path + ": " + section + " '" + m.name + "' declares key '" + key.name +
                    "', which is the host's " + section + "." + key.name + " (" + host_key.meaning +
                    "): the plugin would never see its value; rename the plugin's key");
      }
    }
    // The drop guards are the host's too, applied to every policy's answer;
    // a policy may declare one to give its default, with the host's type.
    if (m.kind == PluginKind::kPolicy) {
      for (const auto& key : m.keys) {
        for (const auto& guard : host_guard_keys()) {
          if (key.name != guard.name || key.type == guard.type) continue;
          throw Error("plugin library " + path + ": policy '" + m.name + "' declares key '" + key.name + "' as " +
                      to_string(key.type) + ", which is the host's drop guard policy." + key.name + " (a " +
                      to_string(guard.type) + ": " + guard.meaning +
                      "): declare it as a " + to_string(guard.type) + " to give its default, or rename the plugin's key");
        }
      }
    }
    for (const auto& existing : impl_->plugins) {
      if (existing.info.manifest.kind == m.kind && existing.info.manifest.name == m.name) {
        throw Error("plugin library " + path + " registers " + to_string(m.kind) + " '" + m.name + "', which " +
                    existing.info.library + " already registered");
      }
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (added[j].info.manifest.kind == m.kind && added[j].info.manifest.name == m.name) {
        throw Error("plugin library " + path + " registers " + to_string(m.kind) + " '" + m.name + "' twice");
      }
    }
  }
  for (auto& r : added) impl_->plugins.push_back(std::move(r));
  for (auto& r : registrar.refused()) impl_->refused.push_back(std::move(r));
  impl_->loaded_files.insert(canonical);
}

void PluginHost::load_directory(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw Error("plugin folder " + dir.string() + " does not exist");
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() == ".so") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) load_library(f);
}

void PluginHost::load_path(const fs::path& path) {
  if (fs::is_directory(path)) {
    load_directory(path);
  } else {
    load_library(path);
  }
}

fs::path PluginHost::builtin_directory() {
  if (const char* dir = std::getenv("LEARNDROP_BUILTIN_PLUGIN_DIR")) return dir;
  fs::path exe = boost::dll::program_location();
  return exe.parent_path() / ".." / LEARNDROP_PLUGIN_SUBDIR;
}

void PluginHost::load_standard_paths() {
  load_directory(builtin_directory().lexically_normal());
  if (const char* env = std::getenv("LEARNDROP_PLUGIN_PATH")) {
    std::stringstream ss(env);
    std::string item;
    while (std::getline(ss, item, ':')) {
      if (item.empty()) continue;
      try {
        load_path(item);
      } catch (const Error& e) {
        throw Error(std::string(e.what()) + " (from LEARNDROP_PLUGIN_PATH)");
      }
    }
  }
}

std::vector<std::string> PluginHost::refused() const {
  std::vector<std::string> out;
  for (const auto& r : impl_->refused) out.push_back(r.second);
  return out;
}

std::vector<PluginInfo> PluginHost::plugins(std::optional<PluginKind> kind) const {
  std::vector<PluginInfo> out;
  for (const auto& r : impl_->plugins) {
    if (!kind || r.info.manifest.kind == *kind) out.push_back(r.info);
  }
  std::sort(out.begin(), out.end(), [](const PluginInfo& a, const PluginInfo& b) {
    if (a.manifest.kind != b.manifest.kind) return a.manifest.kind < b.manifest.kind;
    return a.manifest.name < b.manifest.name;
  });
  return out;
}

const PluginInfo& PluginHost::find(PluginKind kind, const std::string& name) const {
  return impl_->get(kind, name).info;
}

std::vector<PluginInfo> PluginHost::find_any(const std::string& name) const {
  std::vector<PluginInfo> out;
  for (const auto& info : plugins()) {
    if (info.manifest.name == name) out.push_back(info);
  }
  return out;
}

std::shared_ptr<StagedModel> PluginHost::create_model(const std::string& name, const Options& options,
                                                      const ModelContext& context) const {
  return impl_->create<StagedModel>(PluginKind::kModel, name, &Registered::model, options, context);
}
// Datasets, policies and caches go out behind the plugin boundary
// (plugin_guard.h). Models are torch modules the trainer calls through
// forward_stage; their errors surface as LibTorch's.
std::shared_ptr<Dataset> PluginHost::create_dataset(const std::string& name, const Options& options,
                                                    const DatasetContext& context) const {
  return std::make_shared<guard::DatasetGuard>(
      impl_->create<Dataset>(PluginKind::kDataset, name, &Registered::dataset, options, context),
      guard::label("dataset", name, impl_->get(PluginKind::kDataset, name).info.library));
}
std::shared_ptr<DropPolicy> PluginHost::create_policy(const std::string& name, const Options& options,
                                                      const PolicyContext& context) const {
  return std::make_shared<guard::Policy>(
      impl_->create<DropPolicy>(PluginKind::kPolicy, name, &Registered::policy, options, context),
      guard::label("policy", name, impl_->get(PluginKind::kPolicy, name).info.library));
}
std::shared_ptr<FeatureCache> PluginHost::create_cache(const std::string& name, const Options& options,
                                                       const CacheContext& context) const {
  return std::make_shared<guard::Cache>(
      impl_->create<FeatureCache>(PluginKind::kCache, name, &Registered::cache, options, context),
      guard::label("cache", name, impl_->get(PluginKind::kCache, name).info.library));
}

}  // namespace ld::core
