"""``TcpBus``: an authenticated perun-py bus over TCP and Unix-domain sockets.

One bus serves one wire identity (an :class:`~perun_core.interfaces.Account`). It listens on
any number of endpoints, dials peers from its address book on the first publish, and keeps
one authenticated connection per peer pair.

Ordering across connection changes. When a peer pair ends up with two connections, the
bus keeps the preferred one and *retires* the other: it sends ``Shutdown`` on it and stops
writing to it, but keeps reading it until the peer's ``Shutdown`` or end of stream. Frames
from the preferred connection are delivered only after the retired one is drained, so
envelopes reach the subscriber in publish order and none are dropped by the switch.

Which one is preferred:

* both dialed at once (the older one is younger than the race window of two handshake
  timeouts): the one whose dialer has the lower wire address, on both sides;
* otherwise the newer one. A peer dials only when it has no usable connection, so a new
  connection next to an established one means the peer lost the old one (it restarted, or
  the old one is half-open) and only the new one can reach it.

Resource limits. Accepted connections are capped in total (``max_connections``) and while
unauthenticated (``max_unauthenticated``); a newcomer beyond a cap displaces the oldest
unauthenticated connection, so silent dialers cannot lock honest ones out for a handshake
timeout. After authentication a frame is limited in size (``max_frame_size``) and in time
(``frame_timeout`` from its first byte). Running out of file descriptors is handled in
:mod:`perun_tcp.listener` without pausing the listener. A closed connection releases its
buffers at once (see :meth:`perun_tcp.inbox.Inbox.release`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, Self

from perun_core.channel.types import Address
from perun_core.errors import (
    AuthenticationError,
    ConfigError,
    FrameTooLargeError,
    MalformedMessageError,
    MisroutedMessageError,
    PeerDisconnectedError,
    ProtocolError,
    UnsupportedWireVersionError,
)
from perun_core.interfaces.bus import Bus, ConnectHandler, Subscription
from perun_core.interfaces.chain import ChainBackend
from perun_core.interfaces.wallet import Account
from perun_core.parts import PartConfig, config_fields, load_config
from perun_core.queues import ClosableQueue
from perun_core.wire.codec import (
    DEFAULT_MAX_SIZE,
    MAX_FRAME_LIMIT,
    decode_envelope,
    encode_envelope,
)
from perun_core.wire.messages import (
    AuthConfirm,
    AuthHello,
    AuthReply,
    Envelope,
    Ping,
    Pong,
    Shutdown,
)
from perun_tcp import handshake
from perun_tcp.config import (
    DEFAULT_FRAME_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_UNAUTHENTICATED,
    TcpBusConfig,
)
from perun_tcp.endpoint import Endpoint, as_endpoint
from perun_tcp.framing import HEADER_LEN, ConnectionEndedError, FrameSplitter, frame
from perun_tcp.handshake import HANDSHAKE_MAX_FRAME, Verifier
from perun_tcp.inbox import Inbox
from perun_tcp.listener import Listener, bind_tcp, bind_unix

log = logging.getLogger("perun_tcp")

_CONTROL: Final = (AuthHello, AuthReply, AuthConfirm)
_READ_CHUNK: Final = 1 << 16
"""Bytes asked of the socket per read (every complete frame in them is handled at once)."""
_COALESCE: Final = 4
"""Frames of one event-loop turn gathered into one socket write (see ``_Connection.write``)."""
_DRAIN_ABOVE: Final = 1 << 16
"""Buffered bytes from which ``publish`` awaits the transport's drain (asyncio's default
high-water mark, where ``drain()`` would start to wait anyway)."""
_HANDSHAKE_READ_LIMIT: Final = HEADER_LEN + HANDSHAKE_MAX_FRAME
"""Buffer limit of an accepted connection's reader: it pauses the socket while more than
twice this waits unread, so an unauthenticated peer cannot make us buffer more (asyncio's
default would be 128 KiB)."""


class TcpSubscription(Subscription):
    """The envelopes addressed to the bus's wire address, in arrival order."""

    def __init__(self, bus: TcpBus, address: Address, backlog: list[Envelope]) -> None:
        self.address = address
        self._bus = bus
        self._queue: ClosableQueue[Envelope] = ClosableQueue(backlog)
        self._receiver: Callable[[Envelope], None] | None = None

    @property
    def closed(self) -> bool:
        """Whether the subscription (or its bus) was closed."""
        return self._queue.closed

    def deliver(self, env: Envelope) -> None:
        """Hand an envelope to the receiver, or queue it for :meth:`next` (called by the bus)."""
        receiver = self._receiver
        if receiver is None:
            self._queue.put(env)
            return
        try:
            receiver(env)
        except Exception:  # the receiver's bug must not take the connection down
            log.exception("the receiver of %s failed on a %s", self.address, type(env.msg).__name__)

    def set_receiver(self, receiver: Callable[[Envelope], None]) -> bool:
        """Hand every envelope to ``receiver`` from the connection's read loop.

        Envelopes already queued are handed over first, at once. Saves the queue and the
        wake-up of the reading task per envelope (see :meth:`Subscription.set_receiver`).

        Returns:
            ``True`` unless the subscription is closed.
        """
        if self._queue.closed:
            return False
        self._receiver = receiver
        for env in self._queue.take_all():
            self.deliver(env)
        return True

    async def next(self) -> Envelope | None:
        """The next envelope, or ``None`` once closed (with a receiver: ``None`` at close)."""
        return await self._queue.get()

    def close(self) -> None:
        """Stop receiving; envelopes not yet taken stay with the bus for a new subscription."""
        if self._queue.closed:
            return
        self._receiver = None
        self._bus.unsubscribed(self, self._queue.close())


