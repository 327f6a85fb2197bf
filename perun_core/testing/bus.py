"""The bus conformance suite: what every :class:`~perun_core.interfaces.Bus` must do.

Use it by subclassing :class:`BusConformance` in a test module and providing one fixture:

``bus_pair``
    an async fixture yielding a :class:`BusPair`: two open buses (they may be one object,
    as for ``LocalBus``), the wire address each one serves, the ``max_size`` both were
    configured with (between :data:`MIN_MAX_SIZE` and :data:`MAX_MAX_SIZE`), and an
    ``unknown`` address neither can reach. Nothing is subscribed yet; a publish from one
    address must reach the other without further setup (a network bus dials on demand).
    Dial retries should be quick (a few hundred milliseconds in all), because one test
    publishes to a closed peer. The fixture closes both buses afterwards (``close()`` must
    be idempotent).

Example::

    class TestMyBus(BusConformance):
        @pytest.fixture
        async def bus_pair(self):
            a, b = MyBus(...), MyBus(...)
            yield BusPair(a, addr_a, b, addr_b, max_size=65536, unknown=Address(b"\\xee" * 20))
            await a.close()
            await b.close()

Connection-control messages (``Ping``, ``Pong``, ``Shutdown``, the handshake) may be consumed
by a network bus, so the suite only sends channel messages.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Final

import pytest

from perun_core.channel.allocation import Allocation
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Address, Asset
from perun_core.errors import (
    FrameTooLargeError,
    MalformedMessageError,
    PeerDisconnectedError,
    ProtocolError,
)
from perun_core.interfaces.bus import Bus, Subscription
from perun_core.wire.codec import encode_envelope
from perun_core.wire.messages import ChannelSync, ChannelUpdateAcc, ChannelUpdateRej, Envelope

MIN_MAX_SIZE: Final = 4 * 1024
MAX_MAX_SIZE: Final = 128 * 1024
"""``bus_pair.max_size`` must lie in this range (the suite builds messages of that size)."""

TIMEOUT: Final = 10.0
_ASSET: Final = Asset(1, b"ETH")
_SIG: Final = b"\x01" * 65


@dataclass(frozen=True, slots=True)
class BusPair:
    """Two connected buses as the conformance suite needs them.

    Attributes:
        a: the bus serving ``a_addr``.
        a_addr: a wire address served by ``a``.
        b: the bus serving ``b_addr`` (may be the same object as ``a``).
        b_addr: a wire address served by ``b``.
        max_size: the largest encoded envelope both buses accept.
        unknown: an address that neither bus can reach.
    """

    a: Bus
    a_addr: Address
    b: Bus
    b_addr: Address
    max_size: int
    unknown: Address


def numbered(sender: Address, recipient: Address, seq: int, channel: int = 0) -> Envelope:
    """A small envelope carrying ``seq`` (as a version) on channel number ``channel``."""
    cid = channel.to_bytes(32, "big")
    return Envelope(sender, recipient, ChannelUpdateAcc(cid, seq, _SIG))


def sized_envelope(sender: Address, recipient: Address, size: int) -> Envelope:
    """An envelope whose encoding is exactly ``size`` bytes (``MIN_MAX_SIZE`` to about 140 KB).

    It is a ``ChannelSync`` whose two transactions carry filler app data.

    Raises:
        ValueError: no envelope of exactly that size was found.
    """

    def build(n1: int, n2: int) -> Envelope:
        def tx(version: int, n: int) -> Transaction:
            state = State(
                b"\x07" * 32, version, Allocation((_ASSET,), ((1, 2),)), None, b"\xab" * n
            )
            return Transaction(state, (_SIG, None))

        return Envelope(sender, recipient, ChannelSync(b"\x07" * 32, 2, tx(1, n1), tx(2, n2), 0))

    limit = 64 * 1024

    def length(n1: int, n2: int) -> int:
        return len(encode_envelope(build(n1, n2)))

    base = length(0, 0)
    extra = size - base
    if extra < 0:
        raise ValueError(f"no envelope of {size} bytes: the smallest is {base}")
    n1 = min(extra, limit)
    for _ in range(2):  # length headers grow by a few bytes at msgpack thresholds
        n2 = max(0, min(limit, extra - n1))
        for cand1 in (n1, n1 - 1, n1 - 2, n1 - 3):
            for cand2 in range(max(0, n2 - 8), min(limit, n2 + 8) + 1):
                if cand1 >= 0 and length(cand1, cand2) == size:
                    return build(cand1, cand2)
        n1 -= 16
    raise ValueError(f"no envelope of exactly {size} bytes found")


async def recv(sub: Subscription, timeout: float = TIMEOUT) -> Envelope:  # noqa: ASYNC109 - every wait has a deadline; this one takes it as an argument
    """The next envelope of ``sub``; fails the test if none comes within ``timeout``."""
    async with asyncio.timeout(timeout):
        env = await sub.next()
    assert env is not None, "the subscription closed while an envelope was expected"
    return env


async def assert_quiet(sub: Subscription, seconds: float = 0.2) -> None:
    """Fail if ``sub`` yields an envelope within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            env = await sub.next()
    except TimeoutError:
        return
    raise AssertionError(f"unexpected envelope {env!r}")


