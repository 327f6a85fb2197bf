"""Two-party client scenarios every chain backend runs: the happy path and a crash with
restore (the dispute scenarios are in :mod:`perun_core.testing.dispute`).

Use it by subclassing :class:`TwoPartyConformance` in a test module and providing fixtures:

``backend``
    a :class:`~perun_core.interfaces.ChainBackend` with the ``faucet`` and ``balances``
    capabilities.
``parties``
    a :class:`~perun_core.testing.parties.PartyFactory` over that backend and a bus.
``asset``
    the asset the channels use (pick one whose ledger balance no fee touches).

Optional: ``reopen``, an async function taking a party's persister after its client stopped
and returning the persister a restarted client uses (default: the same object; a durable
persister closes and reopens its files).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from perun_core.channel.phase import Phase
from perun_core.interfaces.persister import ChannelRecord, Persister
from perun_core.testing.parties import PartyFactory, open_channel

Reopen = Callable[[Persister], Awaitable[Persister]]


def _comparable(record: ChannelRecord) -> ChannelRecord:
    """``record`` without the fields a persister may store lazily (a version floor at or below
    the current version, and the sync flag of a channel that has not synced yet)."""
    assert record.current is not None and record.version_floor <= record.current.state.version
    return record.evolve(version_floor=0, needs_sync=False)


class TwoPartyConformance:
    """Alice and Bob open, pay, settle; and survive a restart of both clients."""

    @pytest.fixture
    def reopen(self) -> Reopen:
        """The persister a restarted client uses (default: the same object)."""

        async def same(store: Persister) -> Persister:
            return store

        return same

    async def test_open_pay_both_ways_and_settle(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        alice = await parties.make("alice")
        bob = await parties.make("bob")
        funds = parties.funds
        ch_a, ch_b = await open_channel(alice, bob, asset, (500, 500))
        assert await backend.balance_of(alice.account.address, asset) == funds - 500
        net = 0
        for i in range(1, 21):
            if i % 4 == 3:
                await ch_b.send(i)
                net -= i
            else:
                await ch_a.send(i)
                net += i
        assert ch_a.state == ch_b.state and ch_a.state.version == 20
        assert ch_b.balances[0] == (500 - net, 500 + net)
        assert [s.version for s in bob.updates][-1] == 20
        await ch_a.settle()
        await ch_b.settle()
        assert ch_a.phase == ch_b.phase == Phase.WITHDRAWN
        assert await backend.balance_of(alice.account.address, asset) == funds - net
        assert await backend.balance_of(bob.account.address, asset) == funds + net

    async def test_both_clients_restart_from_their_records_and_settle(
        self, backend: Any, parties: PartyFactory, asset: Any, reopen: Reopen
    ) -> None:
        alice = await parties.make("alice")
        bob = await parties.make("bob")
        ch_a, ch_b = await open_channel(alice, bob, asset, (100, 100))
        await ch_a.send(7)
        await ch_b.send(2)
        before = _comparable(ch_a.record())
        await alice.client.close()
        await bob.client.close()
        store_a, store_b = await reopen(alice.persister), await reopen(bob.persister)
        restarted = PartyFactory(backend, parties.bus, funds=parties.funds)
        try:
            alice2 = await restarted.make("alice", account=alice.account, persister=store_a)
            bob2 = await restarted.make("bob", account=bob.account, persister=store_b)
            ch_a2, ch_b2 = await alice2.next_channel(), await bob2.next_channel()
            assert ch_a2.id == ch_b2.id == ch_a.id
            assert _comparable(ch_a2.record()) == before
            await ch_b2.send(1)
            assert ch_a2.balances[0] == (96, 104)
            await ch_a2.settle()
            await ch_b2.settle()
            funds = parties.funds
            assert await backend.balance_of(alice.account.address, asset) == funds - 4
            assert await backend.balance_of(bob.account.address, asset) == funds + 4
        finally:
            await restarted.close()
