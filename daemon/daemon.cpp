#include "daemon/daemon.h"

#include <filesystem>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_posix.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <chrono>
#include <csignal>

#include "arch/scoped_fd.h"

namespace hwwatch::daemon {

namespace {
constexpr int kMaxRequestBytes = 256 * 1024;
}  // namespace

namespace asio = boost::asio;

// Stale sessions (descriptor closed by gRPC, or reused) are found by this
// sweep; hang-ups are seen at once through the registry's epoll.
constexpr auto kSweepInterval = std::chrono::milliseconds(250);
// The whole hardware self-test at start-up, both backends: milliseconds
// here, but a backend whose test runs out of time is left out, so the
// bound is for a hung child, not a slow machine (400 ms was too little in
// an emulated arm64 machine on a loaded host: it started with no backend).
constexpr auto kSelfTestBudget = std::chrono::milliseconds(5000);

Daemon::Daemon() : listener_(io_), hangups_(io_), sweep_(io_), signals_(io_) {}

Daemon::~Daemon() { Shutdown(); }

std::string Daemon::Start(const DaemonOptions& options) {
  arch::HostCapabilities host = arch::DiscoverHost();
  if (!host.error.empty()) spdlog::warn("capability discovery: {}", host.error);
  spdlog::info("host: {} kernel {}, {} possible CPUs, {} slot pool(s)", arch::ArchName(host.arch),
               host.kernel_release, host.cpus, host.pools.size());
  v1::Capabilities caps = CapabilitiesToProto(host);
  // Do the registers really fire here? Bounded; a hypervisor that drops
  // debug exceptions shows up as "never fires".
  const auto t0 = std::chrono::steady_clock::now();
  for (const arch::SelfTestResult& r : arch::RunSelfTest(kSelfTestBudget)) {
    *caps.add_self_test() = SelfTestToProto(r);
    if (r.outcome != arch::SelfTestOutcome::kUnavailable)
      caps.add_backends(BackendToProto(r.backend));
    spdlog::info("self-test {}: {} ({})", arch::BackendName(r.backend),
                 arch::SelfTestOutcomeName(r.outcome), r.detail);
  }
  spdlog::debug("self-test took {} ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::steady_clock::now() - t0)
                                            .count());
  std::string runtime_dir = options.runtime_dir;
  if (runtime_dir.empty()) {
    runtime_dir = std::filesystem::path(options.socket_path).parent_path().string();
  }
  reservations_ =
      std::make_unique<ReservationManager>(host, options.lock, options.limits, options.capture,
                                           runtime_dir.empty() ? "" : runtime_dir + "/ptrace");
  v1::Capture* capture = caps.mutable_capture();
  capture->set_path(reservations_->bpf_capture() ? v1::Capture::PATH_BPF
                                                 : v1::Capture::PATH_PERF_RING);
  capture->set_detail(reservations_->capture_detail());
  capture->set_ring_bytes(reservations_->capture_ring_bytes());
  service_ = std::make_unique<WatchpointService>(std::move(caps), peers_, *reservations_);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.RegisterService(service_.get());
  // Requests are small (a target, a watch, some ids): anything bigger is
  // refused before it is read, not buffered.
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
  // No listening port: every connection arrives through the listener below.
  server_ = builder.BuildAndStart();
  if (!server_) return "the gRPC server did not start";
  server_->GetHealthCheckService()->SetServingStatus(true);

  std::string err = options.inherited_fd >= 0
                        ? listener_.Adopt(options.inherited_fd, options.socket_path)
                        : listener_.Bind(options.socket_path, options.socket_mode);
  if (!err.empty()) return err;

  peers_.OnDisconnect([this](const Peer& p) {
    spdlog::debug("session {} ended (uid {} pid {})", p.session_id, p.creds.uid, p.creds.pid);
    reservations_->SessionEnded(p.session_id);
  });
  listener_.Start([this](int accepted, const PeerCredentials& creds) {
    arch::ScopedFd fd(accepted);
    uint64_t session = peers_.Add(fd.get(), creds);
    if (session == 0) {
      spdlog::warn("cannot track a connection from pid {}; closing it", creds.pid);
      return;
    }
    spdlog::debug("session {}: uid {} gid {} pid {} on fd {}", session, creds.uid, creds.gid,
                  creds.pid, fd.get());
    // gRPC owns the descriptor from here on.
    grpc::AddInsecureChannelFromFd(server_.get(), fd.release());
  });

  hangups_.assign(dup(peers_.epoll_fd()));
  WatchHangups();
  ScheduleSweep();
  if (options.handle_signals) {
    signals_.add(SIGINT);
    signals_.add(SIGTERM);
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      spdlog::info("signal {}: shutting down", sig);
      io_.stop();
    });
  }
  spdlog::info("listening on {}", listener_.path());
  return "";
}

void Daemon::WatchHangups() {
  hangups_.async_wait(asio::posix::stream_descriptor::wait_read,
                      [this](const boost::system::error_code& ec) {
                        if (ec) return;
                        peers_.Poll();
                        WatchHangups();
                      });
}

void Daemon::ScheduleSweep() {
  sweep_.expires_after(kSweepInterval);
  sweep_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    peers_.Sweep();
    reservations_->Reap();
    ScheduleSweep();
  });
}

void Daemon::Run() {
  io_.run();
  Shutdown();
}

void Daemon::Stop() {
  asio::post(io_, [this] { io_.stop(); });
}

void Daemon::Shutdown() {
  listener_.Close();
  signals_.cancel();
  sweep_.cancel();
  if (hangups_.is_open()) {
    boost::system::error_code ec;
    hangups_.close(ec);
  }
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
    server_.reset();
  }
  peers_.Clear();
}

}  // namespace hwwatch::daemon
