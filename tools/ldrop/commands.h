#pragma once

#include <string>
#include <vector>

namespace ld::core {
class PluginHost;
}

namespace ld::cli {

/// `ldrop plugins list [--json]`.
int plugins_list(const core::PluginHost& host, bool json);

/// `ldrop plugins describe NAME [--json]`.
int plugins_describe(const core::PluginHost& host, const std::string& name, bool json);

/// `ldrop compare BASELINE RUN...`: a table of runs against a baseline run.
int compare_runs(const std::string& baseline, const std::vector<std::string>& runs);

}  // namespace ld::cli
