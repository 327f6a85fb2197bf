"""A served sim ledger against clients that misbehave: nobody acts for another account, and
no request stops the server from answering everyone else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from perun_sim import (
    ClockRangeError,
    LedgerAuthError,
    RemoteLedger,
    SimAccount,
    SimLedger,
    WithdrawalAuth,
)
from perun_sim.rpc import CALL, ERROR, MAX_LEDGER_TIME, RESULT, frame, login_transcript, parse_url
from perun_sim.server import LedgerServer
from sim_helpers import START, Chan, D

from perun_core.channel import Asset


@pytest.fixture
async def served(ledger: SimLedger) -> AsyncIterator[LedgerServer]:
    async with LedgerServer(ledger) as server:
        await server.listen_tcp()
        yield server


@pytest.fixture
async def clients(served: LedgerServer) -> AsyncIterator[list[RemoteLedger]]:
    made = [RemoteLedger(served.urls[0]) for _ in range(3)]
    yield made
    for r in made:
        await r.close()


class Raw:
    """A bare connection speaking the protocol by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Raw:
        _, host, port = parse_url(url)
        return cls(*await asyncio.open_connection(host, port))

    def send(self, payload: bytes) -> None:
        self.writer.write(frame(payload))

    async def answer(self) -> list[object]:
        size = int.from_bytes(await asyncio.wait_for(self.reader.readexactly(4), 5), "big")
        answer: list[object] = msgspec.msgpack.decode(await self.reader.readexactly(size))
        return answer

    async def call(self, call_id: int, method: str, args: list[object]) -> list[object]:
        self.send(msgspec.msgpack.encode([CALL, call_id, method, args]))
        return await self.answer()

    def close(self) -> None:
        self.writer.close()


def _nested(depth: int) -> bytes:
    """A msgpack value of ``depth`` arrays, each holding the next (3 bytes per level)."""
    return b"\x91" * depth + b"\x90"


# --- time ----------------------------------------------------------------------------------------


async def test_time_beyond_the_range_is_refused_and_every_client_is_still_answered(
    served: LedgerServer, clients: list[RemoteLedger]
) -> None:
    mallory, alice, bob = clients
    for step in (2**64, 2**400, MAX_LEDGER_TIME):
        with pytest.raises(ClockRangeError, match="past"):
            await asyncio.wait_for(mallory.advance(step), 5)
    assert await asyncio.wait_for(alice.now(), 5) == START  # nothing moved
    assert await asyncio.wait_for(bob.now(), 5) == START
    with pytest.raises(ValueError, match="backwards"):
        await mallory.advance(-1)
    # Up to the end of the range is fine, and the time is still answered there.
    assert await alice.advance(MAX_LEDGER_TIME - START) == MAX_LEDGER_TIME
    assert await bob.now() == MAX_LEDGER_TIME == served.ledger.clock.now()
    with pytest.raises(ClockRangeError):
        await mallory.advance(1)
    # Waiting for a time the ledger never reaches waits (until cancelled), it is no error.
    waiter = asyncio.create_task(mallory.sleep_until(2**300))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    waiter.cancel()
    assert await asyncio.wait_for(mallory.now(), 5) == MAX_LEDGER_TIME


# --- deep nesting --------------------------------------------------------------------------------


async def test_a_nesting_bomb_gets_an_error_answer_and_the_server_keeps_answering(
    served: LedgerServer, clients: list[RemoteLedger]
) -> None:
    alice = clients[0]
    raw = await Raw.open(served.urls[0])
    try:
        for depth in (10_000, 200_000):
            # A call whose arguments are nested far deeper than any value of the protocol.
            bomb = b"\x94" + msgspec.msgpack.encode(CALL) + msgspec.msgpack.encode(7)
            bomb += msgspec.msgpack.encode("deposit") + _nested(depth)
            raw.send(bomb)
            kind, call_id, err = await raw.answer()
            assert (kind, call_id) == (ERROR, 7)
            assert isinstance(err, list) and err[0] == "malformed" and "nested" in err[1]
            # The same connection is still served, and so is everybody else.
            assert await raw.call(8, "now", []) == [RESULT, 8, START]
            assert await asyncio.wait_for(alice.now(), 5) == START
        # Nested inside an argument that decodes otherwise (found while decoding it).
        ans = await raw.call(9, "tx_count", [msgspec.Raw(_nested(5000))])
        assert ans[:2] == [ERROR, 9] and ans[2][0] == "malformed"  # type: ignore[index]
        # A bomb that is not even a call: that connection is dropped, nobody else notices.
        raw.send(_nested(200_000))
        assert await asyncio.wait_for(raw.reader.read(), 5) == b""
    finally:
        raw.close()
    assert await asyncio.wait_for(alice.now(), 5) == START
    assert served.connections == 1


