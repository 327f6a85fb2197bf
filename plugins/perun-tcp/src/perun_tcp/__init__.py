"""perun-tcp: an authenticated perun-py message bus over TCP and Unix-domain sockets.

Usage::

    from perun_tcp import TcpBus

    bus = TcpBus.from_backend(wire_account, backend)     # or TcpBus(account, verify)
    await bus.listen("127.0.0.1", 0)                     # and/or bus.listen_unix(path)
    bus.add_peer(peer_address, "tcp://127.0.0.1:7001")   # or "unix:///run/peer.sock"

See ``docs/plugins/perun-tcp.md`` for endpoints, the handshake and the framing.
"""

from __future__ import annotations

from perun_tcp.bus import TcpBus, TcpSubscription
from perun_tcp.endpoint import Endpoint, EndpointError
from perun_tcp.framing import ConnectionEndedError, FrameTimeoutError, frame, read_frame
from perun_tcp.handshake import (
    AUTH_DOMAIN,
    CHALLENGE_LEN,
    HandshakeTimeoutError,
    Verifier,
    transcript,
)

__all__ = [
    "AUTH_DOMAIN",
    "CHALLENGE_LEN",
    "ConnectionEndedError",
    "Endpoint",
    "EndpointError",
    "FrameTimeoutError",
    "HandshakeTimeoutError",
    "TcpBus",
    "TcpSubscription",
    "Verifier",
    "frame",
    "read_frame",
    "transcript",
]
