"""The in-process LocalBus: delivery order, routing errors, close semantics, codec round trips."""

from __future__ import annotations

import asyncio

import pytest

from perun_core.channel.allocation import Allocation
from perun_core.channel.state import State
from perun_core.channel.types import Address, Asset
from perun_core.errors import (
    FrameTooLargeError,
    MalformedMessageError,
    PeerDisconnectedError,
    ProtocolError,
)
from perun_core.interfaces.bus import Bus, Subscription
from perun_core.wire import LocalBus
from perun_core.wire.messages import ChannelUpdate, Envelope, Ping, Shutdown

ALICE = Address(b"\xa1" * 20)
BOB = Address(b"\xb0" * 20)
CAROL = Address(b"\xc0" * 20)


def update(version: int) -> ChannelUpdate:
    eth = Asset(1, b"\xee" * 20)
    state = State(b"\x01" * 32, version, Allocation((eth,), ((10**18, version),)))
    return ChannelUpdate(state, 0, b"\x5a" * 65)


async def next_within(sub: Subscription, seconds: float = 1.0) -> Envelope | None:
    return await asyncio.wait_for(sub.next(), seconds)


def test_local_bus_is_a_bus_named_local() -> None:
    assert issubclass(LocalBus, Bus)
    assert LocalBus.name == "local"


@pytest.mark.parametrize("encode", [True, False])
async def test_alice_streams_updates_to_bob_in_order(encode: bool) -> None:
    bus = LocalBus(encode=encode)
    bob_sub = bus.subscribe(BOB)
    sent = [Envelope(ALICE, BOB, update(v)) for v in range(1, 201)]
    for env in sent:
        await bus.publish(env)
    got = [await next_within(bob_sub) for _ in sent]
    assert got == sent
    await bus.close()


async def test_encode_true_delivers_a_decoded_copy() -> None:
    bus = LocalBus()
    sub = bus.subscribe(BOB)
    env = Envelope(ALICE, BOB, update(3))
    await bus.publish(env)
    got = await next_within(sub)
    assert got == env and got is not env  # went through the codec
    fast = LocalBus(encode=False)
    fast_sub = fast.subscribe(BOB)
    await fast.publish(env)
    assert await next_within(fast_sub) is env


async def test_envelopes_reach_only_their_recipient() -> None:
    bus = LocalBus()
    bob_sub, carol_sub = bus.subscribe(BOB), bus.subscribe(CAROL)
    await bus.publish(Envelope(ALICE, CAROL, Ping(1)))
    await bus.publish(Envelope(ALICE, BOB, Ping(2)))
    assert await next_within(bob_sub) == Envelope(ALICE, BOB, Ping(2))
    assert await next_within(carol_sub) == Envelope(ALICE, CAROL, Ping(1))


async def test_publishing_to_an_unknown_recipient_fails() -> None:
    bus = LocalBus()
    bus.subscribe(ALICE)
    with pytest.raises(PeerDisconnectedError, match=BOB.hex()):
        await bus.publish(Envelope(ALICE, BOB, Ping(1)))


async def test_second_subscription_for_an_address_is_refused() -> None:
    bus = LocalBus()
    first = bus.subscribe(ALICE)
    with pytest.raises(ProtocolError, match="already subscribed"):
        bus.subscribe(ALICE)
    first.close()
    again = bus.subscribe(ALICE)  # a restarted client may subscribe again
    await bus.publish(Envelope(BOB, ALICE, Ping(7)))
    assert await next_within(again) == Envelope(BOB, ALICE, Ping(7))
    assert await first.next() is None


async def test_closing_a_subscription_disconnects_its_address() -> None:
    bus = LocalBus()
    sub = bus.subscribe(BOB)
    sub.close()
    with pytest.raises(PeerDisconnectedError):
        await bus.publish(Envelope(ALICE, BOB, Ping(1)))


async def test_close_wakes_pending_receivers_with_none() -> None:
    bus = LocalBus()
    bob_sub, carol_sub = bus.subscribe(BOB), bus.subscribe(CAROL)
    waiting = [asyncio.create_task(bob_sub.next()), asyncio.create_task(bob_sub.next())]
    carol_waiting = asyncio.create_task(carol_sub.next())
    await asyncio.sleep(0)
    await bus.close()
    assert await asyncio.wait_for(asyncio.gather(*waiting, carol_waiting), 1) == [None] * 3
    assert await bob_sub.next() is None  # and stays closed
    with pytest.raises(PeerDisconnectedError, match="closed"):
        await bus.publish(Envelope(ALICE, BOB, Ping(1)))
    with pytest.raises(ProtocolError, match="closed"):
        bus.subscribe(ALICE)


