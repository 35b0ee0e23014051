"""hwwatch: a Python client of hwwatchd.

hwwatchd owns the hardware debug registers of a Linux host and hands out
watchpoints over gRPC on a Unix socket. This package is a small typed
wrapper over the generated stubs (hwwatch.v1.hwwatch_pb2, _grpc):

    import hwwatch
    with hwwatch.Client.connect() as c:          # $HWWATCH_SOCKET or the default
        r = c.reserve(hwwatch.target(tid=1234), hwwatch.watch(0x601040, 8, "w"))
        for event in c.follow([r.id]):
            ...
        c.release(r.id)

Errors are hwwatch.Error; a refusal (no slot, quota, permission) carries the
daemon's structured hwwatch.v1.Refusal in Error.refusal.
"""

from hwwatch.client import (  # noqa: F401
    DEFAULT_SOCKET,
    Client,
    Error,
    EventStream,
    access_of,
    access_name,
    default_socket_path,
    target,
    watch,
)
from hwwatch.v1 import hwwatch_pb2 as pb  # noqa: F401
