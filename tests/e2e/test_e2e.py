"""Full protocols over the plugin combination selected by PERUN_TEST_CHAIN / _BUS / _PERSISTER.

Scenarios: a two-party happy path (open, 50 payments both ways, settle, ledger balances), a
stale registration refuted by the watchtower, and a restart of both parties from their
persisted records (a durable persister is closed and reopened from disk).
"""

from __future__ import annotations

import asyncio

import pytest
from e2e_support import E2E

from perun_core.channel.phase import Phase
from perun_core.client import ClientConfig
from perun_core.interfaces.adjudicator import AdjudicatorReq, ConcludedEvent, RegisteredEvent
from perun_core.interfaces.persister import ChannelRecord
from perun_core.testing.parties import open_channel
from perun_core.testing.waiting import until

CHALLENGE = 60
CHEATER = ClientConfig(update_timeout=5, proposal_timeout=5, watch=False, auto_settle=False)


def comparable(record: ChannelRecord) -> ChannelRecord:
    """``record`` without its version floor, which may be persisted lazily (a floor at or
    below the current version changes nothing), and without the sync flag, which a restored
    channel holds until it has synced with its peer over a fresh connection."""
    assert record.current is not None and record.version_floor <= record.current.state.version
    return record.evolve(version_floor=0, needs_sync=False)


async def test_happy_path_fifty_payments_then_settle(e2e: E2E) -> None:
    alice = await e2e.party("alice")
    bob = await e2e.party("bob")
    ch_a, ch_b = await open_channel(alice, bob, e2e.asset, (1000, 1000))
    assert ch_a.phase == ch_b.phase == Phase.ACTING
    assert await e2e.balance(alice) == await e2e.balance(bob) == e2e.funds - 1000
    expected = [1000, 1000]
    for i in range(50):
        amount = i % 9 + 1
        if i % 3 == 2:
            await ch_b.send(amount)
            expected = [expected[0] + amount, expected[1] - amount]
        else:
            await ch_a.send(amount)
            expected = [expected[0] - amount, expected[1] + amount]
    assert ch_a.state == ch_b.state
    assert ch_a.state.version == 50
    assert ch_a.balances[0] == ch_b.balances[0] == tuple(expected)
    await ch_a.settle()
    await ch_b.settle()
    assert ch_a.phase == ch_b.phase == Phase.WITHDRAWN
    assert await e2e.balance(alice) == e2e.funds - 1000 + expected[0]
    assert await e2e.balance(bob) == e2e.funds - 1000 + expected[1]
    # Withdrawn channels are forgotten by the persisters too (the peer that withdrew on its
    # own, when it saw the conclusion, may still be writing: wait, bounded).
    for party in (alice, bob):
        async with asyncio.timeout(5):
            while await party.persister.restore_channel(ch_a.id) is not None:
                await asyncio.sleep(0.01)


async def test_stale_registration_is_refuted_by_the_watchtower(e2e: E2E) -> None:
    mallory = await e2e.party("mallory", config=CHEATER)
    carol = await e2e.party("carol")
    ch_m, ch_c = await open_channel(mallory, carol, e2e.asset, (100, 1), challenge_duration=60)
    events: list[object] = []
    ch_c.watch(lambda ch, ev: events.append(ev))
    stale = ch_m.transaction
    assert stale is not None and stale.state.version == 0
    for _ in range(20):
        await ch_m.send(5)
    assert ch_c.balances[0] == (0, 101)
    # Mallory registers version 0, where she still owns 100; Carol's watchtower refutes.
    await e2e.backend.adjudicator(mallory.account).register(AdjudicatorReq(ch_m.params, stale, 0))
    await until(lambda: len(events) >= 2, 10.0)
    assert isinstance(events[0], RegisteredEvent) and events[0].version == 0
    assert isinstance(events[1], RegisteredEvent) and events[1].version == 20
    watcher = carol.client.watcher
    assert watcher is not None
    # Counted once the refutation is confirmed, which can come after the ledger's event.
    await until(lambda: watcher.refutations == 1, 10.0)
    await e2e.chain.ledger.advance_time(CHALLENGE + 1)
    await ch_c.wait_phase(Phase.WITHDRAWN, timeout=10)
    await until(lambda: isinstance(events[-1], ConcludedEvent), 10.0)
    await ch_m.settle()
    assert await e2e.balance(carol) == e2e.funds - 1 + 101
    assert await e2e.balance(mallory) == e2e.funds - 100


async def test_both_parties_restart_from_their_persisted_records(e2e: E2E) -> None:
    alice = await e2e.party("alice")
    bob = await e2e.party("bob")
    ch_a, ch_b = await open_channel(alice, bob, e2e.asset, (100, 100))
    for _ in range(5):
        await ch_a.send(3)
    await ch_b.send(4)
    before_a, before_b = comparable(ch_a.record()), comparable(ch_b.record())
    next_version = ch_a.next_version
    await e2e.stop(alice)
    await e2e.stop(bob)

    # New clients for the same accounts; a durable persister is reopened from its files.
    if e2e.durable:
        store_a = await e2e.open_store("alice", alice.account)
        store_b = await e2e.open_store("bob", bob.account)
    else:
        store_a, store_b = alice.persister, bob.persister
    stored = await store_a.restore_channel(ch_a.id)
    assert stored is not None and comparable(stored) == before_a
    alice2 = await e2e.party("alice", account=alice.account, persister=store_a)
    bob2 = await e2e.party("bob", account=bob.account, persister=store_b)
    ch_a2, ch_b2 = await alice2.next_channel(10), await bob2.next_channel(10)
    assert ch_a2.id == ch_b2.id == ch_a.id
    assert comparable(ch_a2.record()) == before_a and comparable(ch_b2.record()) == before_b
    assert ch_a2.next_version == ch_b2.next_version == next_version
    assert ch_a2.phase == ch_b2.phase == Phase.ACTING
    # The restored channel carries on where it stopped, then settles.
    state = await ch_b2.send(10)
    assert state.version == 7 and ch_a2.balances[0] == (99, 101)
    await ch_a2.settle()
    await ch_b2.settle()
    assert await e2e.balance(alice2) == e2e.funds - 1
    assert await e2e.balance(bob2) == e2e.funds + 1


@pytest.mark.parametrize("peers", [3])
async def test_one_party_with_channels_to_several_peers(e2e: E2E, peers: int) -> None:
    hub = await e2e.party("hub")
    spokes = [await e2e.party(f"spoke{i}") for i in range(peers)]
    pairs = [await open_channel(hub, s, e2e.asset, (50, 50)) for s in spokes]
    await asyncio.gather(*(ch_h.send(i + 1) for i, (ch_h, _) in enumerate(pairs)))
    for i, (ch_h, ch_s) in enumerate(pairs):
        assert ch_s.balances[0] == (50 - i - 1, 50 + i + 1)
        await ch_h.settle()
        await ch_s.settle()
        assert await e2e.balance(spokes[i]) == e2e.funds + i + 1
    assert await e2e.balance(hub) == e2e.funds - sum(range(1, peers + 1))
