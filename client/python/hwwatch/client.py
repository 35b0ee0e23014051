"""The connection to hwwatchd and its typed calls (see client/client.h, the C++ twin)."""

import os
import socket as _socket

import grpc

from hwwatch.v1 import hwwatch_pb2 as pb
from hwwatch.v1 import hwwatch_pb2_grpc as pb_grpc

DEFAULT_SOCKET = "/run/hwwatchd/hwwatchd.sock"

# The gRPC status's binary details: an ErrorDetails (wire-compatible with
# google.rpc.Status) whose `details` hold a packed Refusal.
_DETAILS_KEY = "grpc-status-details-bin"

_ACCESS = {
    "w": pb.ACCESS_WRITE,
    "rw": pb.ACCESS_READ_WRITE,
    "x": pb.ACCESS_EXECUTE,
    "r": pb.ACCESS_READ,
}
_BACKEND = {"auto": pb.BACKEND_AUTO, "perf": pb.BACKEND_PERF, "ptrace": pb.BACKEND_PTRACE}
_DELIVERY = {
    "default": pb.DELIVERY_DEFAULT,
    "samples": pb.DELIVERY_SAMPLES,
    "stop": pb.DELIVERY_STOP,
    "count": pb.DELIVERY_COUNT,
}


def default_socket_path():
    """$HWWATCH_SOCKET, or the daemon's default socket."""
    return os.environ.get("HWWATCH_SOCKET") or DEFAULT_SOCKET


def access_of(name):
    """'w', 'rw', 'x' or 'r' as a hwwatch.v1.Access value."""
    try:
        return _ACCESS[name]
    except KeyError:
        raise ValueError("access must be one of w, rw, x, r, not %r" % (name,)) from None


def access_name(access):
    """The short name ('w', 'rw', 'x', 'r') of a hwwatch.v1.Access value."""
    for k, v in _ACCESS.items():
        if v == access:
            return k
    return "?"


def target(tid=None, pid=None, cpu=None):
    """A hwwatch.v1.Target: exactly one of tid, pid, cpu."""
    given = [k for k, v in (("tid", tid), ("pid", pid), ("cpu", cpu)) if v is not None]
    if len(given) != 1:
        raise ValueError("name exactly one target: tid, pid or cpu")
    t = pb.Target()
    setattr(t, given[0], int({"tid": tid, "pid": pid, "cpu": cpu}[given[0]]))
    return t


def watch(address, length=1, access="w", over_cover=False, changed=False, condition="", symbol=""):
    """A hwwatch.v1.Watch; `access` is a short name or an Access value."""
    return pb.Watch(
        address=int(address),
        length=int(length),
        access=access_of(access) if isinstance(access, str) else access,
        over_cover=over_cover,
        changed=changed,
        condition=condition,
        symbol=symbol,
    )


