"""The in-process bus: clients in one event loop exchange envelopes through queues.

Every address that subscribes is "connected" to every other subscribed address on the same
:class:`LocalBus`. There is no handshake: in-process clients trust each other's addresses.

By default each published envelope makes a round trip through the wire codec, so tests that run
in one process still exercise the real wire format and its size limit. ``encode=False`` hands
the objects over as they are, for speed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar

from perun_core.channel.types import Address
from perun_core.errors import PeerDisconnectedError, ProtocolError
from perun_core.interfaces.bus import Bus, ConnectHandler, Subscription
from perun_core.parts import PartConfig
from perun_core.queues import ClosableQueue
from perun_core.wire.codec import (
    DEFAULT_MAX_SIZE,
    MAX_FRAME_LIMIT,
    decode_envelope,
    encode_envelope,
)
from perun_core.wire.messages import Envelope

log = logging.getLogger(__name__)


class LocalSubscription(Subscription):
    """The queue of envelopes for one address on a :class:`LocalBus`."""

    def __init__(self, bus: LocalBus, address: Address) -> None:
        self.address = address
        self._bus = bus
        self._queue: ClosableQueue[Envelope] = ClosableQueue()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (by the owner or by the bus)."""
        return self._queue.closed

    def deliver(self, env: Envelope) -> None:
        """Queue an envelope for :meth:`next` (called by the bus)."""
        self._queue.put(env)

    async def next(self) -> Envelope | None:
        """The next envelope in arrival order, or ``None`` once closed."""
        return await self._queue.get()

    def close(self) -> None:
        """Stop receiving; a pending :meth:`next` returns ``None``; the address can resubscribe."""
        if self._queue.closed:
            return
        self._queue.close()
        self._bus.unsubscribed(self)


class LocalBusConfig(PartConfig, frozen=True, kw_only=True):
    """Options of the ``local`` bus (the keyword arguments of :class:`LocalBus`)."""

    encode: bool = True
    max_size: int = DEFAULT_MAX_SIZE


class LocalBus(Bus):
    """An in-process :class:`~perun_core.interfaces.Bus`.

    Args:
        encode: round-trip every envelope through the wire codec (default). Codec errors reach
            the publisher: :class:`~perun_core.errors.MalformedMessageError` for a message that
            cannot be encoded, :class:`~perun_core.errors.FrameTooLargeError` above ``max_size``.
        max_size: the largest encoded envelope accepted when ``encode`` is true.

    Connection events: a connection between two addresses "comes up" when the second of them
    subscribes. Then every handler registered with :meth:`on_connect` for either end is started
    as a task with the other end's address. A handler registered while connections of its
    address are already up is started right away for each of those peers. Closing a
    subscription takes its connections down; subscribing again brings them up again (and calls
    the handlers again, as a reconnect would). Handlers need a running event loop.
    """

    name: ClassVar[str] = "local"
    Config: ClassVar[type[PartConfig]] = LocalBusConfig
    shared: ClassVar[bool] = True

    def __init__(self, *, encode: bool = True, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if not 0 < max_size <= MAX_FRAME_LIMIT:
            raise ValueError(f"max_size must be in 1..{MAX_FRAME_LIMIT}, got {max_size}")
        self.encode = encode
        self.max_size = max_size
        self._subs: dict[Address, LocalSubscription] = {}
        self._handlers: dict[Address, list[ConnectHandler]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def addresses(self) -> tuple[Address, ...]:
        """The addresses subscribed right now."""
        return tuple(self._subs)

    async def publish(self, envelope: Envelope) -> None:
        """Deliver ``envelope`` to its recipient's subscription, after every earlier one.

        Raises:
            PeerDisconnectedError: nobody subscribed the recipient (or the bus is closed).
            MalformedMessageError: with ``encode``, the envelope does not encode.
            FrameTooLargeError: with ``encode``, the encoding is larger than ``max_size``.
        """
        sub = self._subs.get(envelope.recipient)
        if sub is None:
            why = "the bus is closed" if self._closed else "no subscription for it on this bus"
            raise PeerDisconnectedError(f"cannot reach {envelope.recipient}: {why}")
        if self.encode:
            envelope = decode_envelope(encode_envelope(envelope), max_size=self.max_size)
        # No await between lookup and delivery: envelopes arrive in publish order.
        sub.deliver(envelope)

    def subscribe(self, address: Address) -> LocalSubscription:
        """Receive the envelopes addressed to ``address``.

        Raises:
            ProtocolError: ``address`` already has an open subscription, or the bus is closed.
        """
        if self._closed:
            raise ProtocolError("the local bus is closed; create a new LocalBus")
        if address in self._subs:
            raise ProtocolError(
                f"{address} is already subscribed on this local bus; close its subscription "
                "first (one subscription per address)"
            )
        sub = LocalSubscription(self, address)
        self._subs[address] = sub
        for peer in self._subs:
            if peer != address:
                self._fire(address, peer)
                self._fire(peer, address)
        return sub

    def on_connect(self, address: Address, handler: ConnectHandler) -> None:
        """Call ``handler(peer)`` (as a task) whenever a connection of ``address`` comes up."""
        self._handlers.setdefault(address, []).append(handler)
        if address in self._subs:
            for peer in self._subs:
                if peer != address:
                    self._spawn(handler, address, peer)

    async def close(self) -> None:
        """Close every subscription (pending ``next()`` calls return ``None``) and stop handlers."""
        self._closed = True
        for sub in list(self._subs.values()):
            sub.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- internals ------------------------------------------------------------------------

    def unsubscribed(self, sub: LocalSubscription) -> None:
        """A subscription closed (called by it): take its connections down."""
        if self._subs.get(sub.address) is sub:
            del self._subs[sub.address]

    def _fire(self, address: Address, peer: Address) -> None:
        for handler in self._handlers.get(address, ()):
            self._spawn(handler, address, peer)

    def _spawn(self, handler: ConnectHandler, address: Address, peer: Address) -> None:
        loop = asyncio.get_running_loop()  # before calling the handler: no stray coroutine

        async def run() -> None:
            await handler(peer)

        task = loop.create_task(run(), name=f"local-bus-connect-{address.short()}")
        self._tasks.add(task)  # strong reference until done (the loop keeps only weak ones)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and (e := t.exception()) is not None:
                log.error(
                    "connect handler of %s for peer %s failed: %r", address, peer, e, exc_info=e
                )

        task.add_done_callback(done)
