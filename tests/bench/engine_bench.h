// hwwatch-bench engine: the constraint engine under load, modelled on
// `perf bench breakpoint thread`.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace hwwatch::bench {

// Adds the `engine` subcommand; `run` is set to its action.
void AddEngineCommand(CLI::App& app, std::function<int()>* run);

}  // namespace hwwatch::bench
