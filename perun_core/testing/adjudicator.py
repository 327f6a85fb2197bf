"""The adjudicator conformance suite: registration, timeouts, events, conclusion, withdrawal
and force-execution of an :class:`~perun_core.interfaces.Adjudicator` (PROTOCOL.md §4, §5.5).

Use it by subclassing :class:`AdjudicatorConformance` in a test module and providing:

``backend``
    a :class:`~perun_core.interfaces.ChainBackend` with the ``faucet``, ``balances`` and
    ``time_travel`` capabilities, whose ledger time moves only when the test moves it.
``asset``
    the asset the channels hold (pick one whose balance no fee touches, e.g. a token).

``progress`` is checked with the backend's payment app when the backend declares the
``apps`` capability and has a payment app; otherwise it must raise
:class:`~perun_core.errors.NotSupportedError`.
"""

from __future__ import annotations

import asyncio

import pytest

from perun_core.channel.types import Asset
from perun_core.errors import ChainError, NotSupportedError, PerunError
from perun_core.interfaces.adjudicator import (
    ConcludedEvent,
    EventSubscription,
    ProgressedEvent,
    RegisteredEvent,
    Timeout,
)
from perun_core.interfaces.chain import ChainBackend
from perun_core.testing.ledger import CHALLENGE, FUNDS, LedgerChannel, next_event, require

_NEEDS = ("faucet", "balances", "time_travel")