class _Connection:
    """One authenticated stream to a peer."""

    def __init__(
        self,
        bus: TcpBus,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Address,
        dialer: Address,
        seq: int,
        where: str,
    ) -> None:
        self.bus = bus
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.dialer = dialer
        self.seq = seq
        self.where = where
        self.inbox: Inbox | None = None
        self.drained = asyncio.Event()  # the peer will send nothing more on this connection
        self.sent_shutdown = False
        self.closed = False
        # Retired connections whose frames must be delivered before ours (see module docs).
        self.gate: list[_Connection] = []
        now = asyncio.get_running_loop().time()
        self.last_rx = self.last_tx = self.established = now
        self.tasks: list[asyncio.Task[None]] = []
        self.deadline: asyncio.TimerHandle | None = None
        # Frames held back in this event-loop turn (None: nothing written in this turn yet).
        self._held: list[bytes] | None = None

    def __repr__(self) -> str:
        role = "dialed" if self.dialer == self.bus.address else "accepted"
        return f"<connection #{self.seq} {role} {self.peer.short()} {self.where}>"

    @property
    def usable(self) -> bool:
        """Whether new envelopes may be written to it."""
        return not (
            self.closed or self.sent_shutdown or self.drained.is_set() or self.writer.is_closing()
        )

    def write(self, payload: bytes) -> None:
        # The first frame of an event-loop turn is written at once (no latency added: the
        # peer starts on it right away); later frames of the same turn are gathered and go
        # out _COALESCE at a time, the rest at the end of the turn. One system call per
        # frame was the largest cost after the crypto under load. Gathering a whole turn
        # (hundreds of frames when pipelining) instead made the two peers take turns.
        loop = asyncio.get_running_loop()
        held = self._held
        if held is None:
            self.writer.write(frame(payload))
            self._held = []
            loop.call_soon(self._flush)
        else:
            held.append(frame(payload))
            if len(held) >= _COALESCE:
                self.writer.writelines(held)
                held.clear()
        self.last_tx = loop.time()

    def _flush(self) -> None:
        """Write the frames held back in this turn (in order; nothing is ever dropped)."""
        held, self._held = self._held, None
        if held:
            with contextlib.suppress(Exception):  # a dying transport: the reader notices
                self.writer.writelines(held)

    def send_control(self, msg: Ping | Pong | Shutdown) -> None:
        with contextlib.suppress(Exception):  # a dying transport: the reader notices
            self.write(encode_envelope(Envelope(self.bus.address, self.peer, msg)))

    def send_shutdown(self, reason: str) -> None:
        """Announce that we write nothing more here (idempotent)."""
        if self.sent_shutdown or self.closed:
            return
        self.sent_shutdown = True
        self.send_control(Shutdown(reason[:1000]))

    def close(self) -> None:
        """Close the stream now (buffered frames are still flushed by the transport)."""
        if self.closed:
            return
        self.closed = True
        self.drained.set()
        if self.deadline is not None:
            self.deadline.cancel()
        self._flush()
        with contextlib.suppress(Exception):
            self.writer.close()
        current = asyncio.current_task()
        for t in self.tasks:
            if t is not current:
                t.cancel()
        # Drop what would keep this connection's objects in reference cycles (a cancelled
        # task's traceback holds its frame, and that frame holds us), and the buffers.
        self.tasks = []
        self.gate = []
        if self.inbox is not None:
            self.inbox.release()
        self.bus.forget(self)


