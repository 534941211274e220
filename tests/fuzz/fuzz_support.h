#pragma once
// Shared by the fuzz targets (tools/fuzz.sh, docs/testing.md): a scratch
// folder, the built-in plugins, and the one rule every target checks.
//
// The rule: bad input may be refused with ld::Error (that is what the parsers
// are for), and good input may succeed. Anything else is a crash for
// libFuzzer: a signal, a sanitizer report, an exception of another type, or a
// plugin that threw something other than ld::Error (PluginError::unexpected).

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "learndrop/core/plugin_host.h"

namespace ld::fuzz {

/// A folder of this process's own under $TMPDIR (default /dev/shm when it
/// exists), removed at exit.
const std::filesystem::path& scratch();

/// Writes `size` bytes to `file` (creating its folder).
void write_file(const std::filesystem::path& file, const std::uint8_t* data, std::size_t size);
void write_file(const std::filesystem::path& file, const std::string& text);
std::string read_file(const std::filesystem::path& file);

/// The built-in plugins of this build (quiet logging, one intra-op thread).
core::PluginHost& host();

/// Options of plugin `name`: the manifest's defaults with `set` applied.
Options plugin_options(PluginKind kind, const std::string& name, const std::map<std::string, std::string>& set);

/// Runs `f`: returns normally when it succeeds or refuses with ld::Error;
/// aborts (a crash for libFuzzer) on anything else, printing what it was.
void expect_clean(const std::function<void()>& f);

/// Aborts with `what` when `ok` is false: an invariant a target checks.
void check(bool ok, const std::string& what);

/// When LDROP_FUZZ_WRITE_SEEDS=DIR is set, calls `write(DIR)` and exits: how
/// each target writes its committed seed corpus (tools/fuzz.sh --seeds).
void maybe_write_seeds(const std::function<void(const std::filesystem::path&)>& write);

}  // namespace ld::fuzz
