#include "fuzz_support.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>

#include "learndrop/core/config.h"

namespace ld::fuzz {

namespace fs = std::filesystem;

namespace {

struct Scratch {
  fs::path path;
  Scratch() {
    const char* tmp = std::getenv("TMPDIR");
    fs::path base = tmp ? fs::path(tmp) : fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    path = base / ("ldrop-fuzz-" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

const fs::path& scratch() {
  static Scratch s;
  return s.path;
}

void write_file(const fs::path& file, const std::uint8_t* data, std::size_t size) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) {
    std::cerr << "fuzz: cannot write " << file << "\n";
    std::abort();
  }
}

void write_file(const fs::path& file, const std::string& text) {
  write_file(file, reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

core::PluginHost& host() {
  static core::PluginHost* h = [] {
    spdlog::set_level(spdlog::level::off);
    at::set_num_threads(1);
    auto* made = new core::PluginHost();  // lives as long as the process: plugins stay loaded
    made->load_directory(core::PluginHost::builtin_directory());
    return made;
  }();
  return *h;
}

Options plugin_options(PluginKind kind, const std::string& name, const std::map<std::string, std::string>& set) {
  const core::PluginInfo& info = host().find(kind, name);
  std::map<std::string, Value> values;
  for (const auto& k : info.manifest.keys) {
    auto it = set.find(k.name);
    values[k.name] = core::parse_value(k, it != set.end() ? it->second : k.default_value, k.name);
  }
  return Options(to_string(kind), values);
}

void expect_clean(const std::function<void()>& f) {
  try {
    f();
  } catch (const core::PluginError& e) {
    if (e.unexpected()) {
      std::cerr << "fuzz: a plugin threw something other than ld::Error: " << e.what() << "\n";
      std::abort();
    }
  } catch (const Error&) {
    // a refusal of bad input: what the parsers are for
  } catch (const std::exception& e) {
    std::cerr << "fuzz: an exception other than ld::Error escaped: " << e.what() << "\n";
    std::abort();
  }
}

void check(bool ok, const std::string& what) {
  if (ok) return;
  std::cerr << "fuzz: invariant broken: " << what << "\n";
  std::abort();
}

void maybe_write_seeds(const std::function<void(const fs::path&)>& write) {
  const char* dir = std::getenv("LDROP_FUZZ_WRITE_SEEDS");
  if (!dir) return;
  fs::create_directories(dir);
  write(dir);
  std::exit(0);
}

}  // namespace ld::fuzz
