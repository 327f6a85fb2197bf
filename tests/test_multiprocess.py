"""Clients in separate OS processes on one served sim ledger, over the TCP bus.

The ledger is served by :mod:`perun_sim.server`; Alice runs in the test process, Bob in a
child process (:mod:`perun_core.testing.peer`). Processes are ended by their own PIDs only.
Only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from perun_sim import SimBackend, SimClock, SimLedger
from perun_sim.server import LedgerServer
from perun_tcp import TcpBus

from perun_core.channel.allocation import Allocation
from perun_core.channel.phase import Phase
from perun_core.channel.types import Asset
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal
from perun_core.interfaces.wallet import Account
from perun_core.plugins import load_plugins
from perun_core.testing.peer import PeerProcess, PeerProcessError

FUNDS = 10_000


@dataclass
class Alice:
    """The party in the test process."""

    backend: SimBackend
    account: Account
    bus: TcpBus
    client: Client
    asset: Asset
    new_channels: asyncio.Queue[Channel] = field(default_factory=asyncio.Queue)


async def _served_ledger_process() -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "perun_sim.server",
        "--manual-clock",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "listening on tcp://127.0.0.1:" in line, line
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc, line.rsplit(" ", 1)[1].strip()


@pytest.fixture
async def ledger_process() -> AsyncIterator[str]:
    """A ledger served by its own process (manual clock); yields its URL."""
    proc, url = await _served_ledger_process()
    try:
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()  # SIGTERM to its PID: a clean stop
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def ledger_here() -> AsyncIterator[LedgerServer]:
    """A ledger served by the test process itself (manual clock)."""
    async with LedgerServer(SimLedger(clock=SimClock.manual(0))) as server:
        await server.listen_tcp()
        yield server


async def _alice(url: str) -> Alice:
    backend = SimBackend.from_config({"url": url})
    await backend.connect()
    account = backend.wallet().add_seed(b"alice")
    asset = backend.default_assets()[0]
    await backend.faucet(account.address, asset, FUNDS)
    bus = TcpBus.from_backend(account, backend, handshake_timeout=5.0, close_timeout=1.0)
    await bus.listen("127.0.0.1", 0)
    client = Client(
        account=account,
        backend=backend,
        bus=bus,
        funder=backend.funder(account),
        adjudicator=backend.adjudicator(account),
        config=ClientConfig(update_timeout=5, proposal_timeout=10, sync_timeout=5),
    )
    alice = Alice(backend, account, bus, client, asset)
    client.on_proposal(lambda p, r: r.accept())
    client.on_new_channel(alice.new_channels.put_nowait)
    await client.start()
    return alice


async def _close(alice: Alice) -> None:
    await alice.client.close()
    await alice.bus.close()
    await alice.backend.close()


async def _spawn_bob(url: str, alice: Alice, **kw: object) -> PeerProcess:
    bob = await PeerProcess.spawn(
        ledger_url=url,
        peer=alice.account.address,
        peer_endpoint=str(alice.bus.endpoints[0]),
        update_timeout=5.0,
        **kw,  # type: ignore[arg-type]
    )
    alice.bus.add_peer(bob.address, bob.endpoint)
    return bob


async def _open(alice: Alice, bob: PeerProcess, a: int, b: int) -> Channel:
    ch = await alice.client.propose_channel(
        LedgerChannelProposal(peer=bob.address, allocation=Allocation((alice.asset,), ((a, b),)))
    )
    seen = await bob.call("channel", timeout=10)
    assert seen["id"] == ch.id.hex() and seen["version"] == 0
    return ch


async def _pay_both_ways(ch: Channel, bob: PeerProcess, n: int, *, bob_first: bool = False) -> int:
    """``n`` payments alternating between Alice and Bob; returns the net paid to Bob."""
    net = 0
    for i in range(n):
        amount = i % 5 + 1
        if (i % 2 == 0) != bob_first:
            await ch.send(amount)
            net += amount
        else:
            await bob.call("pay", id=ch.id.hex(), amount=amount + 1)
            net -= amount + 1
    return net


async def test_two_processes_pay_over_tcp_on_a_ledger_served_by_a_third(
    ledger_process: str,
) -> None:
    alice = await _alice(ledger_process)
    bob: PeerProcess | None = None
    try:
        bob = await _spawn_bob(ledger_process, alice, funds=FUNDS, seed="bob")
        ch = await _open(alice, bob, 1_500, 500)
        net = await _pay_both_ways(ch, bob, 60)
        assert net != 0
        for _ in range(1_000):  # a thousand updates from this process to Bob's over TCP
            await ch.send(1)
        net += 1_000
        seen = await bob.call("state", id=ch.id.hex())
        assert seen["version"] == ch.state.version == 1_060
        assert seen["balances"] == [[1_500 - net, 500 + net]] == [list(ch.state.balances[0])]
        settled = await asyncio.gather(ch.settle(), bob.call("settle", id=ch.id.hex()))
        assert ch.phase == Phase.WITHDRAWN and settled[1]["phase"] == "WITHDRAWN"
        # A third client of the ledger process reads the outcome.
        observer = SimBackend.from_config({"url": ledger_process})
        try:
            eth = observer.default_assets()[0]
            assert await observer.balance_of(alice.account.address, eth) == FUNDS - net
            assert await observer.balance_of(bob.address, eth) == FUNDS + net
            assert await observer.api.tx_count("deposit") == 2
            assert await observer.api.tx_count("conclude_final") == 1
            assert await observer.api.tx_count("withdraw") == 2
        finally:
            await observer.close()
        assert await bob.close() == 0
    finally:
        if bob is not None:
            await bob.close()
        await _close(alice)


async def _restart(bob: PeerProcess, url: str, alice: Alice, **kw: object) -> PeerProcess:
    """Kill ``bob``'s process (SIGKILL to its PID) and start it again on the same endpoint."""
    await bob.kill()
    for _ in range(500):  # Alice notices the dead connection
        if bob.address not in alice.bus.connected_peers:
            break
        await asyncio.sleep(0.01)
    assert bob.address not in alice.bus.connected_peers
    again = await _spawn_bob(url, alice, listen=bob.endpoint, **kw)
    assert again.address == bob.address and again.pid != bob.pid
    return again


