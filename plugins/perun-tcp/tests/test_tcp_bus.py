"""TcpBus specifics: endpoints, the authenticated handshake, reconnects, dial races, keepalive."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from perun_sim.crypto import verify_message
from perun_sim.wallet import SimAccount
from perun_tcp import CHALLENGE_LEN, Endpoint, EndpointError, TcpBus, frame, transcript
from perun_tcp.framing import read_frame
from perun_tcp.plugin import perun_register_buses
from tcp_helpers import (
    Impostor,
    closed_by_peer,
    identity,
    make_bus,
    open_raw,
    raw_authenticated,
    send_envelope,
)

from perun_core.channel.types import Address
from perun_core.errors import (
    AuthenticationError,
    MisroutedMessageError,
    PeerDisconnectedError,
    ProtocolError,
)
from perun_core.interfaces.bus import Subscription
from perun_core.registry import BusRegistry
from perun_core.testing.bus import assert_quiet, numbered, recv
from perun_core.testing.waiting import until
from perun_core.wire import codec
from perun_core.wire.messages import (
    WIRE_VERSION,
    AuthHello,
    AuthReply,
    Envelope,
    Ping,
    Pong,
    Shutdown,
)

# --- endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp://127.0.0.1:7001", Endpoint.tcp("127.0.0.1", 7001)),
        ("tcp://localhost:1", Endpoint.tcp("localhost", 1)),
        ("tcp://[::1]:65535", Endpoint.tcp("::1", 65535)),
        ("unix:///tmp/x.sock", Endpoint.unix("/tmp/x.sock")),
    ],
)
def test_endpoint_parse_and_format(text: str, expected: Endpoint) -> None:
    assert Endpoint.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1:7001",
        "udp://127.0.0.1:7001",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:x",
        "tcp://127.0.0.1:70000",
        "tcp://::1:7001",
        "tcp://[nothex]:7001",
        "tcp://:7001",
        "unix://",
    ],
)
def test_bad_endpoints_are_refused(text: str) -> None:
    with pytest.raises(EndpointError) as err:
        Endpoint.parse(text)
    assert "tcp://" in str(err.value)  # the message shows the accepted forms


def test_registered_through_the_bus_hook() -> None:
    registry = BusRegistry()
    perun_register_buses(registry=registry)
    assert registry.get("tcp") is TcpBus


# --- handshake ------------------------------------------------------------------------------


def test_transcript_layout(alice: SimAccount, bob: SimAccount) -> None:
    cd, cl = b"\x11" * CHALLENGE_LEN, b"\x22" * CHALLENGE_LEN
    t = transcript("listener", alice.address, bob.address, cd, cl)
    assert t == (
        b"perun-py/auth/v1listener"
        + b"\x00\x14"
        + alice.address.raw
        + b"\x00\x14"
        + bob.address.raw
        + cd
        + cl
    )
    # Roles, ends and challenges all change the signed bytes (no reuse across them).
    assert t != transcript("dialer", alice.address, bob.address, cd, cl)
    assert t != transcript("listener", bob.address, alice.address, cd, cl)
    assert t != transcript("listener", alice.address, bob.address, cl, cd)


async def test_challenges_are_fresh_per_handshake(
    buses: tuple[TcpBus, TcpBus], alice: SimAccount, bob: SimAccount
) -> None:
    _, b = buses
    replies = []
    for _ in range(2):
        reader, writer = await open_raw(str(b.endpoints[0]))
        writer.write(frame(codec.encode(AuthHello(1, alice.address, bob.address, b"\x00" * 32))))
        replies.append(codec.decode(await read_frame(reader, 1 << 16)))
        writer.close()
    assert all(isinstance(r, AuthReply) for r in replies)
    assert replies[0].challenge != replies[1].challenge  # type: ignore[attr-defined]


async def test_authenticated_connection_carries_envelopes(
    buses: tuple[TcpBus, TcpBus], alice: SimAccount, bob: SimAccount
) -> None:
    a, b = buses
    sub_b = b.subscribe(bob.address)
    await a.publish(numbered(alice.address, bob.address, 1))
    assert await recv(sub_b) == numbered(alice.address, bob.address, 1)
    assert a.connected_peers == (bob.address,)
    await until(lambda: b.connected_peers == (alice.address,))
    assert a.connection_count(bob.address) == b.connection_count(alice.address) == 1


async def test_impersonating_dialer_is_refused(
    buses: tuple[TcpBus, TcpBus],
    alice: SimAccount,
    bob: SimAccount,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Mallory claims Alice's address; Bob refuses, and the real Alice is unaffected."""
    a, b = buses
    sub_b = b.subscribe(bob.address)
    await a.publish(numbered(alice.address, bob.address, 1))
    assert await recv(sub_b) == numbered(alice.address, bob.address, 1)

    caplog.set_level(logging.WARNING, logger="perun_tcp")
    mallory = Impostor(alice.address, identity("mallory"))
    reader, writer = await open_raw(str(b.endpoints[0]))
    from perun_tcp import handshake

    with pytest.raises(AuthenticationError, match="refused the handshake: authentication failed"):
        await handshake.dial(reader, writer, mallory, verify_message, bob.address, 2.0)
    assert await closed_by_peer(reader, writer) == b""
    assert any(
        "AuthenticationError" in r.getMessage() and "does not verify" in r.getMessage()
        for r in caplog.records
    )
    # Nothing from the impostor arrived, and Alice's connection still carries envelopes.
    await assert_quiet(sub_b)
    await a.publish(numbered(alice.address, bob.address, 2))
    assert await recv(sub_b) == numbered(alice.address, bob.address, 2)
    assert b.connection_count(alice.address) == 1


