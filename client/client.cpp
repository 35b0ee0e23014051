#include "client/client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace hwwatch::client {

std::string DefaultSocketPath() {
  const char* env = std::getenv("HWWATCH_SOCKET");
  return env && *env ? env : kDefaultSocket;
}

Error Error::FromStatus(const grpc::Status& status) {
  Error e;
  e.code = status.error_code();
  e.message = status.error_message();
  if (!status.error_details().empty()) {
    v1::ErrorDetails details;
    if (details.ParseFromString(status.error_details())) {
      for (const auto& any : details.details()) {
        v1::Refusal refusal;
        if (any.UnpackTo(&refusal)) {
          e.refusal = std::move(refusal);
          break;
        }
      }
    }
  }
  return e;
}

std::string Error::ToString() const {
  if (unreachable) return message;
  std::string s = message;
  if (refusal && !refusal->explanation().empty() && refusal->explanation() != message) {
    s += ": " + refusal->explanation();
  }
  return s;
}

namespace {

// A plain connect() first: it tells precisely why nothing answers (no such
// file, refused, permission) instead of a generic gRPC "unavailable".
std::optional<std::string> ProbeSocket(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return "socket path '" + path + "' is empty or too long";
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::string("cannot create a socket: ") + std::strerror(errno);
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  close(fd);
  if (rc == 0) return std::nullopt;
  return std::string(std::strerror(err));
}

}  // namespace

Client::Client(std::string socket_path, std::shared_ptr<grpc::Channel> channel)
    : socket_path_(std::move(socket_path)),
      channel_(std::move(channel)),
      stub_(v1::WatchpointManager::NewStub(channel_)) {}

Result<std::unique_ptr<Client>> Client::Connect(const std::string& socket_path,
                                                std::chrono::milliseconds timeout) {
  auto unreachable = [&](const std::string& why) {
    Error e;
    e.code = grpc::StatusCode::UNAVAILABLE;
    e.unreachable = true;
    e.message = "cannot reach hwwatchd at " + socket_path + ": " + why;
    return e;
  };
  grpc::ChannelArguments args;
  // Fail calls at once while the daemon is down instead of waiting for it.
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  // hwwatchd's session is the connection: each Client needs its own, not
  // one shared by every channel to the same socket in this process.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel =
      grpc::CreateCustomChannel("unix:" + socket_path, grpc::InsecureChannelCredentials(), args);
  // Wait for READY, but give up at the first failed attempt rather than
  // letting gRPC retry with backoff until the deadline.
  const auto deadline = std::chrono::system_clock::now() + timeout;
  for (;;) {
    grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_READY) break;
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
      auto why = ProbeSocket(socket_path);
      return unreachable(why ? *why + " (is hwwatchd running? set --socket or HWWATCH_SOCKET)"
                             : "the socket accepts connections but does not speak gRPC");
    }
    if (!channel->WaitForStateChange(state, deadline)) {
      return unreachable("no answer within " + std::to_string(timeout.count()) + " ms");
    }
  }
  return std::unique_ptr<Client>(new Client(socket_path, std::move(channel)));
}

std::unique_ptr<grpc::ClientContext> Client::NewContext() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + call_timeout_);
  return ctx;
}

Result<v1::Capabilities> Client::GetCapabilities() {
  auto ctx = NewContext();
  v1::Capabilities resp;
  grpc::Status s = stub_->GetCapabilities(ctx.get(), v1::GetCapabilitiesRequest(), &resp);
  if (!s.ok()) return Error::FromStatus(s);
  return resp;
}

Result<v1::StatsResponse> Client::Stats() {
  auto ctx = NewContext();
  v1::StatsResponse resp;
  grpc::Status s = stub_->Stats(ctx.get(), v1::StatsRequest(), &resp);
  if (!s.ok()) return Error::FromStatus(s);
  return resp;
}