class AdjudicatorConformance:
    """Disputes on the ledger as one participant's adjudicator sees them."""

    async def test_register_emits_an_event_whose_timeout_follows_ledger_time(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, *_NEEDS)
        ch = await LedgerChannel.create(backend, asset)
        await ch.fund((10, 20))
        sub = await backend.adjudicator(ch.b).subscribe(ch.params)
        assert isinstance(sub, EventSubscription)
        try:
            v1 = ch.signed(ch.state(1, (15, 15)))
            start = await backend.ledger_time()
            await backend.adjudicator(ch.a).register(ch.req(v1, 0))
            ev = await next_event(sub)
            assert isinstance(ev, RegisteredEvent)
            assert (ev.channel_id, ev.version) == (ch.params.id, 1)
            timeout = ev.timeout
            assert isinstance(timeout, Timeout)
            assert start + CHALLENGE <= timeout.deadline <= await backend.ledger_time() + CHALLENGE
            assert not await timeout.is_elapsed()
            waiting = asyncio.create_task(timeout.wait())
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await backend.advance_time(timeout.deadline - await backend.ledger_time())
            await asyncio.wait_for(waiting, 10)  # returns exactly at the deadline ...
            assert await timeout.is_elapsed()  # ... where is_elapsed() is true (now >= deadline)
        finally:
            await sub.close()

    async def test_registering_the_same_state_again_is_a_no_op_and_older_ones_are_refused(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, *_NEEDS)
        ch = await LedgerChannel.create(backend, asset)
        await ch.fund((10, 20))
        adj = backend.adjudicator(ch.a)
        v1, v2 = ch.signed(ch.state(1, (15, 15))), ch.signed(ch.state(2, (5, 25)))
        await adj.register(ch.req(v2, 0))
        await adj.register(ch.req(v2, 0))
        with pytest.raises(ChainError):
            await adj.register(ch.req(v1, 0))
        half = ch.signed(ch.state(3, (0, 30)), by=(0,))
        with pytest.raises(PerunError):
            await adj.register(ch.req(half, 0))  # not signed by every participant

    async def test_a_late_subscriber_first_sees_the_latest_event(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, *_NEEDS)
        ch = await LedgerChannel.create(backend, asset)
        await ch.fund((10, 20))
        adj = backend.adjudicator(ch.a)
        await adj.register(ch.req(ch.signed(ch.state(1, (15, 15))), 0))
        await adj.register(ch.req(ch.signed(ch.state(4, (20, 10))), 0))
        sub = await backend.adjudicator(ch.b).subscribe(ch.params)
        try:
            ev = await next_event(sub)
            assert isinstance(ev, RegisteredEvent) and ev.version == 4
        finally:
            await sub.close()

    async def test_closing_a_subscription_ends_a_pending_next(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, *_NEEDS)
        ch = await LedgerChannel.create(backend, asset)
        sub = await backend.adjudicator(ch.a).subscribe(ch.params)
        pending = asyncio.create_task(sub.next())
        await asyncio.sleep(0.05)
        assert not pending.done()  # nothing happened on this channel yet
        await sub.close()
        assert await asyncio.wait_for(pending, 10) is None
        assert [ev async for ev in sub] == []

    async def test_withdrawal_waits_for_the_timeout_then_pays_the_registered_outcome(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, *_NEEDS)
        ch = await LedgerChannel.create(backend, asset)
        await ch.fund((10, 20))
        v1 = ch.signed(ch.state(1, (25, 5)))
        adj_a, adj_b = backend.adjudicator(ch.a), backend.adjudicator(ch.b)
        sub = await adj_b.subscribe(ch.params)
        try:
            await adj_a.register(ch.req(v1, 0))
            with pytest.raises(ChainError):
                await adj_a.withdraw(ch.req(v1, 0))  # the refutation window is still open
            await backend.advance_time(CHALLENGE + 1)
            await adj_a.withdraw(ch.req(v1, 0))
            await adj_b.withdraw(ch.req(v1, 1))
            assert await ch.balances() == (FUNDS - 10 + 25, FUNDS - 20 + 5)
            events = [await next_event(sub), await next_event(sub)]
            assert isinstance(events[0], RegisteredEvent)
            assert isinstance(events[1], ConcludedEvent) and events[1].version == 1
            # Withdrawing again is harmless and pays nothing more.
            await adj_a.withdraw(ch.req(v1, 0))
            assert await ch.balances() == (FUNDS - 10 + 25, FUNDS - 20 + 5)
        finally:
            await sub.close()

    async def test_a_final_state_concludes_at_once(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, *_NEEDS)
        ch = await LedgerChannel.create(backend, asset)
        await ch.fund((10, 20))
        final = ch.signed(ch.state(3, (1, 29), final=True))
        await backend.adjudicator(ch.a).withdraw(ch.req(final, 0))
        await backend.adjudicator(ch.b).withdraw(ch.req(final, 1, secondary=True))
        assert await ch.balances() == (FUNDS - 9, FUNDS + 9)

    async def test_progress_force_executes_or_is_not_supported(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, *_NEEDS)
        app = backend.payment_app_id()
        if "apps" not in backend.capabilities or app is None:
            ch = await LedgerChannel.create(backend, asset)
            v1 = ch.signed(ch.state(1, (10, 20)))
            v2 = ch.state(2, (5, 25))
            with pytest.raises(NotSupportedError):
                await backend.adjudicator(ch.a).progress(
                    ch.req(v1, 0), v2, backend.sign_state(ch.a, v2)
                )
            return
        ch = await LedgerChannel.create(backend, asset, app=app)
        await ch.fund((10, 20))
        v1 = ch.signed(ch.state(1, (10, 20)))
        adj = backend.adjudicator(ch.a)
        sub = await backend.adjudicator(ch.b).subscribe(ch.params)
        try:
            await adj.register(ch.req(v1, 0))
            assert isinstance(await next_event(sub), RegisteredEvent)
            await backend.advance_time(CHALLENGE + 1)  # progress starts after the window
            v2 = ch.state(2, (4, 26))  # the payment app: the actor (0) pays, never gains
            await adj.progress(ch.req(v1, 0), v2, backend.sign_state(ch.a, v2))
            ev = await next_event(sub)
            assert isinstance(ev, ProgressedEvent)
            assert (ev.version, ev.actor_idx) == (2, 0)
            await backend.advance_time(CHALLENGE + 1)
            progressed = ch.signed(v2, by=(0,))
            await adj.withdraw(ch.req(progressed, 0))
            await backend.adjudicator(ch.b).withdraw(ch.req(progressed, 1))
            assert await ch.balances() == (FUNDS - 6, FUNDS + 6)
        finally:
            await sub.close()
