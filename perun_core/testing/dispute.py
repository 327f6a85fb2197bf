"""Dispute and watchtower scenarios every chain backend runs.

Use it by subclassing :class:`DisputeConformance` in a test module and providing fixtures:

``backend``
    a :class:`~perun_core.interfaces.ChainBackend` with the ``faucet``, ``balances`` and
    ``time_travel`` capabilities (ledger time must only move when the test moves it).
``parties``
    a :class:`~perun_core.testing.parties.PartyFactory` over that backend and a bus.
``asset``
    the asset the channels use (pick one whose ledger balance no fee touches, e.g. a token).

Ledger time is moved with ``backend.advance_time``; no test sleeps out a challenge duration.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.client import ClientConfig
from perun_core.errors import (
    ChannelFundingError,
    ChannelRegisteredError,
    FundingTimeoutError,
    StaleStateError,
    StateMismatchError,
    TimeoutNotElapsedError,
)
from perun_core.interfaces.adjudicator import (
    AdjudicatorEvent,
    AdjudicatorReq,
    ConcludedEvent,
    RegisteredEvent,
)
from perun_core.interfaces.funder import Funder, FundingRequest
from perun_core.testing.adjudicator import refused
from perun_core.testing.parties import PartyFactory, open_channel
from perun_core.testing.waiting import until

CHALLENGE = 60
QUICK = ClientConfig(update_timeout=0.5, proposal_timeout=5)
CHEATER = ClientConfig(update_timeout=5, proposal_timeout=5, watch=False, auto_settle=False)


class _NeverFunds(Funder):
    """A participant that never deposits: its funding just fails after the deadline."""

    async def fund(self, request: FundingRequest) -> None:
        raise FundingTimeoutError(
            [[request.idx]] * len(request.state.allocation.assets),
            channel_id=request.params.id,
        )


class DisputeConformance:
    """Scenarios: stale registrations refuted, settle fallback, fund recovery, ledger rules."""

    async def test_watchtower_refutes_a_stale_registration(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        mallory = await parties.make("mallory", config=CHEATER)
        carol = await parties.make("carol")
        funds = parties.funds
        ch_m, ch_c = await open_channel(
            mallory, carol, asset, (100, 1), challenge_duration=CHALLENGE
        )
        events: list[AdjudicatorEvent] = []
        ch_c.watch(lambda ch, ev: events.append(ev))
        stale = ch_m.transaction
        assert stale is not None and stale.state.version == 0
        for _ in range(20):
            await ch_m.send(5)
        assert ch_c.balances[0] == (0, 101)
        # Mallory registers the version-0 state, in which she still owns 100.
        adj_m = backend.adjudicator(mallory.account)
        await adj_m.register(AdjudicatorReq(ch_m.params, stale, 0))
        await until(lambda: len(events) >= 2)
        assert isinstance(events[0], RegisteredEvent) and events[0].version == 0
        assert isinstance(events[1], RegisteredEvent) and events[1].version == 20
        assert events[1].timeout.deadline == events[0].timeout.deadline  # refuting keeps it
        watcher = carol.client.watcher
        assert watcher is not None
        # The refutation counts once its transaction is confirmed, which on a real chain can
        # come after the ledger's event for it.
        await until(lambda: watcher.refutations == 1)
        assert ch_c.phase == Phase.REGISTERED
        with pytest.raises(ChannelRegisteredError):
            await ch_c.send(1)
        # Concluding before the timeout is refused ...
        latest = ch_m.transaction
        assert latest is not None
        await refused(
            adj_m.withdraw(AdjudicatorReq(ch_m.params, latest, 0)), TimeoutNotElapsedError
        )
        # ... and the stale state cannot conclude at all: it is not the registered one.
        await refused(adj_m.withdraw(AdjudicatorReq(ch_m.params, stale, 0)), StateMismatchError)
        await backend.advance_time(CHALLENGE + 1)
        await ch_c.wait_phase(Phase.WITHDRAWN, timeout=5)  # Carol's client settles itself
        await until(lambda: isinstance(events[-1], ConcludedEvent))
        assert [type(e).__name__ for e in events] == [
            "RegisteredEvent",
            "RegisteredEvent",
            "ConcludedEvent",
        ]
        assert events[2].version == 20
        # The outcome is the refuted one: withdrawing with the stale state is not refused
        # but pays what the ledger's outcome gives Mallory, which is nothing.
        await adj_m.withdraw(AdjudicatorReq(ch_m.params, stale, 0))
        assert await backend.balance_of(mallory.account.address, asset) == funds - 100
        await ch_m.settle()
        assert await backend.balance_of(carol.account.address, asset) == funds - 1 + 101
        assert await backend.balance_of(mallory.account.address, asset) == funds - 100

    async def test_settle_falls_back_to_the_ledger_when_the_peer_is_silent(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        alice = await parties.make("alice", config=QUICK)
        bob = await parties.make("bob", config=QUICK)
        funds = parties.funds
        ch_a, ch_b = await open_channel(alice, bob, asset, (50, 50), challenge_duration=CHALLENGE)
        await ch_a.send(10)
        stall = asyncio.Event()

        async def silent(ch: Any, cur: Any, new: Any, responder: Any) -> None:
            await stall.wait()  # Bob never answers the final proposal

        bob.client.on_update_proposal(silent)
        settling = asyncio.create_task(ch_a.settle())
        await ch_a.wait_phase(Phase.REGISTERED, timeout=5)
        assert ch_a.state.version == 1 and not ch_a.state.is_final
        await backend.advance_time(CHALLENGE + 1)
        await asyncio.wait_for(settling, 5)
        await ch_b.wait_phase(Phase.WITHDRAWN, timeout=5)
        assert await backend.balance_of(alice.account.address, asset) == funds - 10
        assert await backend.balance_of(bob.account.address, asset) == funds + 10
        stall.set()

    async def test_stale_registration_after_a_final_state(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        mallory = await parties.make("mallory", config=CHEATER)
        carol = await parties.make("carol")
        funds = parties.funds
        ch_m, ch_c = await open_channel(
            mallory, carol, asset, (30, 30), challenge_duration=CHALLENGE
        )
        stale = ch_m.transaction
        assert stale is not None
        await ch_m.send(20)
        await ch_m.update(lambda s: s.finalized())
        assert ch_c.phase == Phase.FINAL
        await backend.adjudicator(mallory.account).register(AdjudicatorReq(ch_m.params, stale, 0))
        # Carol's watcher registers the final state: concludable at once, no waiting.
        await ch_c.wait_phase(Phase.WITHDRAWN, timeout=5)
        assert await backend.balance_of(carol.account.address, asset) == funds + 20
        await ch_m.settle()
        assert await backend.balance_of(mallory.account.address, asset) == funds - 20

    async def test_double_withdrawal_is_refused(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        alice = await parties.make("alice")
        bob = await parties.make("bob")
        ch_a, ch_b = await open_channel(alice, bob, asset, (40, 40))
        await ch_a.send(15)
        final = await ch_a.update(lambda s: s.finalized())
        tx = ch_a.transaction
        assert tx is not None and tx.state == final
        await ch_a.settle()
        before = await backend.balance_of(alice.account.address, asset)
        # Withdraw again: idempotent at the adjudicator (nothing left to pay) ...
        adj = backend.adjudicator(alice.account)
        await adj.withdraw(AdjudicatorReq(ch_a.params, tx, 0))
        assert await backend.balance_of(alice.account.address, asset) == before
        await ch_b.settle()

    async def test_fund_recovery_when_the_peer_never_funds(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        frida = await parties.make("frida")
        fred = await parties.make("fred", funder=_NeverFunds())
        funds = parties.funds
        opening = asyncio.create_task(
            open_channel(frida, fred, asset, (100, 50), challenge_duration=CHALLENGE)
        )
        await until(lambda: bool(frida.client.channels) and bool(fred.errors))
        err_fred = fred.errors[0]
        assert isinstance(err_fred, ChannelFundingError)
        # Frida's deposit may still be on its way to a ledger in another process.
        async with asyncio.timeout(5):
            while await backend.balance_of(frida.account.address, asset) != funds - 100:  # noqa: ASYNC110 - the ledger may be in another process: no event to await, so poll it
                await asyncio.sleep(0.005)
        await backend.advance_time(CHALLENGE + 1)  # Frida's funding deadline passes
        with pytest.raises(ChannelFundingError) as err:
            await asyncio.wait_for(opening, 5)
        cause = err.value.cause
        assert isinstance(cause, FundingTimeoutError)
        assert cause.unfunded_participants == (1,)
        ch = err.value.channel
        assert ch.phase == Phase.FUNDING
        recovering = asyncio.create_task(ch.settle())
        await ch.wait_phase(Phase.REGISTERED, Phase.WITHDRAWING, timeout=5)
        await backend.advance_time(CHALLENGE + 1)
        await asyncio.wait_for(recovering, 5)
        assert ch.phase == Phase.WITHDRAWN
        assert await backend.balance_of(frida.account.address, asset) == funds
        assert await backend.balance_of(fred.account.address, asset) == funds
        # Fred's end of the channel settles too (nothing to withdraw, but no error).
        await err_fred.channel.settle()

    async def test_register_with_an_older_version_is_refused(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        alice = await parties.make("alice", config=CHEATER)
        bob = await parties.make("bob", config=CHEATER)
        ch_a, _ = await open_channel(alice, bob, asset, (10, 10), challenge_duration=CHALLENGE)
        v0 = ch_a.transaction
        await ch_a.send(1)
        v1 = ch_a.transaction
        assert isinstance(v0, Transaction) and isinstance(v1, Transaction)
        adj = backend.adjudicator(alice.account)
        await adj.register(AdjudicatorReq(ch_a.params, v1, 0))
        await refused(adj.register(AdjudicatorReq(ch_a.params, v0, 0)), StaleStateError)
        await adj.register(AdjudicatorReq(ch_a.params, v1, 0))  # identical: a no-op
        await refused(adj.withdraw(AdjudicatorReq(ch_a.params, v1, 0)), TimeoutNotElapsedError)
        await backend.advance_time(CHALLENGE + 1)
        await adj.withdraw(AdjudicatorReq(ch_a.params, v1, 0))