async def test_a_restarted_peer_process_recovers_the_channel_from_its_store(
    ledger_here: LedgerServer, tmp_path: Path
) -> None:
    if "leveldb" not in load_plugins().persisters:
        pytest.skip("needs a durable persister (perun-leveldb) to survive a killed process")
    url = ledger_here.urls[0]
    alice = await _alice(url)
    db = str(tmp_path / "bob.db")
    kw: dict[str, object] = {"seed": "bob", "persister": "leveldb", "db": db}
    first = await _spawn_bob(url, alice, funds=FUNDS, **kw)
    bob: PeerProcess | None = first
    try:
        ch = await _open(alice, first, 300, 300)
        net = await _pay_both_ways(ch, first, 10)
        bob = await _restart(first, url, alice, **kw)
        # The restored channel comes back from Bob's store, at the version Alice knows.
        seen = await bob.call("channel", timeout=10)
        assert seen["id"] == ch.id.hex() and seen["version"] == 10
        # Bob's first operation syncs the restored channel first: his payment dials Alice,
        # the connection comes up, both exchange their views (see docs/protocols.md), then he
        # pays. (An update of Alice's arriving before that sync would be refused with
        # SYNC_REQUIRED and had to be retried.)
        net += await _pay_both_ways(ch, bob, 10, bob_first=True)
        seen = await bob.call("state", id=ch.id.hex())
        assert seen["version"] == ch.state.version == 20
        assert seen["balances"] == [list(ch.state.balances[0])] == [[300 - net, 300 + net]]
        await asyncio.gather(ch.settle(), bob.call("settle", id=ch.id.hex()))
        ledger = ledger_here.ledger
        assert ledger.balance_of(alice.account.address, alice.asset) == FUNDS - net
        assert ledger.balance_of(bob.address, alice.asset) == FUNDS + net
        assert await bob.close() == 0
    finally:
        await first.kill()
        if bob is not None:
            await bob.close()
        await _close(alice)


async def test_a_restarted_peer_process_without_a_store_reconnects_for_a_new_channel(
    ledger_here: LedgerServer,
) -> None:
    """Without persistence the killed process forgets its channel: the connection comes back
    and a new channel opens and settles on the same ledger; Alice recovers the old one's
    funds through the ledger alone."""
    url = ledger_here.urls[0]
    alice = await _alice(url)
    first = await _spawn_bob(url, alice, funds=FUNDS, seed="bob")
    bob: PeerProcess | None = first
    try:
        old = await _open(alice, first, 200, 200)
        old_net = await _pay_both_ways(old, first, 6)
        bob = await _restart(first, url, alice, seed="bob")
        with pytest.raises(PeerProcessError, match=r"KeyError|UnknownChannel"):
            await bob.call("state", id=old.id.hex())  # forgotten
        new = await _open(alice, bob, 100, 100)  # over a fresh connection
        assert bob.address in alice.bus.connected_peers
        new_net = await _pay_both_ways(new, bob, 8)
        await asyncio.gather(new.settle(), bob.call("settle", id=new.id.hex()))
        # The old channel: Alice registers her latest state and withdraws after the window.
        await old.register()
        await alice.backend.advance_time(old.params.challenge_duration + 1)
        await old.settle()
        assert old.phase == Phase.WITHDRAWN
        ledger = ledger_here.ledger
        assert ledger.balance_of(alice.account.address, alice.asset) == (
            FUNDS - 200 + (200 - old_net) - new_net
        )
        # Bob's share of the old channel stays on the ledger for him (he lost the state).
        assert ledger.holdings_of(alice.asset, old.id, bob.address) == 200 + old_net
        assert ledger.balance_of(bob.address, alice.asset) == FUNDS - 200 + new_net
        assert await bob.close() == 0
    finally:
        await first.kill()
        if bob is not None:
            await bob.close()
        await _close(alice)


async def test_a_peer_process_that_cannot_start_is_reported_and_gone(tmp_path: Path) -> None:
    nobody = f"unix://{tmp_path}/no-ledger.sock"
    with pytest.raises(PeerProcessError, match="cannot reach the sim ledger"):
        await PeerProcess.spawn(
            ledger_url=nobody, peer=SimBackend().wallet().add_seed(b"x").address, funds=1
        )


async def test_a_peer_process_ends_when_its_parent_goes_away(ledger_here: LedgerServer) -> None:
    alice = await _alice(ledger_here.urls[0])
    bob = await _spawn_bob(ledger_here.urls[0], alice)
    try:
        assert bob.proc.stdin is not None
        bob.proc.stdin.close()  # what the kernel does when the parent dies
        assert await asyncio.wait_for(bob.proc.wait(), 10) == 0
    finally:
        await bob.kill()
        await _close(alice)
