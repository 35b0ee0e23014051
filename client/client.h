// The C++ client library of hwwatchd: a connection to the daemon's Unix
// socket and typed calls whose errors carry the daemon's structured refusal.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "hwwatch/v1/hwwatch.grpc.pb.h"

namespace hwwatch::client {

namespace v1 = ::hwwatch::v1;

constexpr const char* kDefaultSocket = "/run/hwwatchd/hwwatchd.sock";

// $HWWATCH_SOCKET, or the daemon's default socket.
std::string DefaultSocketPath();

struct Error {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  std::string message;
  // Set when the daemon explained a refusal (no slot, quota, permission).
  std::optional<v1::Refusal> refusal;
  // True when the daemon could not be reached at all.
  bool unreachable = false;

  static Error FromStatus(const grpc::Status& status);
  // One line for humans.
  std::string ToString() const;
};

// A value or an Error.
template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<T>(v_); }
  const T& value() const { return std::get<T>(v_); }
  T* operator->() { return &value(); }
  const Error& error() const { return std::get<Error>(v_); }

 private:
  std::variant<T, Error> v_;
};

// A StreamEvents call: events in order until the daemon ends the stream or
// Cancel() is called (from any thread).
class EventStream {
 public:
  // The next event; false at the end of the stream (see Finish()).
  bool Next(v1::Event* event);
  // Calls `fn` with each event until it returns false or the stream ends;
  // then cancels the call and returns why it ended (CANCELLED when `fn`
  // stopped it).
  grpc::Status ForEach(const std::function<bool(const v1::Event&)>& fn);

  // for (const v1::Event& e : *stream) { ... }: events until the end.
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = v1::Event;
    using difference_type = std::ptrdiff_t;
    using pointer = const v1::Event*;
    using reference = const v1::Event&;
    explicit Iterator(EventStream* s = nullptr) : s_(s) { Advance(); }
    reference operator*() const { return event_; }
    pointer operator->() const { return &event_; }
    Iterator& operator++() {
      Advance();
      return *this;
    }
    bool operator==(const Iterator& o) const { return s_ == o.s_; }
    bool operator!=(const Iterator& o) const { return s_ != o.s_; }

   private:
    void Advance() {
      if (s_ != nullptr && !s_->Next(&event_)) s_ = nullptr;
    }
    EventStream* s_;
    v1::Event event_;
  };
  Iterator begin() { return Iterator(this); }
  Iterator end() { return Iterator(); }
  void Cancel() { ctx_.TryCancel(); }
  // Why the stream ended (after Next() returned false). A Cancel() ends it
  // with CANCELLED.
  grpc::Status Finish() { return reader_ ? reader_->Finish() : batches_->Finish(); }

 private:
  friend class Client;
  EventStream() = default;
  grpc::ClientContext ctx_;
  // One of them: StreamEvents, or StreamEventBatches (then the events of
  // the last batch read, handed out one by one).
  std::unique_ptr<grpc::ClientReader<v1::Event>> reader_;
  std::unique_ptr<grpc::ClientReader<v1::EventBatch>> batches_;
  v1::EventBatch batch_;
  int next_in_batch_ = 0;
};

class Client;

// A reservation this program holds: released when the object goes (a
// crash releases it too, unless it was reserved with a lease).
class Reservation {
 public:
  Reservation(Client& client, v1::Reservation info) : client_(&client), info_(std::move(info)) {}
  Reservation(Reservation&& o) noexcept : client_(o.client_), info_(std::move(o.info_)) {
    o.client_ = nullptr;
  }
  Reservation& operator=(Reservation&& o) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation() { (void)Release(); }

  uint64_t id() const { return info_.id(); }
  // As the daemon last described it (Modify updates it).
  const v1::Reservation& info() const { return info_; }
  // Moves the watch (same target); on refusal the old one stays.
  Result<v1::Reservation> Modify(const v1::Watch& watch);
  // Gives it back now; later calls do nothing.
  Result<bool> Release();
  // Keeps it in the daemon beyond this object (e.g. to reclaim a lease).
  v1::Reservation Detach() {
    client_ = nullptr;
    return info_;
  }

 private:
  Client* client_;
  v1::Reservation info_;
};

class Client {
 public:
  // Connects to the daemon, failing fast (never hanging) with a message
  // naming the socket when nothing listens there. A socket that accepts
  // but does not answer yet gets `timeout`: under systemd's socket
  // activation the first client waits while hwwatchd starts, which took
  // over 3 s in an emulated machine.
  static Result<std::unique_ptr<Client>> Connect(
      const std::string& socket_path,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(20000));

  Result<v1::Capabilities> GetCapabilities();
  Result<v1::StatsResponse> Stats();
  Result<v1::Reservation> Reserve(const v1::ReserveRequest& req);
  // Reserve, held by an object that releases it when it goes.
  Result<Reservation> Hold(const v1::ReserveRequest& req);
  // Replaces the watch of reservation `id` (same target); on refusal the
  // old watch stays armed.
  Result<v1::Reservation> Modify(uint64_t id, const v1::Watch& watch);
  Result<bool> Release(uint64_t id);
  Result<v1::ListResponse> List(bool all = false);
  Result<v1::SlotsResponse> Slots(const v1::SlotsRequest& req = {});
  // Follows the events of `ids` (empty: every reservation of this
  // connection), with lifecycle events when asked. The stream has no
  // deadline; errors (e.g. a foreign id) arrive from Finish(). Returns once
  // the daemon has subscribed the stream: events after that are not missed.
  std::unique_ptr<EventStream> Follow(const std::vector<uint64_t>& ids, bool lifecycle = true);

  // Deadline applied to each unary call.
  void set_call_timeout(std::chrono::milliseconds t) { call_timeout_ = t; }
  const std::string& socket_path() const { return socket_path_; }
  v1::WatchpointManager::Stub& stub() { return *stub_; }
  // A context carrying the call deadline.
  std::unique_ptr<grpc::ClientContext> NewContext() const;

 private:
  Client(std::string socket_path, std::shared_ptr<grpc::Channel> channel);

  std::string socket_path_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WatchpointManager::Stub> stub_;
  std::chrono::milliseconds call_timeout_{10000};
};

}  // namespace hwwatch::client
