"""perun-tcp: an authenticated perun-py message bus over TCP and Unix-domain sockets.

Usage::

    from perun_tcp import TcpBus

    bus = TcpBus.from_backend(wire_account, backend)     # or TcpBus(account, verify)
    await bus.listen("127.0.0.1", 0)                     # and/or bus.listen_unix(path)
    bus.add_peer(peer_address, "tcp://127.0.0.1:7001")   # or "unix:///run/peer.sock"

See ``docs/plugins/perun-tcp.md`` for endpoints, the handshake and the framing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.lazy import lazy_exports

if TYPE_CHECKING:
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
else:
    # Loading the plugin imports this package: the bus is imported on first use.
    __getattr__ = lazy_exports(
        __name__,
        {
            "AUTH_DOMAIN": "perun_tcp.handshake",
            "CHALLENGE_LEN": "perun_tcp.handshake",
            "ConnectionEndedError": "perun_tcp.framing",
            "Endpoint": "perun_tcp.endpoint",
            "EndpointError": "perun_tcp.endpoint",
            "FrameTimeoutError": "perun_tcp.framing",
            "HandshakeTimeoutError": "perun_tcp.handshake",
            "TcpBus": "perun_tcp.bus",
            "TcpSubscription": "perun_tcp.bus",
            "Verifier": "perun_tcp.handshake",
            "frame": "perun_tcp.framing",
            "read_frame": "perun_tcp.framing",
            "transcript": "perun_tcp.handshake",
        },
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