async def test_impostor_bus_cannot_deliver(
    buses: tuple[TcpBus, TcpBus], alice: SimAccount, bob: SimAccount
) -> None:
    """A whole bus with a forged identity: its envelopes never reach Bob's subscriber."""
    _, b = buses
    sub_b = b.subscribe(bob.address)
    fake = make_bus(Impostor(alice.address, identity("mallory")))
    fake.add_peer(bob.address, b.endpoints[0])
    try:
        with pytest.raises(AuthenticationError, match="authentication failed"):
            await fake.publish(numbered(alice.address, bob.address, 1))
        await assert_quiet(sub_b)
        assert b.connection_count(alice.address) == 0
    finally:
        await fake.close()


async def test_dialer_reaching_someone_else_is_refused(
    alice: SimAccount, bob: SimAccount, sock_dir: Path
) -> None:
    """Alice dials "Bob" at an endpoint that Carol serves: the handshake fails."""
    a, carol = make_bus(alice), make_bus(identity("carol"))
    try:
        ep = await carol.listen_unix(sock_dir / "carol.sock")
        a.add_peer(bob.address, ep)
        with pytest.raises(AuthenticationError, match="refused the handshake: wrong recipient"):
            await a.publish(numbered(alice.address, bob.address, 1))
    finally:
        await a.close()
        await carol.close()


async def test_listener_impersonating_the_peer_is_refused(
    alice: SimAccount, bob: SimAccount
) -> None:
    """An endpoint that claims to be Bob but cannot sign as Bob."""
    a, fake_bob = make_bus(alice), make_bus(Impostor(bob.address, identity("mallory")))
    try:
        a.add_peer(bob.address, await fake_bob.listen())
        with pytest.raises(AuthenticationError, match="does not verify"):
            await a.publish(numbered(alice.address, bob.address, 1))
        assert a.connected_peers == ()
    finally:
        await a.close()
        await fake_bob.close()


async def test_unauthenticated_frames_are_refused(
    buses: tuple[TcpBus, TcpBus], alice: SimAccount, bob: SimAccount
) -> None:
    """An envelope before the handshake closes the connection and is never delivered."""
    _, b = buses
    sub_b = b.subscribe(bob.address)
    reader, writer = await open_raw(str(b.endpoints[0]))
    send_envelope(writer, numbered(alice.address, bob.address, 1))
    await closed_by_peer(reader, writer)
    await assert_quiet(sub_b)


