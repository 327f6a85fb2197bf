"""Bad input: garbage, oversize and malformed frames drop only their own connection.

Each test keeps a live Alice -> Bob connection and checks after the attack that it still
delivers, in order, and that nothing from the attacker reached Bob's subscriber.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from perun_sim.wallet import SimAccount
from perun_tcp import TcpBus, frame
from perun_tcp.handshake import HANDSHAKE_MAX_FRAME
from tcp_helpers import closed_by_peer, identity, open_raw, raw_authenticated

from perun_core.errors import MalformedMessageError
from perun_core.interfaces.bus import Subscription
from perun_core.testing.bus import assert_quiet, numbered, recv
from perun_core.testing.waiting import until
from perun_core.wire.codec import decode_envelope

_FIXTURES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


async def _still_works(a: TcpBus, sub_b: Subscription, alice: SimAccount, bob: SimAccount) -> None:
    """Alice's existing connection to Bob carries envelopes, and it is still the same one."""
    before = a.connection_count(bob.address)
    await a.publish(numbered(alice.address, bob.address, 1))
    await a.publish(numbered(alice.address, bob.address, 2))
    assert await recv(sub_b) == numbered(alice.address, bob.address, 1)
    assert await recv(sub_b) == numbered(alice.address, bob.address, 2)
    assert before == a.connection_count(bob.address) == 1


async def _connected(
    buses: tuple[TcpBus, TcpBus], alice: SimAccount, bob: SimAccount
) -> Subscription:
    a, b = buses
    sub_b = b.subscribe(bob.address)
    await a.publish(numbered(alice.address, bob.address, 0))
    assert await recv(sub_b) == numbered(alice.address, bob.address, 0)
    return sub_b


@_FIXTURES
@given(
    junk=st.one_of(
        st.binary(min_size=1, max_size=300),  # raw bytes: often a bogus length header
        st.binary(min_size=1, max_size=300).map(frame),  # well framed, bogus payload
    )
)
async def test_garbage_before_the_handshake_is_refused(
    buses: tuple[TcpBus, TcpBus], alice: SimAccount, bob: SimAccount, junk: bytes
) -> None:
    a, b = buses
    if b._sub is None:
        await _connected(buses, alice, bob)
    assert b._sub is not None
    reader, writer = await open_raw(str(b.endpoints[0]))
    writer.write(junk)
    writer.write_eof()  # so a short fragment ends instead of waiting for the handshake timeout
    await closed_by_peer(reader, writer)
    writer.close()
    await assert_quiet(b._sub, 0.01)
    await _still_works(a, b._sub, alice, bob)


@_FIXTURES
@given(payload=st.binary(min_size=1, max_size=2000))
async def test_garbage_after_the_handshake_drops_only_that_connection(
    buses: tuple[TcpBus, TcpBus], alice: SimAccount, bob: SimAccount, payload: bytes
) -> None:
    try:
        env = decode_envelope(payload)
    except MalformedMessageError:
        env = None
    assume(env is None)  # a payload that happens to be a valid envelope is not garbage
    a, b = buses
    if b._sub is None:
        await _connected(buses, alice, bob)
    assert b._sub is not None
    carol = identity("carol")
    reader, writer = await raw_authenticated(str(b.endpoints[0]), carol, bob.address)
    writer.write(frame(payload))
    await closed_by_peer(reader, writer)
    writer.close()
    await until(lambda: b.connection_count(carol.address) == 0)
    await assert_quiet(b._sub, 0.01)
    await _still_works(a, b._sub, alice, bob)


async def test_malformed_frame_is_logged_with_its_error(
    buses: tuple[TcpBus, TcpBus],
    alice: SimAccount,
    bob: SimAccount,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = buses
    sub_b = await _connected(buses, alice, bob)
    caplog.set_level(logging.WARNING, logger="perun_tcp")
    carol = identity("carol")
    reader, writer = await raw_authenticated(str(b.endpoints[0]), carol, bob.address)
    writer.write(frame(b"\x01\x93\xc4\x01\x00"))  # version byte, then a truncated array
    await closed_by_peer(reader, writer)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "MalformedMessageError" in text and carol.address.short() in text
    await _still_works(a, sub_b, alice, bob)


@pytest.mark.parametrize("authenticated", [False, True])
async def test_oversize_frame_is_refused_before_it_is_read(
    buses: tuple[TcpBus, TcpBus],
    alice: SimAccount,
    bob: SimAccount,
    caplog: pytest.LogCaptureFixture,
    authenticated: bool,
) -> None:
    """Only the 4-byte header is sent: Bob closes at once instead of waiting for the body."""
    a, b = buses
    sub_b = await _connected(buses, alice, bob)
    caplog.set_level(logging.WARNING, logger="perun_tcp")
    if authenticated:
        reader, writer = await raw_authenticated(
            str(b.endpoints[0]), identity("carol"), bob.address
        )
        size = b.max_frame_size + 1
    else:
        reader, writer = await open_raw(str(b.endpoints[0]))
        size = HANDSHAKE_MAX_FRAME + 1
    writer.write(size.to_bytes(4, "big"))
    await writer.drain()
    await closed_by_peer(reader, writer, timeout=1.0)  # well below the handshake timeout
    assert any("FrameTooLargeError" in r.getMessage() for r in caplog.records)
    await _still_works(a, sub_b, alice, bob)


async def test_abrupt_disconnect_mid_frame_harms_nobody(
    buses: tuple[TcpBus, TcpBus], alice: SimAccount, bob: SimAccount
) -> None:
    a, b = buses
    sub_b = await _connected(buses, alice, bob)
    carol = identity("carol")
    _, writer = await raw_authenticated(str(b.endpoints[0]), carol, bob.address)
    writer.write((1000).to_bytes(4, "big") + b"\x01" * 10)  # a frame cut short
    writer.transport.abort()
    await until(lambda: b.connection_count(carol.address) == 0)
    await _still_works(a, sub_b, alice, bob)


async def test_a_flood_of_bad_connections_in_parallel(
    buses: tuple[TcpBus, TcpBus], alice: SimAccount, bob: SimAccount
) -> None:
    """Many attackers at once while Alice keeps sending: every envelope of hers arrives."""
    a, b = buses
    sub_b = await _connected(buses, alice, bob)

    async def attacker(i: int) -> None:
        reader, writer = await open_raw(str(b.endpoints[0]))
        writer.write(bytes([i % 256]) * (i * 7 % 50 + 1))
        writer.write_eof()
        await closed_by_peer(reader, writer)
        writer.close()

    async def alice_sends() -> None:
        for i in range(1, 201):
            await a.publish(numbered(alice.address, bob.address, i))
            if i % 20 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(alice_sends(), *(attacker(i) for i in range(30)))
    for i in range(1, 201):
        assert await recv(sub_b) == numbered(alice.address, bob.address, i)
    await assert_quiet(sub_b)
