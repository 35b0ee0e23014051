// hwwatch-bench rpc: hwwatchd over its real Unix socket, against the empty
// RPC and against perf_event_open called directly.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace hwwatch::bench {

// Adds the `rpc` subcommand; `run` is set to its action.
void AddRpcCommand(CLI::App& app, std::function<int()>* run);

// Adds the `load` subcommand (tests/bench/load_bench.cpp).
void AddLoadCommand(CLI::App& app, std::function<int()>* run);
// hits_bench.cpp
void AddHitsCommand(CLI::App& app, std::function<int()>* run);

}  // namespace hwwatch::bench