class Error(Exception):
    """A failed call: the gRPC code, the daemon's message and, for a refusal
    (no slot, quota, permission), its hwwatch.v1.Refusal."""

    def __init__(self, code, message, refusal=None, unreachable=False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.refusal = refusal
        self.unreachable = unreachable

    @classmethod
    def from_rpc_error(cls, err):
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        message = err.details() if hasattr(err, "details") else str(err)
        return cls(code, message or "", _refusal_of(err))

    def __str__(self):
        """One line for humans, as the C++ client's Error::ToString."""
        s = self.message
        if self.unreachable:
            return s
        if self.refusal is not None and self.refusal.explanation and self.refusal.explanation != s:
            s += ": " + self.refusal.explanation
        return s


def _refusal_of(err):
    """The Refusal packed in an RPC error's status details, or None."""
    try:
        trailers = err.trailing_metadata() or ()
    except Exception:  # not a call error: no trailers
        return None
    for key, value in trailers:
        if key != _DETAILS_KEY:
            continue
        details = pb.ErrorDetails()
        try:
            details.ParseFromString(value)
        except Exception:
            return None
        for any_msg in details.details:
            if any_msg.Is(pb.Refusal.DESCRIPTOR):
                refusal = pb.Refusal()
                any_msg.Unpack(refusal)
                return refusal
    return None


def _probe_socket(path):
    """None when something accepts connections at `path`, else why not."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(2.0)
        s.connect(path)
        return None
    except OSError as e:
        return e.strerror or str(e)
    finally:
        s.close()


class EventStream:
    """A StreamEventBatches call, iterated event by event. cancel() ends it
    from any thread; iteration then stops."""

    def __init__(self, call):
        self._call = call

    def __iter__(self):
        try:
            for batch in self._call:
                for event in batch.events:
                    yield event
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                raise Error.from_rpc_error(e) from None

    def cancel(self):
        self._call.cancel()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cancel()
        return False


class Client:
    """One connection to hwwatchd; it is the daemon's session: closing it (or
    the process ending) releases every reservation made through it that has
    no lease."""

    def __init__(self, channel, socket_path, call_timeout=10.0):
        self._channel = channel
        self.socket_path = socket_path
        self.call_timeout = call_timeout
        self.stub = pb_grpc.WatchpointManagerStub(channel)

    @classmethod
    def connect(cls, socket_path=None, timeout=20.0, call_timeout=10.0):
        """Connects, failing at once with a reason naming the socket when
        nothing listens there; a socket that accepts but does not answer yet
        (socket activation starting hwwatchd) gets `timeout` seconds."""
        path = socket_path or default_socket_path()

        def unreachable(why):
            return Error(
                grpc.StatusCode.UNAVAILABLE,
                "cannot reach hwwatchd at %s: %s" % (path, why),
                unreachable=True,
            )

        why = _probe_socket(path)
        if why is not None:
            raise unreachable(why + " (is hwwatchd running? set --socket or HWWATCH_SOCKET)")
        options = [
            # Fail calls at once while the daemon is down.
            ("grpc.enable_retries", 0),
            # The connection is the session: never share it with another Client.
            ("grpc.use_local_subchannel_pool", 1),
        ]
        channel = grpc.insecure_channel("unix:" + path, options=options)
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            channel.close()
            raise unreachable("no answer within %g s" % timeout) from None
        return cls(channel, path, call_timeout)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _call(self, method, request):
        try:
            return method(request, timeout=self.call_timeout)
        except grpc.RpcError as e:
            raise Error.from_rpc_error(e) from None

    # ------------------------------------------------------------ calls

    def capabilities(self):
        """hwwatch.v1.Capabilities: pools, lengths, backends, self-test."""
        return self._call(self.stub.GetCapabilities, pb.GetCapabilitiesRequest())

    def stats(self):
        return self._call(self.stub.Stats, pb.StatsRequest())

    def self_test_fires(self):
        """(fires, detail): whether some backend's self-test saw a real hit."""
        caps = self.capabilities()
        details = []
        for r in caps.self_test:
            if r.outcome == pb.SelfTestResult.FIRES:
                return True, r.detail
            details.append("%s: %s (%s)" % (
                pb.Backend.Name(r.backend),
                pb.SelfTestResult.Outcome.Name(r.outcome),
                r.detail,
            ))
        return False, "; ".join(details) or "no self-test result"

    def reserve(self, target, watch, backend="auto", delivery="default", slot=None, lease=0.0,
                label="", capture_value=False):
        """Admits and arms `watch` on `target`; returns the hwwatch.v1.Reservation.
        backend: auto|perf|ptrace; delivery: default|samples|stop|count."""
        req = pb.ReserveRequest(
            target=target,
            watch=watch,
            backend=_BACKEND[backend] if isinstance(backend, str) else backend,
            delivery=_DELIVERY[delivery] if isinstance(delivery, str) else delivery,
            label=label,
            capture_value=capture_value,
        )
        if slot is not None:
            req.slot = slot
        if lease:
            req.lease.FromNanoseconds(int(lease * 1e9))
        return self._call(self.stub.Reserve, req).reservation

    def reclaim(self, reservation_id):
        """Takes over an orphaned (leased) reservation of the same uid."""
        return self._call(self.stub.Reserve, pb.ReserveRequest(reclaim=reservation_id)).reservation

    def modify(self, reservation_id, watch):
        """Moves the watch of a reservation (same target); on refusal the old
        one stays armed."""
        req = pb.ModifyRequest(id=reservation_id, watch=watch)
        return self._call(self.stub.Modify, req).reservation

    def release(self, reservation_id):
        self._call(self.stub.Release, pb.ReleaseRequest(id=reservation_id))

    def list(self, all=False):
        """The caller's reservations (root, all=True: everyone's)."""
        return list(self._call(self.stub.List, pb.ListRequest(all=all)).reservations)

    def slots(self, probe_target=None, probe_watch=None):
        """hwwatch.v1.SlotsResponse; with a probe, .probe says whether it fits
        now and, if not, why (probe.refusal)."""
        req = pb.SlotsRequest()
        if probe_target is not None:
            req.probe_target.CopyFrom(probe_target)
        if probe_watch is not None:
            req.probe_watch.CopyFrom(probe_watch)
        return self._call(self.stub.Slots, req)

    def follow(self, reservation_ids=(), lifecycle=True):
        """An EventStream of the given reservations (empty: every reservation
        of this connection). Returns once the daemon has subscribed it, so no
        later event is missed."""
        req = pb.StreamEventsRequest(reservation_ids=list(reservation_ids), lifecycle=lifecycle)
        call = self.stub.StreamEventBatches(req)
        try:
            # The daemon sends its initial metadata once the stream is
            # subscribed, or ends the call when it refuses.
            call.initial_metadata()
        except grpc.RpcError as e:
            raise Error.from_rpc_error(e) from None
        return EventStream(call)
