// hwwatch-bench: measures hwwatch. Speed goals are ratios measured in one
// run, because this machine is shared and noisy.
#include <CLI/CLI.hpp>
#include <functional>

#include "tests/bench/engine_bench.h"
#include "tests/bench/rpc_bench.h"

int main(int argc, char** argv) {
  CLI::App app{"hwwatch-bench: benchmarks of the constraint engine and the daemon"};
  app.require_subcommand(1);
  std::function<int()> run;
  hwwatch::bench::AddEngineCommand(app, &run);
  hwwatch::bench::AddRpcCommand(app, &run);
  hwwatch::bench::AddLoadCommand(app, &run);
  hwwatch::bench::AddHitsCommand(app, &run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return run ? run() : 2;
}
