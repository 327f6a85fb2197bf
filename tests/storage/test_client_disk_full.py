"""A client whose store fails mid-channel: Bob's disk fills up (or his log becomes read-only)
while Alice pays him. His store fails closed, so no update is acknowledged that is not
persisted; once the space (or the permission) is back, Bob restarts on the same store, the
channel is restored and synced, payments work again, and settling pays both parties their
share of the last state they agreed on.

Two clients in this process on the sim ledger and the in-process bus; Bob's store is a real
LevelDB or RocksDB directory (on a small tmpfs for the full disk: skipped where mounting is
not permitted).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from storage_campaign import fill

from perun_core.channel.allocation import Allocation
from perun_core.channel.types import Asset
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal
from perun_core.errors import PerunError, StoreFailedError, SyncRequiredError
from perun_core.interfaces.chain import ChainBackend
from perun_core.interfaces.persister import Persister
from perun_core.interfaces.wallet import Account
from perun_core.persistence.kv_wal import log_files
from perun_core.persistence.memory import MemoryPersister
from perun_core.plugins import load_plugins
from perun_core.wire.local_bus import LocalBus

pytestmark = pytest.mark.timeout(120)

FUNDS = 10_000
DEPOSIT = 500
CONFIG = ClientConfig(update_timeout=2, proposal_timeout=5, busy_timeout=5, sync_timeout=5)


class Parties:
    """Alice (in memory) and Bob (on a durable store at ``path``), on one ledger and bus."""

    def __init__(self, backend: ChainBackend, bus: LocalBus, asset: Asset, store: str) -> None:
        self.backend, self.bus, self.asset, self.store = backend, bus, asset, store
        self.clients: list[Client] = []
        self.persisters: list[Persister] = []

    async def client(self, account: Account, persister: Persister) -> Client:
        c = Client(
            account=account,
            backend=self.backend,
            bus=self.bus,
            funder=self.backend.funder(account),
            adjudicator=self.backend.adjudicator(account),
            persister=persister,
            config=CONFIG,
        )
        c.on_proposal(lambda p, r: r.accept())
        await c.start()
        self.clients.append(c)
        self.persisters.append(persister)
        return c

    def open_bob_store(self, path: Path) -> Persister:
        made: Persister = load_plugins(only=[self.store]).persister(self.store)(path=path)
        return made

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
        for p in self.persisters:
            with contextlib.suppress(PerunError):
                await p.close()


@pytest.fixture
async def parties(
    backend: ChainBackend, bus: LocalBus, asset: Asset, store_name: str
) -> AsyncIterator[Parties]:
    p = Parties(backend, bus, asset, store_name)
    yield p
    await p.close()


async def _until(cond: Callable[[], bool], what: str, timeout: float = 10) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not cond():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out: {what}") from None


async def _pay_until_a_payment_fails(ch_a: Channel) -> int:
    """Alice pays Bob 1 at a time until a payment fails (Bob cannot persist it); returns the
    payments that went through."""
    for paid in range(10_000):
        try:
            await ch_a.send(1)
        except PerunError:
            return paid
    raise AssertionError("Bob's store never failed")


async def _restart_bob_and_settle(
    parties: Parties,
    alice: Client,
    bob: Client,
    ch_a: Channel,
    path: Path,
    undo: Callable[[], Awaitable[None] | None],
) -> None:
    bob_account = bob.account
    done = undo()  # the space (the permission) is back, but Bob's store failed closed:
    if done is not None:
        await done
    (ch_b,) = bob.channels
    version = ch_a.state.version
    # Bob cannot pay (pre-fix, LevelDB carried on): his store refuses, or his channel first
    # needs the sync round that his refused acceptance asked for.
    with pytest.raises((StoreFailedError, SyncRequiredError)):
        await ch_b.send(1)
    with pytest.raises(PerunError):  # nor accept a payment
        await ch_a.send(1)
    assert ch_a.state.version == version
    await bob.close()
    with contextlib.suppress(PerunError):
        await parties.persisters[1].close()
    bob2 = await parties.client(bob_account, parties.open_bob_store(path))
    (ch_b2,) = bob2.channels  # restored from the store
    await _until(lambda: ch_b2.state == ch_a.state, "Bob's restored channel syncs with Alice")
    await ch_a.send(3)  # payments work again, both ways
    await ch_b2.send(2)
    assert ch_a.state == ch_b2.state
    final = ch_a.state.allocation.balances[0]
    assert sum(final) == 2 * DEPOSIT
    await asyncio.gather(ch_a.settle(), ch_b2.settle())
    backend = parties.backend
    assert await backend.balance_of(alice.account.address, parties.asset) == (
        FUNDS - DEPOSIT + final[0]
    )
    assert await backend.balance_of(bob_account.address, parties.asset) == (
        FUNDS - DEPOSIT + final[1]
    )
    assert alice.channels == [] and bob2.channels == []


async def _open(parties: Parties, bob_store: Persister) -> tuple[Client, Client, Channel]:
    wallet = parties.backend.wallet()
    accounts = [wallet.new_account(), wallet.new_account()]
    for a in accounts:
        await parties.backend.faucet(a.address, parties.asset, FUNDS)
    alice = await parties.client(accounts[0], MemoryPersister())
    bob = await parties.client(accounts[1], bob_store)
    prop = LedgerChannelProposal(
        peer=bob.address, allocation=Allocation((parties.asset,), ((DEPOSIT, DEPOSIT),))
    )
    ch_a = await alice.propose_channel(prop)
    await _until(lambda: len(bob.channels) == 1, "Bob has the channel")
    for i in range(6):  # a few payments both ways
        await (ch_a if i % 2 == 0 else bob.channels[0]).send(5 + i)
    return alice, bob, ch_a


async def test_after_a_full_disk_the_channel_restores_and_settles(
    parties: Parties, tmpfs: Callable[[int], Path]
) -> None:
    disk = tmpfs(8 << 20)
    path = disk / "bob.db"
    bob_store = parties.open_bob_store(path)
    alice, bob, ch_a = await _open(parties, bob_store)
    filler = fill(disk)  # Bob's disk is full
    before = ch_a.state.version
    paid = await _pay_until_a_payment_fails(ch_a)
    assert ch_a.state.version == before + paid  # the failed payment did not go through
    await _restart_bob_and_settle(parties, alice, bob, ch_a, path, filler.unlink)


async def test_after_the_log_turns_read_only_the_channel_restores_and_settles(
    parties: Parties, tmp_path: Path, immutable: Callable[[Path, bool], None]
) -> None:
    path = tmp_path / "bob.db"
    bob_store = parties.open_bob_store(path)
    alice, bob, ch_a = await _open(parties, bob_store)
    logs = [Path(f) for f in log_files(str(path))]
    for log in logs:
        immutable(log, True)  # Bob may no longer write his log
    before = ch_a.state.version
    paid = await _pay_until_a_payment_fails(ch_a)
    assert paid == 0 and ch_a.state.version == before

    def undo() -> None:
        for log in logs:
            immutable(log, False)

    await _restart_bob_and_settle(parties, alice, bob, ch_a, path, undo)