# --- acting for another account ------------------------------------------------------------------


async def test_only_a_connection_logged_in_as_an_account_moves_its_funds(
    served: LedgerServer, chan: Chan, eth: Asset, ledger: SimLedger
) -> None:
    alice, bob = chan.accounts
    mallory = SimAccount.from_seed(b"mallory")
    ledger.mint(alice.address, eth, 100)
    fid_a = chan.backend.funding_id(chan.id, alice.address)
    fid_m = chan.backend.funding_id(chan.id, mallory.address)
    thief = RemoteLedger(served.urls[0])
    thief.add_account(mallory)
    honest = RemoteLedger(served.urls[0])
    honest.add_account(alice)
    try:
        # Deposits from Alice's balance into Mallory's funding ID: refused, nothing moves.
        with pytest.raises(LedgerAuthError, match="not proven control") as ei:
            await thief.deposit(alice.address, eth, fid_m, 100)
        assert ei.value.operation == "deposit"
        assert ledger.balance_of(alice.address, eth) == 100
        assert ledger.holdings(eth, fid_m) == 0
        # Logging in as Alice takes Alice's key: Mallory's signature, or Alice's signature
        # from another connection (it signs that connection's challenge), is refused.
        raw = await Raw.open(served.urls[0])
        try:
            hello = await raw.call(1, "hello", [2])
            challenge = hello[2][4]  # type: ignore[index]
            text = login_transcript(ledger.ledger_id, challenge, alice.address)
            for call_id, sig in (
                (2, mallory.sign(text)),
                (3, alice.sign(login_transcript(ledger.ledger_id, b"\x00" * 32, alice.address))),
                (4, b"\x01" * 65),
            ):
                ans = await raw.call(call_id, "login", [alice.address.raw, sig])
                assert ans[:2] == [ERROR, call_id] and ans[2][0] == "auth"  # type: ignore[index]
            ans = await raw.call(
                5, "deposit", [alice.address.raw, [eth.ledger_id, eth.holder], fid_m, 1]
            )
            assert ans[2][0] == "auth"  # type: ignore[index]
        finally:
            raw.close()
        assert ledger.balance_of(alice.address, eth) == 100

        # Alice's own client deposits; after the channel settles, only she withdraws hers.
        await honest.deposit(alice.address, eth, fid_a, 60)
        assert ledger.holdings(eth, fid_a) == 60
        await honest.register(chan.signed(chan.state(1, [[60, 0]])))
        await honest.advance(D)
        await honest.conclude(chan.params, chan.state(1, [[60, 0]]))
        auth = WithdrawalAuth(chan.id, alice.address, alice.address, 60, eth)
        with pytest.raises(LedgerAuthError, match="withdraw"):
            await thief.withdraw(auth, alice.sign(auth.encode()))  # a replayed authorization
        assert ledger.holdings(eth, fid_a) == 60
        await honest.withdraw(auth, alice.sign(auth.encode()))
        assert ledger.balance_of(alice.address, eth) == 100

        # A reconnected client logs in again by itself.
        await honest.close()
        honest = RemoteLedger(served.urls[0])
        honest.add_account(alice)
        await honest.deposit(alice.address, eth, fid_a, 1)
        assert ledger.balance_of(alice.address, eth) == 99
        # Bob was never given to it: refused, with the way out in the message.
        ledger.mint(bob.address, eth, 5)
        with pytest.raises(LedgerAuthError, match="add_account"):
            await honest.deposit(bob.address, eth, fid_a, 5)
    finally:
        await thief.close()
        await honest.close()
