// ldrop: the LearnDrop command line. The commands are in registry.cpp.

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "commands.h"

int main(int argc, char** argv) {
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  CLI::App app{"LearnDrop: faster CNN training by dropping layers that stopped learning"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "ldrop 0.1.0");
  const std::vector<ld::cli::Command> commands = ld::cli::register_commands(app);
  if (const int code = ld::cli::refuse_unknown_command(app, argc, argv)) return code;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : ld::cli::kBadInput;
  }
  return ld::cli::run_command(commands);
}