async def test_queued_envelopes_are_dropped_on_close() -> None:
    bus = LocalBus()
    sub = bus.subscribe(BOB)
    await bus.publish(Envelope(ALICE, BOB, Ping(1)))
    sub.close()
    assert await sub.next() is None


async def test_encode_true_enforces_the_maximum_size() -> None:
    bus = LocalBus(max_size=128)
    sub = bus.subscribe(BOB)
    with pytest.raises(FrameTooLargeError) as info:
        await bus.publish(Envelope(ALICE, BOB, Shutdown("x" * 200)))
    assert info.value.limit == 128
    await bus.publish(Envelope(ALICE, BOB, Shutdown("fits")))
    assert await next_within(sub) == Envelope(ALICE, BOB, Shutdown("fits"))  # nothing else queued


async def test_encode_true_refuses_messages_a_peer_would_refuse() -> None:
    bus = LocalBus()
    sub = bus.subscribe(BOB)
    with pytest.raises(MalformedMessageError, match="created_ns"):
        await bus.publish(Envelope(ALICE, BOB, Ping(-1)))
    fast = LocalBus(encode=False)  # objects pass as they are
    fast_sub = fast.subscribe(BOB)
    await fast.publish(Envelope(ALICE, BOB, Ping(-1)))
    assert await next_within(fast_sub) == Envelope(ALICE, BOB, Ping(-1))
    sub.close()


def test_max_size_must_be_within_the_frame_limit() -> None:
    with pytest.raises(ValueError, match="max_size"):
        LocalBus(max_size=0)
    with pytest.raises(ValueError, match="max_size"):
        LocalBus(max_size=(16 << 20) + 1)


# --- connection handlers --------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.peers: list[Address] = []
        self.event = asyncio.Event()

    async def __call__(self, peer: Address) -> None:
        self.peers.append(peer)
        self.event.set()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_connect_handlers_fire_for_both_ends() -> None:
    bus = LocalBus()
    alice_seen, bob_seen = Recorder(), Recorder()
    bus.on_connect(ALICE, alice_seen)
    bus.on_connect(BOB, bob_seen)
    bus.subscribe(ALICE)
    await settle()
    assert alice_seen.peers == []  # nobody to connect to yet
    bus.subscribe(BOB)
    await settle()
    assert alice_seen.peers == [BOB]
    assert bob_seen.peers == [ALICE]
    await bus.close()


async def test_handler_registered_late_sees_present_peers() -> None:
    bus = LocalBus()
    bus.subscribe(ALICE)
    bus.subscribe(BOB)
    bus.subscribe(CAROL)
    late = Recorder()
    bus.on_connect(ALICE, late)
    await settle()
    assert sorted(late.peers) == sorted([BOB, CAROL])
    unsubscribed = Recorder()
    bus.on_connect(Address(b"\xdd" * 20), unsubscribed)  # not subscribed: no connections yet
    await settle()
    assert unsubscribed.peers == []
    await bus.close()


async def test_resubscribing_is_a_reconnect() -> None:
    bus = LocalBus()
    alice_seen = Recorder()
    bus.on_connect(ALICE, alice_seen)
    bus.subscribe(ALICE)
    bob_sub = bus.subscribe(BOB)
    await settle()
    bob_sub.close()
    bus.subscribe(BOB)
    await settle()
    assert alice_seen.peers == [BOB, BOB]
    await bus.close()


async def test_failing_handler_is_logged_and_does_not_break_the_bus(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = LocalBus()

    async def broken(peer: Address) -> None:
        raise RuntimeError("handler bug")

    bus.on_connect(ALICE, broken)
    bus.subscribe(ALICE)
    bob_sub = bus.subscribe(BOB)
    await settle()
    assert "handler bug" in caplog.text
    await bus.publish(Envelope(ALICE, BOB, Ping(1)))
    assert await next_within(bob_sub) == Envelope(ALICE, BOB, Ping(1))
    await bus.close()


async def test_close_cancels_running_handlers() -> None:
    bus = LocalBus()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow(peer: Address) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    bus.on_connect(ALICE, slow)
    bus.subscribe(ALICE)
    bus.subscribe(BOB)
    await asyncio.wait_for(started.wait(), 1)
    await asyncio.wait_for(bus.close(), 1)
    assert cancelled.is_set()