Result<v1::Reservation> Client::Reserve(const v1::ReserveRequest& req) {
  auto ctx = NewContext();
  v1::ReserveResponse resp;
  grpc::Status s = stub_->Reserve(ctx.get(), req, &resp);
  if (!s.ok()) return Error::FromStatus(s);
  return resp.reservation();
}

Result<v1::Reservation> Client::Modify(uint64_t id, const v1::Watch& watch) {
  auto ctx = NewContext();
  v1::ModifyRequest req;
  req.set_id(id);
  *req.mutable_watch() = watch;
  v1::ModifyResponse resp;
  grpc::Status s = stub_->Modify(ctx.get(), req, &resp);
  if (!s.ok()) return Error::FromStatus(s);
  return resp.reservation();
}

Result<bool> Client::Release(uint64_t id) {
  auto ctx = NewContext();
  v1::ReleaseRequest req;
  req.set_id(id);
  v1::ReleaseResponse resp;
  grpc::Status s = stub_->Release(ctx.get(), req, &resp);
  if (!s.ok()) return Error::FromStatus(s);
  return true;
}

Result<v1::ListResponse> Client::List(bool all) {
  auto ctx = NewContext();
  v1::ListRequest req;
  req.set_all(all);
  v1::ListResponse resp;
  grpc::Status s = stub_->List(ctx.get(), req, &resp);
  if (!s.ok()) return Error::FromStatus(s);
  return resp;
}

Result<v1::SlotsResponse> Client::Slots(const v1::SlotsRequest& req) {
  auto ctx = NewContext();
  v1::SlotsResponse resp;
  grpc::Status s = stub_->Slots(ctx.get(), req, &resp);
  if (!s.ok()) return Error::FromStatus(s);
  return resp;
}

std::unique_ptr<EventStream> Client::Follow(const std::vector<uint64_t>& ids, bool lifecycle) {
  std::unique_ptr<EventStream> s(new EventStream());
  v1::StreamEventsRequest req;
  for (uint64_t id : ids) req.add_reservation_ids(id);
  req.set_lifecycle(lifecycle);
  // Batched: one message carries every event waiting, so a fast target's
  // hits cost one write per batch, not one per hit.
  s->batches_ = stub_->StreamEventBatches(&s->ctx_, req);
  // The daemon sends its initial metadata once the stream is subscribed (or
  // finishes the call when it refuses): after this, no event is missed.
  s->batches_->WaitForInitialMetadata();
  return s;
}

bool EventStream::Next(v1::Event* event) {
  if (reader_) return reader_->Read(event);
  while (next_in_batch_ >= batch_.events_size()) {
    if (!batches_->Read(&batch_)) return false;
    next_in_batch_ = 0;
  }
  event->Swap(batch_.mutable_events(next_in_batch_++));
  return true;
}

Result<Reservation> Client::Hold(const v1::ReserveRequest& req) {
  auto r = Reserve(req);
  if (!r) return r.error();
  return Reservation(*this, std::move(r.value()));
}

Reservation& Reservation::operator=(Reservation&& o) noexcept {
  if (this != &o) {
    (void)Release();
    client_ = o.client_;
    info_ = std::move(o.info_);
    o.client_ = nullptr;
  }
  return *this;
}

Result<v1::Reservation> Reservation::Modify(const v1::Watch& watch) {
  if (client_ == nullptr)
    return Error{grpc::StatusCode::FAILED_PRECONDITION, "released", {}, false};
  auto r = client_->Modify(info_.id(), watch);
  if (r) info_ = r.value();
  return r;
}

Result<bool> Reservation::Release() {
  if (client_ == nullptr) return true;
  Client* c = client_;
  client_ = nullptr;
  return c->Release(info_.id());
}

grpc::Status EventStream::ForEach(const std::function<bool(const v1::Event&)>& fn) {
  v1::Event e;
  bool stopped = false;
  while (Next(&e)) {
    if (!fn(e)) {
      stopped = true;
      Cancel();
      break;
    }
  }
  if (stopped) {
    while (Next(&e)) {
    }
  }
  return Finish();
}

}  // namespace hwwatch::client