class _Handshake:
    """An accepted connection that has not authenticated yet (can be dropped any time)."""

    __slots__ = ("sock", "task", "transport")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None

    def drop(self) -> None:
        """Close it at once (no goodbye: it has not earned one)."""
        if self.transport is not None:
            self.transport.abort()
        else:
            self.sock.close()
        if self.task is not None:
            self.task.cancel()


class TcpBus(Bus):
    """A :class:`~perun_core.interfaces.Bus` over TCP and Unix sockets for one wire identity.

    Args:
        account: the wire identity; its ``address`` is the only address this bus serves and
            it signs the handshake transcripts.
        verify: ``verify(address, message, sig) -> bool`` checks a peer's handshake
            signature (e.g. ``backend.verify_signature``; see :meth:`from_backend`).
        peers: initial address book, wire address -> endpoint (see :meth:`add_peer`).
        max_frame_size: the largest frame sent or accepted (default 1 MiB, at most 16 MiB).
            A larger incoming frame closes its connection before it is read.
        handshake_timeout: seconds a handshake may take, from either side.
        connect_timeout: seconds to open a socket to a peer.
        idle_interval: a connection sends ``Ping`` after this many idle seconds and is
            closed after three intervals without receiving anything.
        dial_attempts: connection attempts per publish before it fails.
        backoff_initial: delay before the second attempt; doubled after each failure.
        backoff_max: cap of the delay between attempts.
        drain_timeout: seconds a retired connection may take to be closed by the peer.
        close_timeout: seconds :meth:`close` waits for peers to acknowledge ``Shutdown``.
        max_connections: connections at most (authenticated, retired and handshaking ones,
            dialed ones included); an accepted one beyond it displaces the oldest
            unauthenticated connection, or is closed if there is none.
        max_unauthenticated: accepted connections still in their handshake at most; a new
            one beyond it displaces the oldest.
        frame_timeout: seconds a frame may take from its first byte to its last after
            authentication; a slower one closes its connection.

    Endpoints are strings ``tcp://host:port``, ``tcp://[::1]:port`` or ``unix:///path`` (or
    :class:`~perun_tcp.endpoint.Endpoint`). Ping, Pong, Shutdown and the handshake messages
    are consumed by the bus; every other envelope reaches the subscriber.
    """

    name: ClassVar[str] = "tcp"
    Config: ClassVar[type[PartConfig]] = TcpBusConfig

    def __init__(
        self,
        account: Account,
        verify: Verifier,
        *,
        peers: Mapping[Address, str | Endpoint] | None = None,
        max_frame_size: int = DEFAULT_MAX_SIZE,
        handshake_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        idle_interval: float = 20.0,
        dial_attempts: int = 4,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        drain_timeout: float = 5.0,
        close_timeout: float = 2.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_unauthenticated: int = DEFAULT_MAX_UNAUTHENTICATED,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
    ) -> None:
        if not 0 < max_frame_size <= MAX_FRAME_LIMIT:
            raise ValueError(
                f"max_frame_size must be in 1..{MAX_FRAME_LIMIT}, got {max_frame_size}"
            )
        if dial_attempts < 1:
            raise ValueError("dial_attempts must be at least 1")
        if not 1 <= max_unauthenticated <= max_connections:
            raise ValueError("need 1 <= max_unauthenticated <= max_connections")
        for label, value in (
            ("handshake_timeout", handshake_timeout),
            ("connect_timeout", connect_timeout),
            ("idle_interval", idle_interval),
            ("drain_timeout", drain_timeout),
            ("close_timeout", close_timeout),
            ("frame_timeout", frame_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{label} must be positive, got {value}")
        if backoff_initial < 0 or backoff_max < backoff_initial:
            raise ValueError("need 0 <= backoff_initial <= backoff_max")
        self._account = account
        self._verify = verify
        self.address: Address = account.address
        self.max_frame_size = max_frame_size
        self.handshake_timeout = handshake_timeout
        self.connect_timeout = connect_timeout
        self.idle_interval = idle_interval
        self.dial_attempts = dial_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.drain_timeout = drain_timeout
        self.close_timeout = close_timeout
        self.max_connections = max_connections
        self.max_unauthenticated = max_unauthenticated
        self.frame_timeout = frame_timeout
        self.displaced = 0
        """Unauthenticated connections closed to make room for newer ones (or for a file
        descriptor)."""
        self.refused = 0
        """Accepted connections closed at once because ``max_connections`` authenticated
        connections were open."""
        self._peers: dict[Address, Endpoint] = {}
        for addr, ep in (peers or {}).items():
            self.add_peer(addr, ep)
        self._current: dict[Address, _Connection] = {}
        self._all: set[_Connection] = set()
        self._locks: dict[Address, asyncio.Lock] = {}
        self._incoming: dict[Address, set[asyncio.Event]] = {}
        self._handshakes: dict[_Handshake, None] = {}  # oldest first
        self._servers: list[tuple[Listener, Endpoint]] = []
        self._sub: TcpSubscription | None = None
        self._backlog: list[Envelope] = []
        self._handlers: list[ConnectHandler] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = 0
        self._closed = False

    @classmethod
    def from_backend(cls, account: Account, backend: ChainBackend, **options: Any) -> TcpBus:
        """A bus whose peers prove their addresses with ``backend``'s signature scheme."""
        return cls(account, backend.verify_signature, **options)

    @classmethod
    async def open(
        cls,
        config: PartConfig | Mapping[str, Any] | None = None,
        *,
        account: Account | None = None,
        backend: ChainBackend | None = None,
    ) -> Self:
        """A bus for ``account`` listening on ``config.listen`` (see :class:`TcpBusConfig`);
        peers prove their addresses with ``backend``'s signature scheme.

        Raises:
            ConfigError: no account or backend, an unknown option, a value of the wrong
                type or out of range, an endpoint or peer address that does not parse.
            OSError: an endpoint cannot be bound (nothing stays open).
        """
        what = "bus 'tcp'"
        if account is None or backend is None:
            raise ConfigError(f"{what}: open() needs the account and the chain backend")
        options = load_config(TcpBusConfig, config, what)
        tuning = config_fields(options)
        del tuning["listen"], tuning["peers"]
        try:
            bus = cls(account, backend.verify_signature, **tuning)
        except ValueError as exc:  # an option out of range
            raise ConfigError(f"{what}: {exc}") from exc
        try:
            for address, endpoint in options.peers.items():
                bus.add_peer(backend.parse_address(address), endpoint)
            for endpoint in options.listen:
                await bus.listen_on(endpoint)
        except ValueError as exc:  # EndpointError and an address that does not parse
            await bus.close()
            raise ConfigError(f"{what}: {exc}") from exc
        except BaseException:
            await bus.close()
            raise
        return bus

    def advertised_endpoints(self) -> tuple[str, ...]:
        """The endpoints this bus listens on, as strings for a peer's :meth:`add_peer`."""
        return tuple(str(ep) for ep in self.endpoints)

    # --- address book and listeners -------------------------------------------------------

    def add_peer(self, address: Address, endpoint: str | Endpoint) -> None:
        """Tell the bus where ``address`` listens (replaces an earlier entry).

        Raises:
            EndpointError: ``endpoint`` does not parse.
        """
        self._peers[address] = as_endpoint(endpoint)

    def remove_peer(self, address: Address) -> None:
        """Forget ``address``'s endpoint (a live connection stays up)."""
        self._peers.pop(address, None)

    def endpoint_of(self, address: Address) -> Endpoint | None:
        """The endpoint known for ``address``, if any."""
        return self._peers.get(address)

    def _listener(self, socks: list[socket.socket]) -> Listener:
        return Listener(socks, self._on_socket, self._displace_oldest)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The endpoints this bus listens on (with the real port of ``port=0`` listeners)."""
        return tuple(ep for _, ep in self._servers)

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> Endpoint:
        """Accept TCP connections on ``host:port`` (``port=0``: a free port); returns it.

        Raises:
            OSError: the address cannot be bound.
        """
        self._check_open()
        socks = bind_tcp(host, port)
        ep = Endpoint.tcp(host, int(socks[0].getsockname()[1]))
        self._servers.append((self._listener(socks), ep))
        log.info("%s listening on %s", self.address.short(), ep)
        return ep

    async def listen_unix(self, path: str | os.PathLike[str]) -> Endpoint:
        """Accept connections on the Unix-domain socket ``path`` (a stale socket is replaced).

        Raises:
            OSError: the path cannot be bound.
        """
        self._check_open()
        text = os.fspath(path)
        ep = Endpoint.unix(text)
        self._servers.append((self._listener([bind_unix(text)]), ep))
        log.info("%s listening on %s", self.address.short(), ep)
        return ep

    async def listen_on(self, endpoint: str | Endpoint) -> Endpoint:
        """:meth:`listen` or :meth:`listen_unix`, by the endpoint's kind."""
        ep = as_endpoint(endpoint)
        if ep.kind == "unix":
            return await self.listen_unix(ep.path)
        return await self.listen(ep.host, ep.port)

    # --- Bus interface ----------------------------------------------------------------------

    async def publish(self, envelope: Envelope) -> None:
        """Send ``envelope`` to its recipient, dialing it if there is no connection yet.

        Envelopes to one peer leave in call order and arrive in that order.

        Raises:
            PeerDisconnectedError: the bus is closed, no endpoint is known for the recipient,
                or it could not be reached within ``dial_attempts`` attempts.
            AuthenticationError: the endpoint is served by someone who is not the recipient
                (or who cannot prove it).
            UnsupportedWireVersionError: the recipient speaks another wire version.
            FrameTooLargeError: the encoded envelope exceeds ``max_frame_size`` (nothing sent).
            MalformedMessageError: the envelope does not encode.
            MisroutedMessageError: the sender is not this bus's address.
        """
        if self._closed:
            raise PeerDisconnectedError(f"cannot reach {envelope.recipient}: the bus is closed")
        if envelope.sender != self.address:
            raise MisroutedMessageError(
                f"this bus sends as {self.address}, but the envelope's sender is {envelope.sender}"
            )
        payload = encode_envelope(envelope)
        if len(payload) > self.max_frame_size:
            raise FrameTooLargeError(len(payload), self.max_frame_size)
        peer = envelope.recipient
        if peer == self.address:
            self._deliver(decode_envelope(payload, max_size=self.max_frame_size))
            return
        lock = self._locks.get(peer)
        if lock is None:
            lock = self._locks[peer] = asyncio.Lock()
        conn = self._current.get(peer)
        # The fast path must not overtake a publish that is still waiting for a connection.
        if conn is None or not conn.usable or lock.locked():
            async with lock:
                conn = await self._connection(peer)
                conn.write(payload)
        else:
            conn.write(payload)
        # Wait for the transport only when it pushes back (or is going away, so that the
        # failure is raised): an await per frame costs more than the frame's write.
        transport = conn.writer.transport
        if transport.get_write_buffer_size() < _DRAIN_ABOVE and not transport.is_closing():
            return
        try:
            await conn.writer.drain()
        except ConnectionError as e:
            raise PeerDisconnectedError(
                f"connection to {peer} ({conn.where}) broke while sending: {e}"
            ) from e

    def subscribe(self, address: Address) -> TcpSubscription:
        """Receive the envelopes addressed to this bus's address.

        Envelopes that arrived before (or between) subscriptions are kept and come first.

        Raises:
            ProtocolError: ``address`` is not the bus's wire address, it is already
                subscribed, or the bus is closed.
        """
        if self._closed:
            raise ProtocolError("the TCP bus is closed; create a new TcpBus")
        if address != self.address:
            raise ProtocolError(
                f"this TcpBus serves only its wire account {self.address}, not {address}; "
                "create one TcpBus per wire identity"
            )
        if self._sub is not None:
            raise ProtocolError(
                f"{address} is already subscribed on this TCP bus; close its subscription first"
            )
        self._sub = TcpSubscription(self, address, self._backlog)
        self._backlog = []
        return self._sub

    def on_connect(self, address: Address, handler: ConnectHandler) -> None:
        """Call ``handler(peer)`` (as a task) whenever an authenticated connection comes up.

        It runs on the first connection to a peer and on every later one (reconnects, and
        when a preferred connection replaces another), so it may run more than once per
        peer. Connections already up when it is registered are reported right away.

        Raises:
            ProtocolError: ``address`` is not this bus's wire address.
        """
        if address != self.address:
            raise ProtocolError(f"this TcpBus serves only {self.address}, not {address}")
        self._handlers.append(handler)
        for peer, conn in self._current.items():
            if conn.usable:
                self._spawn(handler, peer)

    async def close(self) -> None:  # noqa: C901 - the shutdown steps in their required order, each guarded for a half-open bus
        """Announce ``Shutdown`` on every connection, wait briefly for the peers to close
        theirs, then close everything (a pending ``next()`` returns ``None``)."""
        if self._closed:
            return
        self._closed = True
        for listener, _ in self._servers:
            listener.close()
        for hs in list(self._handshakes):
            hs.drop()
        self._handshakes.clear()
        conns = list(self._all)
        for c in conns:
            c.send_shutdown("the peer's bus is closing")
        if conns:
            waits = [asyncio.ensure_future(c.drained.wait()) for c in conns]
            _, pending = await asyncio.wait(waits, timeout=self.close_timeout)
            for w in pending:
                w.cancel()
        for c in list(self._all):
            c.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for _, ep in self._servers:
            if ep.kind == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(ep.path)
        if self._sub is not None:
            self._sub.close()
        self._backlog.clear()

    # --- introspection ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def connected_peers(self) -> tuple[Address, ...]:
        """Peers with a usable authenticated connection right now."""
        return tuple(p for p, c in self._current.items() if c.usable)

    def connection_count(self, peer: Address) -> int:
        """Open connections to ``peer``, including retired ones still draining."""
        return sum(1 for c in self._all if c.peer == peer and not c.closed)

    @property
    def handshakes(self) -> int:
        """Accepted connections still in their handshake (not authenticated yet)."""
        return len(self._handshakes)

    @property
    def buffered_bytes(self) -> int:
        """Bytes of unfinished incoming frames held for all authenticated connections."""
        return sum(c.inbox.splitter.buffered for c in self._all if c.inbox is not None)

    @property
    def connections(self) -> int:
        """Authenticated connections open right now (retired ones included)."""
        return len(self._all)

    # --- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ProtocolError("the TCP bus is closed; create a new TcpBus")

    def _deliver(self, env: Envelope) -> None:
        if self._sub is not None:
            self._sub.deliver(env)
        elif not self._closed:
            self._backlog.append(env)

    def unsubscribed(self, sub: TcpSubscription, left: list[Envelope]) -> None:
        """A subscription closed (called by it); ``left`` is what it never handed out."""
        if self._sub is sub:
            self._sub = None
            if not self._closed:
                self._backlog[:0] = left

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn(self, handler: ConnectHandler, peer: Address) -> None:
        async def run() -> None:
            await handler(peer)

        task = asyncio.get_running_loop().create_task(run(), name=f"tcp-connect-{peer.short()}")
        self._track(task)

        def done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and (e := t.exception()) is not None:
                log.error("connect handler for peer %s failed: %r", peer, e, exc_info=e)

        task.add_done_callback(done)

    async def _connection(self, peer: Address) -> _Connection:
        """A usable connection to ``peer`` (caller holds the peer's lock)."""
        cur = self._current.get(peer)
        if cur is not None and cur.usable:
            return cur
        # The peer has just proven itself on a connection it dialed and only the acceptance
        # Ping is left to send: use that connection instead of dialing a second one. (A
        # handshake in which the address is merely claimed never makes us wait.)
        waits = [asyncio.ensure_future(ev.wait()) for ev in self._incoming.get(peer, ())]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=self.handshake_timeout)
            for w in pending:
                w.cancel()
        cur = self._current.get(peer)
        if cur is not None and cur.usable:
            return cur
        return await self._dial(peer)

    async def _dial(self, peer: Address) -> _Connection:
        ep = self._peers.get(peer)
        if ep is None:
            raise PeerDisconnectedError(
                f"cannot reach {peer}: no endpoint known for it and it is not connected; add "
                "one with bus.add_peer(address, 'tcp://host:port' or 'unix:///path')"
            )
        delay = self.backoff_initial
        last: BaseException | None = None
        for attempt in range(1, self.dial_attempts + 1):
            if self._closed:
                raise PeerDisconnectedError(f"cannot reach {peer}: the bus is closed")
            try:
                await self._dial_once(peer, ep)
            except TimeoutError as e:  # includes a handshake that timed out
                last = e
            except (AuthenticationError, UnsupportedWireVersionError) as e:
                log.warning("dialing %s at %s refused: %s: %s", peer, ep, type(e).__name__, e)
                raise
            except (OSError, MalformedMessageError) as e:
                last = e
            cur = self._current.get(peer)
            if cur is not None and cur.usable:
                return cur
            if attempt < self.dial_attempts:
                log.debug("dial %d to %s at %s failed (%r); retrying", attempt, peer, ep, last)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                cur = self._current.get(peer)
                if cur is not None and cur.usable:  # the peer dialed us meanwhile
                    return cur
        what = f"{type(last).__name__}: {last}" if last is not None else "connection lost"
        raise PeerDisconnectedError(
            f"cannot reach {peer} at {ep} after {self.dial_attempts} attempts; last error: {what}"
        )

    async def _dial_once(self, peer: Address, ep: Endpoint) -> None:
        async with asyncio.timeout(self.connect_timeout):
            if ep.kind == "tcp":
                reader, writer = await asyncio.open_connection(ep.host, ep.port)
            else:
                reader, writer = await asyncio.open_unix_connection(ep.path)
        try:
            await handshake.dial(
                reader, writer, self._account, self._verify, peer, self.handshake_timeout
            )
        except BaseException:
            writer.close()
            raise
        self._register(reader, writer, peer, dialer=self.address, where=str(ep))

    def _proven(self, peer: Address) -> asyncio.Event:
        ev = asyncio.Event()
        self._incoming.setdefault(peer, set()).add(ev)
        return ev

    def _proven_done(self, peer: Address, ev: asyncio.Event) -> None:
        evs = self._incoming.get(peer)
        if evs is not None:
            evs.discard(ev)
            if not evs:
                del self._incoming[peer]
        ev.set()

    def _on_socket(self, sock: socket.socket) -> None:
        """A connection came in (called by the listener; enforces the connection caps)."""
        if self._closed:
            sock.close()
            return
        if len(self._all) + len(self._handshakes) >= self.max_connections:
            if not self._displace_oldest():
                self.refused += 1
                if _first_or_power_of_two(self.refused):  # a flood logs a few lines, not one each
                    log.warning(
                        "refused a connection (%d so far): %d connections are open (the limit)",
                        self.refused,
                        len(self._all),
                    )
                sock.close()
                return
        elif len(self._handshakes) >= self.max_unauthenticated:
            self._displace_oldest()
        hs = _Handshake(sock)
        self._handshakes[hs] = None
        hs.task = asyncio.get_running_loop().create_task(self._adopt(hs), name="tcp-accept")
        self._track(hs.task)

    def _displace_oldest(self) -> bool:
        """Drop the oldest unauthenticated connection; whether there was one."""
        for hs in self._handshakes:
            del self._handshakes[hs]
            self.displaced += 1
            log.debug("dropping an unauthenticated connection to make room")
            hs.drop()
            return True
        return False

    async def _adopt(self, hs: _Handshake) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_HANDSHAKE_READ_LIMIT)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, hs.sock)
        except OSError as e:
            self._handshakes.pop(hs, None)
            hs.sock.close()
            log.debug("an accepted connection broke before its handshake: %r", e)
            return
        if hs not in self._handshakes:  # displaced meanwhile
            transport.abort()
            return
        assert isinstance(transport, asyncio.Transport)
        hs.transport = transport
        await self._accept(reader, asyncio.StreamWriter(transport, protocol, reader, loop), hs)

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hs: _Handshake
    ) -> None:
        where = _peername(writer)

        def on_proof(peer: Address) -> Callable[[], None]:
            ev = self._proven(peer)
            return lambda: self._proven_done(peer, ev)

        adopted = False
        try:
            if self._closed:
                return
            peer = await handshake.accept(
                reader, writer, self._account, self._verify, self.handshake_timeout, on_proof
            )
            if hs in self._handshakes:  # not displaced meanwhile
                del self._handshakes[hs]
                self._register(reader, writer, peer, dialer=peer, where=where)
                adopted = True
        except (ProtocolError, TimeoutError) as e:
            log.warning("refused incoming connection from %s: %s: %s", where, type(e).__name__, e)
        except OSError as e:
            log.debug("incoming connection from %s ended during the handshake: %r", where, e)
        finally:
            self._handshakes.pop(hs, None)
            if not adopted:
                writer.close()  # after the refusal's Shutdown, if one was written

    def _register(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Address,
        *,
        dialer: Address,
        where: str,
    ) -> None:
        """Adopt a freshly authenticated stream (synchronous: no frame can slip in between)."""
        if self._closed:
            writer.close()
            return
        self._seq += 1
        conn = _Connection(self, reader, writer, peer, dialer, self._seq, where)
        self._all.add(conn)
        loop = asyncio.get_running_loop()
        for coro, label in ((self._read_loop(conn), "read"), (self._keepalive(conn), "ping")):
            t = loop.create_task(coro, name=f"tcp-{label}-{peer.short()}-{conn.seq}")
            conn.tasks.append(t)
            self._track(t)
        cur = self._current.get(peer)
        log.info("authenticated %r", conn)
        if cur is None or not cur.usable:
            if cur is not None and not cur.closed:
                conn.gate.append(cur)
            self._current[peer] = conn
            self._fire(peer)
        elif _prefer(conn, cur, race_window=2 * self.handshake_timeout):
            self._current[peer] = conn
            conn.gate.append(cur)
            self._retire(cur)
            self._fire(peer)
        else:
            cur.gate.append(conn)
            self._retire(conn)

    def _retire(self, conn: _Connection) -> None:
        log.debug("retiring %r in favour of the preferred connection", conn)
        conn.send_shutdown("superseded by the preferred connection to this peer")
        conn.deadline = asyncio.get_running_loop().call_later(self.drain_timeout, conn.close)

    def _fire(self, peer: Address) -> None:
        for h in self._handlers:
            self._spawn(h, peer)

    def forget(self, conn: _Connection) -> None:
        """Drop a closed connection from the bookkeeping (called by the connection)."""
        self._all.discard(conn)
        if self._current.get(conn.peer) is conn:
            del self._current[conn.peer]

    async def _read_loop(self, conn: _Connection) -> None:  # noqa: C901 - the connection's read loop keeps its states (handshake, gate, idle, close) in one place
        loop = asyncio.get_running_loop()
        reason = "closing"

        def received() -> None:
            conn.last_rx = loop.time()

        # Frames are handled in the transport's data callback (see perun_tcp.inbox); this
        # task only handles what has to wait for a retired connection, and the end.
        inbox = conn.inbox = Inbox(
            FrameSplitter(self.max_frame_size),
            lambda payload: self._on_frame(conn, payload),
            lambda: bool(conn.gate),
            received,
            self.frame_timeout,
        )
        attached = inbox.attach(conn.reader, conn.writer.transport)
        try:
            while True:
                if attached or inbox.frames or inbox.done:
                    await inbox.wait()
                else:  # a reader that is not asyncio's own: read it here
                    data = await conn.reader.read(_READ_CHUNK)
                    if data:
                        inbox.feed(data)
                    else:
                        inbox.end()
                while inbox.frames:
                    while conn.gate:
                        await self._await_drained(conn.gate[0])
                        conn.gate.pop(0)
                    if not self._on_frame(conn, inbox.frames.popleft()):
                        inbox.stopped = True
                        break
                inbox.caught_up()
                if inbox.stopped:
                    reason = "acknowledging shutdown"
                    return
                if inbox.error is not None:
                    raise inbox.error
                if inbox.eof:
                    raise ConnectionEndedError(clean=inbox.splitter.empty)
        except ConnectionEndedError as e:
            log.info("%r: %s", conn, e)
        except ProtocolError as e:  # malformed, oversize, misused handshake messages
            log.warning("dropping %r: %s: %s", conn, type(e).__name__, e)
            reason = f"protocol error: {type(e).__name__}"
        except OSError as e:
            log.info("%r broke: %r", conn, e)
        finally:
            inbox.stopped = True  # late bytes are ignored
            conn.drained.set()
            conn.send_shutdown(reason)
            conn.close()

    def _on_frame(self, conn: _Connection, payload: bytes) -> bool:
        """Handle one frame of ``conn``; ``False`` once the peer shut the connection down.

        Raises:
            ProtocolError: the frame is malformed, or a handshake message after the handshake.
        """
        env = decode_envelope(payload, max_size=self.max_frame_size)
        if env.sender != conn.peer or env.recipient != self.address:
            err = MisroutedMessageError(
                f"envelope {env.sender} -> {env.recipient} on the connection "
                f"{conn.peer} -> {self.address}; dropped"
            )
            log.warning("%r: %s: %s", conn, type(err).__name__, err)
            return True
        msg = env.msg
        if isinstance(msg, Ping):
            if conn.usable:
                conn.send_control(Pong(msg.created_ns, time.time_ns()))
            return True
        if isinstance(msg, Pong):
            return True
        if isinstance(msg, Shutdown):
            log.info("%r: peer shut the connection down: %s", conn, msg.reason)
            return False
        if isinstance(msg, _CONTROL):
            raise AuthenticationError(
                f"{type(msg).__name__} (code {msg.code}) on an authenticated connection"
            )
        self._deliver(env)
        return True

    async def _await_drained(self, old: _Connection) -> None:
        try:
            await asyncio.wait_for(old.drained.wait(), self.drain_timeout)
        except TimeoutError:
            log.warning("%r did not drain in %g s; closing it", old, self.drain_timeout)
            old.close()

    async def _keepalive(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        iv = self.idle_interval
        while not conn.closed:
            now = loop.time()
            if now - conn.last_rx >= 3 * iv:
                log.warning("%r: nothing received for %g s; closing it", conn, now - conn.last_rx)
                conn.close()
                return
            if now - conn.last_tx >= iv and conn.usable:
                conn.send_control(Ping(time.time_ns()))
            wake = min(conn.last_tx + iv, conn.last_rx + 3 * iv)
            await asyncio.sleep(max(wake - loop.time(), iv / 100))


def _first_or_power_of_two(n: int) -> bool:
    return n & (n - 1) == 0


def _prefer(new: _Connection, old: _Connection, *, race_window: float) -> bool:
    """Whether the newly authenticated ``new`` replaces ``old`` (see the module docs)."""
    if new.dialer != old.dialer and new.established - old.established < race_window:
        return new.dialer.raw < old.dialer.raw
    return True


def _peername(writer: asyncio.StreamWriter) -> str:
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        host = f"[{name[0]}]" if ":" in str(name[0]) else str(name[0])
        return f"tcp://{host}:{name[1]}"
    sock = writer.get_extra_info("sockname")
    return f"unix://{sock}" if sock else "unix socket"
