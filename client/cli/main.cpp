// hwwatch: the command-line client of hwwatchd.
#include <CLI/CLI.hpp>

#include "client/cli/cli.h"

int main(int argc, char** argv) {
  using namespace hwwatch::cli;
  GlobalOptions g;
  CLI::App app{"hwwatch: ask hwwatchd for hardware watchpoints and see who touches your memory."};
  app.add_option("--socket", g.socket, "hwwatchd's Unix socket (also $HWWATCH_SOCKET)")
      ->capture_default_str();
  app.add_flag("--json", g.json, "Print one JSON document (protobuf JSON mapping)");
  app.require_subcommand(1);
  app.footer(
      "Exit status: 0 success; 1 the daemon refused or failed the request (or selftest:\n"
      "the registers do not fire); 2 bad usage (including a --symbol that does not\n"
      "resolve); 3 no daemon answers on the socket.\n"
      "Every command takes --json and --help (with examples).");
  Action run;
  AddCapsCommand(app, g, &run);
  AddStatsCommand(app, g, &run);
  AddSelfTestCommand(app, g, &run);
  AddReservationCommands(app, g, &run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;
  }
  return run ? run() : static_cast<int>(kUsage);
}
