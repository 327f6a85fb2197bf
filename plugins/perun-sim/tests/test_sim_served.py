"""The served sim ledger: one ledger in one place, clients connected over loopback.

The same transactions give the same outcomes and reason strings on a local and a served
ledger; events are pushed; time is the server's; bad frames drop only their connection; the
dispute suite passes with every client on the served ledger.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from perun_sim import (
    LedgerAPI,
    LedgerConnectionError,
    LedgerURLError,
    LocalLedger,
    RemoteLedger,
    SimBackend,
    SimClock,
    SimLedger,
    WithdrawalAuth,
)
from perun_sim.rpc import CALL, frame, parse_url
from perun_sim.server import LedgerServer
from sim_helpers import START, Chan, D

from perun_core.channel import Asset, SignedState
from perun_core.errors import (
    ChainError,
    MalformedMessageError,
    MissingSubStatesError,
    NotSupportedError,
    ProtocolError,
    StateMismatchError,
)
from perun_core.interfaces import ConcludedEvent, RegisteredEvent
from perun_core.testing.dispute import DisputeConformance
from perun_core.testing.parties import PartyFactory
from perun_core.wire.local_bus import LocalBus


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for Unix sockets (their paths are limited to ~100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="perun-sim-") as d:
        yield Path(d)


@pytest.fixture
async def served(ledger: SimLedger) -> AsyncIterator[LedgerServer]:
    """The fixture ledger (manual clock at START) served on loopback TCP."""
    async with LedgerServer(ledger) as server:
        await server.listen_tcp()
        yield server


@pytest.fixture
async def remote(served: LedgerServer) -> AsyncIterator[RemoteLedger]:
    r = RemoteLedger(served.urls[0])
    yield r
    await r.close()


async def _outcome(op: Awaitable[object], types: bool = False) -> str:
    """What ``op`` gave: "ok", the refusal's reason, or (``types``) the refusal's type."""
    try:
        await op
    except MissingSubStatesError:
        return "missing sub-states"
    except ChainError as e:
        return type(e).__name__ if types else e.reason
    except ValueError as e:
        return f"ValueError: {e}"
    return "ok"


async def _o(types: bool, op: Awaitable[object]) -> str:
    return await _outcome(op, types)


async def _script(api: LedgerAPI, chan: Chan, eth: Asset, types: bool = False) -> list[str]:
    """A dispute with every kind of refusal on the way; returns each step's outcome (its
    reason, or with ``types`` its error type)."""
    alice, bob = chan.accounts
    for acc in chan.accounts:
        api.add_account(acc)  # a served ledger: deposits and withdrawals need the keys
    fid_a = chan.backend.funding_id(chan.id, alice.address)
    fid_b = chan.backend.funding_id(chan.id, bob.address)
    v1, v2, v3 = chan.state(1, [[6, 4]]), chan.state(2, [[5, 5]]), chan.state(3, [[2, 8]])
    a_sig, b_sig = chan.sign(v2)
    out = [
        await _o(types, api.mint(alice.address, eth, -1)),
        await _o(types, api.mint(alice.address, eth, 10)),
        await _o(types, api.mint(bob.address, eth, 10)),
        await _o(types, api.deposit(alice.address, eth, fid_a, 11)),
        await _o(types, api.deposit(alice.address, eth, fid_a, -5)),
        await _o(types, api.deposit(alice.address, eth, b"short", 1)),
        await _o(types, api.deposit(alice.address, Asset(7, b"ETH"), fid_a, 1)),
        await _o(types, api.deposit(alice.address, eth, fid_a, 5)),
        await _o(types, api.deposit(bob.address, eth, fid_b, 5)),
        await _o(types, api.conclude(chan.params, v2)),
        await _o(types, api.register(SignedState(chan.params, v2, (a_sig,)))),
        await _o(types, api.register(SignedState(chan.params, v2, (b_sig, a_sig)))),
        await _o(types, api.register(SignedState(chan.params, v2, (a_sig, b_sig[:64])))),
        # a state no client can sign (negative balance), with valid signatures of another
        await _o(
            types, api.register(SignedState(chan.params, chan.state(2, [[-1, 11]]), chan.sign(v2)))
        ),
        await _o(types, api.register(chan.signed(v2))),
        await _o(types, api.register(chan.signed(v2))),  # the same state: a no-op
        await _o(types, api.register(chan.signed(v1))),
        await _o(types, api.conclude(chan.params, v2)),
        await _o(types, api.advance(D)),
        await _o(types, api.register(chan.signed(v3))),
        await _o(types, api.progress(chan.params, v2, v3, 0, chan.sign(v3)[0])),
        await _o(types, api.conclude(chan.params, v1)),
        await _o(types, api.conclude(chan.params, v2)),
        await _o(types, api.conclude(chan.params, v2)),
    ]
    for acc, amount in ((alice, 5), (bob, 5)):
        auth = WithdrawalAuth(chan.id, acc.address, acc.address, amount, eth)
        forged = WithdrawalAuth(chan.id, acc.address, alice.address, amount, eth)
        out.append(await _o(types, api.withdraw(forged, bob.sign(auth.encode()))))
        out.append(await _o(types, api.withdraw(auth, acc.sign(auth.encode()))))
        out.append(await _o(types, api.withdraw(auth, acc.sign(auth.encode()))))
    out.append(str(await api.balance_of(alice.address, eth)))
    out.append(str(await api.holdings(eth, fid_b)))
    out.append(str(await api.tx_count()))
    d = await api.dispute(chan.id)
    out.append(f"{d.phase.name} v{d.version} t{d.timeout - START}" if d else "none")
    return out


async def test_local_and_served_ledgers_give_the_same_outcomes(
    chan: Chan, eth: Asset, remote: RemoteLedger
) -> None:
    local = LocalLedger(SimLedger(clock=SimClock.manual(START)))
    here = await _script(local, chan, eth)
    there = await _script(remote, chan, eth)
    assert there == here
    # ...and they are the contract's reasons, not merely equal to each other
    assert here[0].startswith("ValueError")
    assert here[3:7] == [
        "insufficient balance",
        "invalid amount",
        "invalid funding id",
        "asset not on this ledger",
    ]
    assert here[9:14] == [
        "not registered",
        "signatures length mismatch",
        "invalid signature",
        "ECDSA: invalid signature length",
        here[13],
    ]
    assert here[13].startswith("invalid state")
    assert here[14:18] == ["ok", "ok", "invalid version", "timeout not passed yet"]
    assert here[19:24] == [
        "refutation timeout passed",
        "must have app",
        "invalid channel state",
        "ok",
        "channel already concluded",
    ]
    assert here[24:30] == [
        "signature verification failed",
        "ok",
        "insufficient funds",
        "signature verification failed",
        "ok",
        "insufficient funds",
    ]
    assert here[30:] == ["10", "0", "7", "CONCLUDED v2 t60"]


async def test_served_refusals_keep_their_error_types(
    chan: Chan, eth: Asset, remote: RemoteLedger
) -> None:
    local = LocalLedger(SimLedger(clock=SimClock.manual(START)))
    here = await _script(local, chan, eth, types=True)
    there = await _script(remote, chan, eth, types=True)
    assert there == here
    assert here[3:7] == [
        "InsufficientBalanceError",
        "InvalidLedgerInputError",
        "InvalidLedgerInputError",
        "InvalidLedgerInputError",
    ]
    assert here[9:14] == [
        "NotRegisteredError",
        "SignatureRefusedError",
        "SignatureRefusedError",
        "SignatureRefusedError",
        "InvalidLedgerInputError",
    ]
    assert here[16:18] == ["StaleStateError", "TimeoutNotElapsedError"]
    assert here[19:24] == [
        "RefutationClosedError",
        "ChannelKindError",
        "StateMismatchError",
        "ok",
        "AlreadyConcludedError",
    ]
    assert here[24:27] == ["SignatureRefusedError", "ok", "InsufficientHoldingsError"]


async def test_events_are_pushed_and_the_first_is_the_latest_past_one(
    ledger: SimLedger, chan: Chan, remote: RemoteLedger
) -> None:
    await ledger.register(chan.signed(chan.state(1, [[5, 5]])))
    await ledger.register(chan.signed(chan.state(2, [[4, 6]])))
    sub = await remote.subscribe(chan.id)
    first = await asyncio.wait_for(sub.next(), 2)
    assert isinstance(first, RegisteredEvent)
    assert (first.version, first.timeout.deadline) == (2, START + D)
    assert first.state == chan.state(2, [[4, 6]])
    assert not await first.timeout.is_elapsed()

    pending = asyncio.create_task(sub.next())
    await asyncio.sleep(0.02)
    assert not pending.done()  # nothing polls: it waits for a push
    await ledger.register(chan.signed(chan.state(3, [[3, 7]])))  # on the server's side
    third = await asyncio.wait_for(pending, 2)
    assert third is not None and third.version == 3

    waiter = asyncio.create_task(third.timeout.wait())
    await asyncio.sleep(0.02)
    assert not waiter.done() and ledger.clock.sleepers == 1  # it sleeps on the server
    await remote.advance(D)
    await asyncio.wait_for(waiter, 2)
    assert await third.timeout.is_elapsed()
    await remote.conclude(chan.params, chan.state(3, [[3, 7]]))
    ev = await asyncio.wait_for(sub.next(), 2)
    assert isinstance(ev, ConcludedEvent) and ev.version == 3

    pending = asyncio.create_task(sub.next())
    await asyncio.sleep(0)
    await sub.close()
    assert await asyncio.wait_for(pending, 2) is None
    await asyncio.sleep(0.02)
    assert not ledger._subs  # unsubscribed on the server too


async def test_a_cancelled_wait_is_cancelled_on_the_server(
    ledger: SimLedger, remote: RemoteLedger
) -> None:
    waiter = asyncio.create_task(remote.sleep_until(START + 10_000))
    await asyncio.sleep(0.05)
    assert ledger.clock.sleepers == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    for _ in range(100):
        if ledger.clock.sleepers == 0:
            break
        await asyncio.sleep(0.01)
    assert ledger.clock.sleepers == 0
    assert await remote.now() == START  # the connection is still fine


async def test_funding_waits_for_a_deposit_from_another_process(
    served: LedgerServer, chan: Chan, eth: Asset
) -> None:
    """Alice and Bob fund through separate connections; Bob deposits late."""
    from perun_core.interfaces import FundingRequest

    alice, bob = chan.accounts
    backends = [SimBackend.from_config({"url": served.urls[0]}) for _ in range(2)]
    try:
        for b, acc in zip(backends, (alice, bob), strict=True):
            await b.faucet(acc.address, eth, 100)
        st0 = chan.state(0, [[30, 70]])
        req = [FundingRequest(chan.params, st0, i, ((30, 70),), timeout=D) for i in (0, 1)]
        alice_funds = asyncio.create_task(backends[0].funder(alice).fund(req[0]))
        await asyncio.sleep(0.05)
        assert not alice_funds.done()
        await backends[1].funder(bob).fund(req[1])
        await asyncio.wait_for(alice_funds, 2)
        assert await backends[0].balance_of(alice.address, eth) == 70
        assert served.ledger.holdings_of(eth, chan.id, bob.address) == 70
    finally:
        for b in backends:
            await b.close()


class TestDisputeOnServedSim(DisputeConformance):
    """Every dispute scenario with every client on a ledger served over loopback TCP."""

    @pytest.fixture
    async def backend(self, served: LedgerServer) -> AsyncIterator[SimBackend]:  # type: ignore[override]
        b = SimBackend.from_config({"url": served.urls[0]})
        await b.connect()
        assert b.is_remote
        yield b
        await b.close()

    @pytest.fixture
    async def parties(self, backend: SimBackend) -> AsyncIterator[PartyFactory]:
        factory = PartyFactory(backend, LocalBus())
        yield factory
        await factory.close()

    @pytest.fixture
    def asset(self, backend: SimBackend) -> Asset:
        return backend.default_assets()[0]


# --- configuration and connection errors -------------------------------------------------------


async def test_remote_backend_configuration(served: LedgerServer, sock_dir: Path) -> None:
    b = SimBackend.from_config({"url": served.urls[0]})
    with pytest.raises(NotSupportedError, match=r"served at tcp://127\.0\.0\.1"):
        _ = b.ledger
    with pytest.raises(NotSupportedError):
        _ = b.clock
    assert await b.ledger_time() == START
    await b.advance_time(5)
    assert await b.ledger_time() == START + 5 == served.ledger.clock.now()
    await b.close()
    with pytest.raises(ValueError, match="clock"):
        SimBackend.from_config({"url": served.urls[0], "clock": "manual"})
    for bad in ("http://127.0.0.1:1", "tcp://127.0.0.1", "tcp://::1:80", "unix://rel/path", "x"):
        with pytest.raises(LedgerURLError):
            SimBackend.from_config({"url": bad})
    assert parse_url("tcp://[::1]:80") == ("tcp", "::1", 80)
    # the same ledger on a Unix socket
    url = await served.listen_unix(sock_dir / "ledger.sock")
    u = SimBackend.from_config({"url": url})
    assert await u.ledger_time() == START + 5
    await u.close()


async def test_unreachable_or_wrong_ledger_is_a_typed_error(
    served: LedgerServer, sock_dir: Path
) -> None:
    with pytest.raises(LedgerConnectionError, match="cannot reach"):
        await RemoteLedger(f"unix://{sock_dir}/nobody.sock").now()
    other = RemoteLedger(served.urls[0], ledger_id=7)
    with pytest.raises(LedgerConnectionError, match="serves ledger 1337, not the configured"):
        await other.connect()
    await other.close()


async def test_lost_server_fails_pending_calls_and_ends_subscriptions(
    chan: Chan,
) -> None:
    ledger = SimLedger(clock=SimClock.manual(START))
    server = LedgerServer(ledger)
    url = await server.listen_tcp()
    remote = RemoteLedger(url)
    sub = await remote.subscribe(chan.id)
    sleeper = asyncio.create_task(remote.sleep_until(START + 100))
    await asyncio.sleep(0.02)
    await server.close()
    with pytest.raises(LedgerConnectionError, match="lost the connection"):
        await asyncio.wait_for(sleeper, 2)
    assert await asyncio.wait_for(sub.next(), 2) is None
    with pytest.raises(LedgerConnectionError):
        await remote.now()  # reconnecting fails: nobody listens any more
    await remote.close()


# --- bad input -----------------------------------------------------------------------------------


async def _raw(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    _, host, port = parse_url(url)
    return await asyncio.open_connection(host, port)


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 2) == b""
    except ConnectionError:
        return True


async def _call_raw(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, msg: list[object]
) -> list[object]:
    writer.write(frame(msgspec.msgpack.encode(msg)))
    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(4), 2), "big")
    answer: list[object] = msgspec.msgpack.decode(await reader.readexactly(size))
    return answer


async def test_bad_calls_are_answered_and_bad_frames_drop_only_their_connection(
    served: LedgerServer, remote: RemoteLedger, chan: Chan
) -> None:
    sub = await remote.subscribe(chan.id)  # a healthy client with a live subscription
    reader, writer = await _raw(served.urls[0])
    # A well-framed call with bad arguments or an unknown method: an error answer.
    ans = await _call_raw(reader, writer, [CALL, 1, "deposit", [b"x", 1]])
    assert ans[:2] == [3, 1] and ans[2][0] == "malformed"  # type: ignore[index]
    ans = await _call_raw(reader, writer, [CALL, 2, "drop_tables", []])
    assert ans[2][0] == "protocol" and "unknown method" in ans[2][1]  # type: ignore[index]
    ans = await _call_raw(reader, writer, [CALL, 3, "mint", [b"\x01" * 20, [1337, b"ETH"], -1]])
    assert ans[2][0] == "value"  # type: ignore[index]
    ans = await _call_raw(reader, writer, [CALL, 4, "hello", [99]])
    assert ans[2][0] == "protocol" and "version 99" in ans[2][1]  # type: ignore[index]
    # Not a message at all: the connection is dropped.
    writer.write(frame(b"\xc1garbage"))
    assert await _closed_by_server(reader)
    writer.close()
    # An oversize header: dropped before the payload is read.
    reader, writer = await _raw(served.urls[0])
    writer.write((served.max_frame_size + 1).to_bytes(4, "big"))
    assert await _closed_by_server(reader)
    writer.close()
    # The healthy client carries on, subscription included.
    await remote.register(chan.signed(chan.state(1, [[5, 5]])))
    ev = await asyncio.wait_for(sub.next(), 2)
    assert ev is not None and ev.version == 1
    assert served.connections == 1
    await sub.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(junk=st.binary(min_size=1, max_size=200))
async def test_garbage_frames_never_harm_the_server(
    served: LedgerServer, remote: RemoteLedger, junk: bytes
) -> None:
    reader, writer = await _raw(served.urls[0])
    writer.write(frame(junk))
    writer.write(frame(msgspec.msgpack.encode([CALL, 9, "now", []])))
    try:
        # Either the junk was refused (connection dropped) or it was a message after all
        # and the next call is still answered; the server itself never stops.
        data = await asyncio.wait_for(reader.read(1 << 16), 2)
        assert isinstance(data, bytes)
    except ConnectionError:
        pass
    writer.close()
    assert await remote.now() == START


async def test_a_call_id_in_use_is_refused(served: LedgerServer) -> None:
    reader, writer = await _raw(served.urls[0])
    writer.write(frame(msgspec.msgpack.encode([CALL, 5, "sleep_until", [START + 99]])))
    ans = await _call_raw(reader, writer, [CALL, 5, "now", []])
    assert ans[2][0] == "protocol" and "already in use" in ans[2][1]  # type: ignore[index]
    writer.close()


async def test_errors_keep_their_types(remote: RemoteLedger, chan: Chan) -> None:
    with pytest.raises(ValueError, match="backwards"):
        await remote.advance(-1)
    st = chan.state(1, [[5, 5]])
    from perun_core.channel import SubAlloc

    parent = chan.state(1, [[4, 4]], locked=[SubAlloc(b"\x05" * 32, (2,), (0, 1))])
    await remote.register(chan.signed(st))
    await remote.advance(D)
    with pytest.raises(StateMismatchError) as ei:
        await remote.conclude(chan.params, parent)
    assert type(ei.value) is StateMismatchError
    assert ei.value.reason == "invalid channel state"
    with pytest.raises(MalformedMessageError):
        await remote.call("deposit", [1, 2])
    with pytest.raises(ProtocolError):
        await remote.call("nope", [])


# --- the command line ----------------------------------------------------------------------------


async def _start_server(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "perun_sim.server",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    assert "listening on " in line, line
    return proc, line.rsplit(" ", 1)[1].strip()


async def _stop(proc: asyncio.subprocess.Process, how: Callable[[], None]) -> int:
    if proc.returncode is None:
        how()
    return await asyncio.wait_for(proc.wait(), 10)


async def test_cli_serves_a_manual_clock_ledger_until_sigterm(sock_dir: Path) -> None:
    sock = sock_dir / "l.sock"
    proc, url = await _start_server("--manual-clock", "--start", "50", "--unix", str(sock))
    try:
        assert url == f"unix://{sock}"
        b = SimBackend.from_config({"url": url})
        acct = b.wallet().add_seed(b"cli")
        await b.faucet(acct.address, b.default_assets()[0], 9)
        assert await b.ledger_time() == 50
        await b.advance_time(10)
        assert await b.ledger_time() == 60
        c = SimBackend.from_config({"url": url})  # another client sees the same ledger
        assert await c.balance_of(acct.address, c.default_assets()[0]) == 9
        await b.close()
        await c.close()
        assert await _stop(proc, lambda: os.kill(proc.pid, signal.SIGTERM)) == 0
        assert not sock.exists()  # removed on a clean stop
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_realtime_clock_on_tcp() -> None:
    proc, url = await _start_server("--port", "0", "--ledger-id", "9")
    try:
        assert url.startswith("tcp://127.0.0.1:")
        b = SimBackend.from_config({"url": url, "ledger_id": 9})
        t = await b.ledger_time()
        assert abs(t - __import__("time").time()) < 5  # wall-clock time
        assert b.default_assets()[0].ledger_id == 9
        await b.close()
        assert await _stop(proc, lambda: os.kill(proc.pid, signal.SIGINT)) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