class BusConformance:
    """Ordering, concurrency, size limits, unknown peers, close and connect events."""

    async def test_in_order_both_ways(self, bus_pair: BusPair) -> None:
        p = bus_pair
        sub_a, sub_b = p.a.subscribe(p.a_addr), p.b.subscribe(p.b_addr)
        n = 500

        async def send(bus: Bus, frm: Address, to: Address) -> None:
            for i in range(n):
                await bus.publish(numbered(frm, to, i))

        async def take(sub: Subscription, frm: Address, to: Address) -> None:
            for i in range(n):
                assert await recv(sub) == numbered(frm, to, i)

        await asyncio.gather(
            send(p.a, p.a_addr, p.b_addr),
            send(p.b, p.b_addr, p.a_addr),
            take(sub_b, p.a_addr, p.b_addr),
            take(sub_a, p.b_addr, p.a_addr),
        )
        await assert_quiet(sub_a)
        await assert_quiet(sub_b)

    async def test_concurrent_channels_share_the_bus(self, bus_pair: BusPair) -> None:
        p = bus_pair
        sub_a, sub_b = p.a.subscribe(p.a_addr), p.b.subscribe(p.b_addr)
        channels, per_channel = 16, 40

        async def channel(c: int) -> None:
            for i in range(per_channel):
                await p.a.publish(numbered(p.a_addr, p.b_addr, i, channel=c))
                if i % 10 == 0:
                    await asyncio.sleep(0)  # interleave the channels

        await asyncio.gather(*(channel(c) for c in range(channels)))
        seen: dict[bytes, list[int]] = defaultdict(list)
        for _ in range(channels * per_channel):
            msg = (await recv(sub_b)).msg
            assert isinstance(msg, ChannelUpdateAcc)
            seen[msg.channel_id].append(msg.version)
        assert len(seen) == channels
        assert all(v == list(range(per_channel)) for v in seen.values())
        # The other direction still works after the burst.
        await p.b.publish(numbered(p.b_addr, p.a_addr, 7))
        assert await recv(sub_a) == numbered(p.b_addr, p.a_addr, 7)

    async def test_message_of_exactly_max_size_is_delivered(self, bus_pair: BusPair) -> None:
        p = bus_pair
        assert MIN_MAX_SIZE <= p.max_size <= MAX_MAX_SIZE, "bus_pair.max_size out of range"
        sub_b = p.b.subscribe(p.b_addr)
        big = sized_envelope(p.a_addr, p.b_addr, p.max_size)
        await p.a.publish(big)
        await p.a.publish(numbered(p.a_addr, p.b_addr, 1))
        assert await recv(sub_b) == big
        assert await recv(sub_b) == numbered(p.a_addr, p.b_addr, 1)

    async def test_oversize_message_is_refused_and_the_bus_carries_on(
        self, bus_pair: BusPair
    ) -> None:
        p = bus_pair
        sub_b = p.b.subscribe(p.b_addr)
        await p.a.publish(numbered(p.a_addr, p.b_addr, 1))
        assert await recv(sub_b) == numbered(p.a_addr, p.b_addr, 1)
        with pytest.raises(FrameTooLargeError) as err:
            await p.a.publish(sized_envelope(p.a_addr, p.b_addr, p.max_size + 1))
        assert err.value.size == p.max_size + 1 and err.value.limit == p.max_size
        await p.a.publish(numbered(p.a_addr, p.b_addr, 2))
        assert await recv(sub_b) == numbered(p.a_addr, p.b_addr, 2)
        await assert_quiet(sub_b)

    async def test_unencodable_message_is_refused(self, bus_pair: BusPair) -> None:
        p = bus_pair
        sub_b = p.b.subscribe(p.b_addr)
        bad = Envelope(p.a_addr, p.b_addr, ChannelUpdateRej(b"\x01" * 32, 1, 2, "x" * 5000))
        with pytest.raises(MalformedMessageError):
            await p.a.publish(bad)
        await p.a.publish(numbered(p.a_addr, p.b_addr, 3))
        assert await recv(sub_b) == numbered(p.a_addr, p.b_addr, 3)

    async def test_unknown_recipient_is_an_error(self, bus_pair: BusPair) -> None:
        p = bus_pair
        p.a.subscribe(p.a_addr)
        with pytest.raises(PeerDisconnectedError):
            async with asyncio.timeout(TIMEOUT):
                await p.a.publish(numbered(p.a_addr, p.unknown, 1))

    async def test_double_subscription_is_refused(self, bus_pair: BusPair) -> None:
        p = bus_pair
        sub = p.b.subscribe(p.b_addr)
        with pytest.raises(ProtocolError):
            p.b.subscribe(p.b_addr)
        sub.close()
        again = p.b.subscribe(p.b_addr)  # a closed subscription frees the address
        await p.a.publish(numbered(p.a_addr, p.b_addr, 4))
        assert await recv(again) == numbered(p.a_addr, p.b_addr, 4)

    async def test_subscription_close_wakes_a_pending_next(self, bus_pair: BusPair) -> None:
        p = bus_pair
        sub = p.b.subscribe(p.b_addr)
        pending = asyncio.ensure_future(sub.next())
        await asyncio.sleep(0.01)
        sub.close()
        async with asyncio.timeout(TIMEOUT):
            assert await pending is None
        assert await sub.next() is None

    async def test_close_semantics(self, bus_pair: BusPair) -> None:
        p = bus_pair
        p.a.subscribe(p.a_addr)
        sub_b = p.b.subscribe(p.b_addr)
        await p.a.publish(numbered(p.a_addr, p.b_addr, 1))
        assert await recv(sub_b) == numbered(p.a_addr, p.b_addr, 1)
        pending = asyncio.ensure_future(sub_b.next())
        await asyncio.sleep(0.01)
        await p.b.close()
        async with asyncio.timeout(TIMEOUT):
            assert await pending is None  # a pending next() ends with the bus
        assert await sub_b.next() is None
        await p.b.close()  # idempotent
        with pytest.raises(PeerDisconnectedError):
            await p.b.publish(numbered(p.b_addr, p.a_addr, 1))
        with pytest.raises(ProtocolError):
            p.b.subscribe(p.b_addr)
        # The peer learns that b is gone: publishing to it fails instead of vanishing.
        with pytest.raises(PeerDisconnectedError):
            async with asyncio.timeout(TIMEOUT):
                await p.a.publish(numbered(p.a_addr, p.b_addr, 2))

    async def test_on_connect_reports_the_peer(self, bus_pair: BusPair) -> None:
        p = bus_pair
        seen_a: asyncio.Queue[Address] = asyncio.Queue()
        seen_b: asyncio.Queue[Address] = asyncio.Queue()

        async def on_a(peer: Address) -> None:
            seen_a.put_nowait(peer)

        async def on_b(peer: Address) -> None:
            seen_b.put_nowait(peer)

        p.a.on_connect(p.a_addr, on_a)
        p.b.on_connect(p.b_addr, on_b)
        p.a.subscribe(p.a_addr)
        sub_b = p.b.subscribe(p.b_addr)
        await p.a.publish(numbered(p.a_addr, p.b_addr, 1))
        assert await recv(sub_b) == numbered(p.a_addr, p.b_addr, 1)
        async with asyncio.timeout(TIMEOUT):
            assert await seen_a.get() == p.b_addr
            assert await seen_b.get() == p.a_addr


__all__ = [
    "MAX_MAX_SIZE",
    "MIN_MAX_SIZE",
    "BusConformance",
    "BusPair",
    "assert_quiet",
    "numbered",
    "recv",
    "sized_envelope",
]