async def test_handshake_timeout_closes_a_silent_dialer(alice: SimAccount) -> None:
    b = make_bus(alice, handshake_timeout=0.2)
    try:
        reader, writer = await open_raw(str(await b.listen()))
        t0 = time.monotonic()
        assert await closed_by_peer(reader, writer, timeout=3) == b""
        assert 0.15 < time.monotonic() - t0 < 2.5
    finally:
        await b.close()


async def test_unsupported_wire_version_gets_a_shutdown(
    buses: tuple[TcpBus, TcpBus], alice: SimAccount, bob: SimAccount
) -> None:
    _, b = buses
    reader, writer = await open_raw(str(b.endpoints[0]))
    hello = AuthHello(WIRE_VERSION + 1, alice.address, bob.address, b"\x05" * 32)
    writer.write(frame(codec.encode(hello)))
    reply = codec.decode(await read_frame(reader, 1 << 16))
    assert isinstance(reply, Shutdown) and "wire version" in reply.reason
    assert await closed_by_peer(reader, writer) == b""


async def test_misrouted_envelope_is_dropped_and_connection_kept(
    buses: tuple[TcpBus, TcpBus],
    alice: SimAccount,
    bob: SimAccount,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Carol (authenticated) sends an envelope claiming to be from Alice: dropped, logged."""
    _, b = buses
    sub_b = b.subscribe(bob.address)
    carol = identity("carol")
    caplog.set_level(logging.WARNING, logger="perun_tcp")
    _, writer = await raw_authenticated(str(b.endpoints[0]), carol, bob.address)
    send_envelope(writer, numbered(alice.address, bob.address, 1))
    send_envelope(writer, numbered(carol.address, alice.address, 2))
    send_envelope(writer, numbered(carol.address, bob.address, 3))
    assert await recv(sub_b) == numbered(carol.address, bob.address, 3)
    await assert_quiet(sub_b)
    misrouted = [r for r in caplog.records if "MisroutedMessageError" in r.getMessage()]
    assert len(misrouted) == 2
    assert b.connection_count(carol.address) == 1  # dropped envelopes, kept the connection
    writer.close()


async def test_ping_is_answered_with_pong(buses: tuple[TcpBus, TcpBus], bob: SimAccount) -> None:
    _, b = buses
    sub_b = b.subscribe(bob.address)
    carol = identity("carol")
    reader, writer = await raw_authenticated(str(b.endpoints[0]), carol, bob.address)
    send_envelope(writer, Envelope(carol.address, bob.address, Ping(12345)))
    env = codec.decode_envelope(await read_frame(reader, 1 << 16))
    assert env.sender == bob.address and env.recipient == carol.address
    assert isinstance(env.msg, Pong) and env.msg.ping_created_ns == 12345
    await assert_quiet(sub_b)  # control messages are not delivered
    writer.close()


# --- lifecycle ------------------------------------------------------------------------------


async def test_unreachable_endpoint_fails_after_bounded_retries(alice: SimAccount) -> None:
    probe = make_bus(identity("probe"))
    ep = await probe.listen()
    await probe.close()  # nothing listens there any more
    a = make_bus(alice, dial_attempts=3, backoff_initial=0.05, backoff_max=0.1)
    ghost = Address(b"\x99" * 20)
    a.add_peer(ghost, ep)
    try:
        t0 = time.monotonic()
        with pytest.raises(PeerDisconnectedError) as err:
            await a.publish(numbered(alice.address, ghost, 1))
        elapsed = time.monotonic() - t0
        assert str(ep) in str(err.value) and "3 attempts" in str(err.value)
        assert 0.14 <= elapsed < 3  # two back-off sleeps (0.05 + 0.1), then it gives up
    finally:
        await a.close()


async def test_no_endpoint_is_a_clear_error(alice: SimAccount) -> None:
    a = make_bus(alice)
    try:
        with pytest.raises(PeerDisconnectedError, match="add_peer"):
            await a.publish(numbered(alice.address, Address(b"\x42" * 20), 1))
    finally:
        await a.close()


async def test_bus_serves_only_its_identity(alice: SimAccount, bob: SimAccount) -> None:
    a = make_bus(alice)
    try:
        with pytest.raises(ProtocolError):
            a.subscribe(bob.address)
        with pytest.raises(MisroutedMessageError):
            await a.publish(numbered(bob.address, alice.address, 1))
    finally:
        await a.close()


async def test_graceful_close_tells_the_peer(
    buses: tuple[TcpBus, TcpBus], alice: SimAccount, bob: SimAccount
) -> None:
    a, b = buses
    sub_b = b.subscribe(bob.address)
    await a.publish(numbered(alice.address, bob.address, 1))
    await recv(sub_b)
    await b.close()
    # close() returns once Alice has processed the Shutdown: no stale connection is left.
    assert a.connected_peers == () and a.connection_count(bob.address) == 0


async def test_peer_restart_reconnects_and_fires_on_connect(
    alice: SimAccount, bob: SimAccount
) -> None:
    a, b = make_bus(alice), make_bus(bob)
    connects: asyncio.Queue[Address] = asyncio.Queue()

    async def on_connect(peer: Address) -> None:
        connects.put_nowait(peer)

    a.on_connect(alice.address, on_connect)
    ep = await b.listen("127.0.0.1", 0)
    a.add_peer(bob.address, ep)
    sub_b = b.subscribe(bob.address)
    try:
        for i in range(10):
            await a.publish(numbered(alice.address, bob.address, i))
        for i in range(10):
            assert await recv(sub_b) == numbered(alice.address, bob.address, i)
        assert await asyncio.wait_for(connects.get(), 5) == bob.address
        await b.close()
        # Bob is down: publishing fails after the bounded retries.
        with pytest.raises(PeerDisconnectedError):
            await a.publish(numbered(alice.address, bob.address, 99))
        # Bob restarts on the same port with the same identity.
        b = make_bus(bob)
        await b.listen("127.0.0.1", ep.port)
        sub_b = b.subscribe(bob.address)
        for i in range(10, 20):
            await a.publish(numbered(alice.address, bob.address, i))
        for i in range(10, 20):
            assert await recv(sub_b) == numbered(alice.address, bob.address, i)
        assert await asyncio.wait_for(connects.get(), 5) == bob.address
    finally:
        await a.close()
        await b.close()


async def test_peer_dialing_back_needs_no_address_book(alice: SimAccount, bob: SimAccount) -> None:
    """Bob never learned Alice's endpoint but answers over the connection she opened."""
    a, b = make_bus(alice), make_bus(bob)
    try:
        a.add_peer(bob.address, await b.listen())
        sub_a, sub_b = a.subscribe(alice.address), b.subscribe(bob.address)
        await a.publish(numbered(alice.address, bob.address, 1))
        await recv(sub_b)
        await b.publish(numbered(bob.address, alice.address, 2))
        assert await recv(sub_a) == numbered(bob.address, alice.address, 2)
    finally:
        await a.close()
        await b.close()


async def _send_n(bus: TcpBus, frm: Address, to: Address, n: int) -> None:
    for i in range(n):
        await bus.publish(numbered(frm, to, i))


async def _take_n(sub: Subscription, frm: Address, to: Address, n: int) -> None:
    for i in range(n):
        assert await recv(sub) == numbered(frm, to, i)


async def _one_dial_race(alice: SimAccount, bob: SimAccount, n: int) -> None:
    a, b = make_bus(alice), make_bus(bob)
    try:
        ep_a, ep_b = await a.listen(), await b.listen()
        a.add_peer(bob.address, ep_b)
        b.add_peer(alice.address, ep_a)
        sub_a, sub_b = a.subscribe(alice.address), b.subscribe(bob.address)
        await asyncio.gather(
            _send_n(a, alice.address, bob.address, n),
            _send_n(b, bob.address, alice.address, n),
            _take_n(sub_b, alice.address, bob.address, n),
            _take_n(sub_a, bob.address, alice.address, n),
        )
        await until(
            lambda: a.connection_count(bob.address) == 1 and b.connection_count(alice.address) == 1
        )
        survivor_a = next(c for c in a._all if not c.closed)
        survivor_b = next(c for c in b._all if not c.closed)
        assert survivor_a.dialer == survivor_b.dialer
        if a._seq == b._seq == 2:  # both dialed: the lower address's connection won
            assert survivor_a.dialer == min(alice.address, bob.address, key=lambda x: x.raw)
    finally:
        await a.close()
        await b.close()


async def test_simultaneous_dial_keeps_one_connection_and_order(
    alice: SimAccount, bob: SimAccount
) -> None:
    """Both sides dial at once, repeatedly: every envelope arrives, in order, and one
    connection per pair survives (the one dialed by the lower address)."""
    for _ in range(5):
        await _one_dial_race(alice, bob, 200)


async def test_keepalive_pings_idle_connections_and_drops_silent_ones(
    alice: SimAccount, bob: SimAccount
) -> None:
    a, b = make_bus(alice, idle_interval=0.05), make_bus(bob, idle_interval=0.05)
    try:
        a.add_peer(bob.address, await b.listen())
        sub_b = b.subscribe(bob.address)
        await a.publish(numbered(alice.address, bob.address, 1))
        await recv(sub_b)
        await asyncio.sleep(0.5)  # ten idle intervals: pings keep the connection up
        assert a.connected_peers == (bob.address,)
        assert b.connected_peers == (alice.address,)
        # A peer that authenticates and then says nothing (no pongs) is dropped.
        carol = identity("carol")
        _, writer = await raw_authenticated(str(b.endpoints[0]), carol, bob.address)
        await until(lambda: carol.address in b.connected_peers)
        await until(lambda: b.connection_count(carol.address) == 0, timeout=3)
        writer.close()
    finally:
        await a.close()
        await b.close()


async def test_many_envelopes_in_flight_before_subscribing_are_kept(
    buses: tuple[TcpBus, TcpBus], alice: SimAccount, bob: SimAccount
) -> None:
    a, b = buses
    for i in range(50):
        await a.publish(numbered(alice.address, bob.address, i))
    await until(lambda: len(b._backlog) == 50)
    sub_b = b.subscribe(bob.address)
    for i in range(50):
        assert await recv(sub_b) == numbered(alice.address, bob.address, i)


async def test_half_open_connection_is_replaced_by_the_peers_new_one(
    alice: SimAccount, bob: SimAccount
) -> None:
    """Bob loses the connection Alice dialed without Alice noticing (half-open). When Bob
    dials again, Alice switches to the new connection even though her own dial would win a
    simultaneous-dial tie-break, so her answers reach Bob."""
    assert alice.address.raw < bob.address.raw  # Alice's dial is the "lower" one
    opts = {"handshake_timeout": 0.1, "drain_timeout": 0.3}
    a, b = make_bus(alice, **opts), make_bus(bob, **opts)
    try:
        ep_a, ep_b = await a.listen(), await b.listen()
        a.add_peer(bob.address, ep_b)
        b.add_peer(alice.address, ep_a)
        sub_a, sub_b = a.subscribe(alice.address), b.subscribe(bob.address)
        await a.publish(numbered(alice.address, bob.address, 1))
        assert await recv(sub_b) == numbered(alice.address, bob.address, 1)
        # Bob forgets the connection without closing the socket: Alice sees nothing.
        (old,) = [c for c in b._all if not c.closed]
        old.closed = True  # so its reader's cleanup neither says goodbye nor closes the socket
        for t in old.tasks:
            t.cancel()
        b._all.discard(old)
        b.forget(old)
        await asyncio.sleep(0.3)  # past the race window of two handshake timeouts
        await b.publish(numbered(bob.address, alice.address, 2))
        assert await recv(sub_a) == numbered(bob.address, alice.address, 2)
        await a.publish(numbered(alice.address, bob.address, 3))
        assert await recv(sub_b) == numbered(alice.address, bob.address, 3)
        assert a.connection_count(bob.address) == 1
        old.writer.close()
    finally:
        await a.close()
        await b.close()
