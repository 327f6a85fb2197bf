"""The options of the ``tcp`` bus (``[perun.tcp]`` in ``perun.toml``)."""

from __future__ import annotations

from perun_core.parts import PartConfig
from perun_core.wire.codec import DEFAULT_MAX_SIZE

DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_MAX_UNAUTHENTICATED = 64
DEFAULT_FRAME_TIMEOUT = 30.0
DEFAULT_LISTEN = ("tcp://127.0.0.1:0",)
"""Where :meth:`TcpBus.open <perun_tcp.bus.TcpBus.open>` listens unless told otherwise: a
free loopback port, reachable from this machine only."""


class TcpBusConfig(PartConfig, frozen=True, kw_only=True):
    """Options of :meth:`TcpBus.open <perun_tcp.bus.TcpBus.open>`.

    Attributes:
        listen: endpoints to accept connections on (``tcp://HOST:PORT``, port 0 for a free
            one, or ``unix:///path``); empty: dial out only.
        peers: the address book, a peer's wire address (in the backend's text form) to
            its endpoint.

    The other fields are the keyword arguments of :class:`~perun_tcp.bus.TcpBus`, with the
    same defaults.
    """

    listen: tuple[str, ...] = DEFAULT_LISTEN
    peers: dict[str, str] = {}
    max_frame_size: int = DEFAULT_MAX_SIZE
    handshake_timeout: float = 5.0
    connect_timeout: float = 5.0
    idle_interval: float = 20.0
    dial_attempts: int = 4
    backoff_initial: float = 0.05
    backoff_max: float = 2.0
    drain_timeout: float = 5.0
    close_timeout: float = 2.0
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_unauthenticated: int = DEFAULT_MAX_UNAUTHENTICATED
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT
