// Shared plumbing of the hwwatch command-line client.
#pragma once

#include <google/protobuf/message.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>

#include "client/client.h"

namespace hwwatch::cli {

// Exit status, documented in `hwwatch --help`.
enum Exit : int {
  kOk = 0,
  kRefused = 1,      // the daemon answered with an error or refusal
  kUsage = 2,        // bad command line
  kUnreachable = 3,  // no daemon on the socket
};

struct GlobalOptions {
  std::string socket = client::DefaultSocketPath();
  bool json = false;
};

// Connects or prints the one-line reason; nullptr on failure.
std::unique_ptr<client::Client> ConnectOrReport(const GlobalOptions& g, int* exit_code);

// Prints an error from the daemon on stderr and returns its exit status.
int ReportError(const client::Error& e);

// Prints a message as one JSON document (protobuf's JSON mapping).
void PrintJson(const google::protobuf::Message& m);

// Each command adds itself to the app; `run` is set to its action.
using Action = std::function<int()>;
void AddCapsCommand(CLI::App& app, const GlobalOptions& g, Action* run);
void AddStatsCommand(CLI::App& app, const GlobalOptions& g, Action* run);
void AddSelfTestCommand(CLI::App& app, const GlobalOptions& g, Action* run);
void AddReservationCommands(CLI::App& app, const GlobalOptions& g, Action* run);

}  // namespace hwwatch::cli
