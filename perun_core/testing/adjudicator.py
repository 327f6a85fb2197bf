"""The adjudicator conformance suite: registration, timeouts, events, conclusion, withdrawal
and force-execution of an :class:`~perun_core.interfaces.Adjudicator`.

Every ledger refusal must be the :class:`~perun_core.errors.ChainError` leaf of the rule that
failed (:class:`~perun_core.errors.StaleStateError`,
:class:`~perun_core.errors.TimeoutNotElapsedError`, ...); backends may raise subclasses of
those leaves but not a more general or a sibling error (see :func:`refused`).

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
from collections.abc import Awaitable

import pytest

from perun_core import errors
from perun_core.channel.state import Transaction
from perun_core.channel.types import Asset
from perun_core.errors import (
    ChainError,
    ForceExecutionClosedError,
    InvalidProgressError,
    InvalidSignatureError,
    NotRegisteredError,
    NotSupportedError,
    RefutationClosedError,
    SignatureRefusedError,
    StaleStateError,
    StateMismatchError,
    TimeoutNotElapsedError,
)
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


def core_error_type(e: BaseException) -> type[BaseException]:
    """The most specific class of :mod:`perun_core.errors` that ``e`` is an instance of
    (backends may refine a core leaf with a subclass of their own)."""
    for cls in type(e).__mro__:
        core: object = getattr(errors, cls.__name__, None)
        if core is cls and isinstance(core, type) and issubclass(core, BaseException):
            return core
    return type(e)


async def refused(op: Awaitable[object], error: type[ChainError]) -> ChainError:
    """Await ``op``, which the ledger must refuse with exactly the leaf ``error``.

    Returns:
        The error, for checks of its attributes.
    """
    with pytest.raises(ChainError) as ei:
        await op
    got = core_error_type(ei.value)
    assert got is error, f"expected {error.__name__}, got {got.__name__}: {ei.value}"
    assert isinstance(ei.value.reason, str) and ei.value.reason
    return ei.value


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
        await refused(adj.register(ch.req(v1, 0)), StaleStateError)
        same_version = ch.signed(ch.state(2, (15, 15)))
        await refused(adj.register(ch.req(same_version, 0)), StaleStateError)
        half = ch.signed(ch.state(3, (0, 30)), by=(0,))
        with pytest.raises(InvalidSignatureError):
            await adj.register(ch.req(half, 0))  # not signed by every participant: not sent

    async def test_a_forged_signature_is_refused_by_the_ledger(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, *_NEEDS)
        ch = await LedgerChannel.create(backend, asset)
        await ch.fund((10, 20))
        v1 = ch.state(1, (30, 0))
        forged = Transaction(v1, (backend.sign_state(ch.a, v1), backend.sign_state(ch.a, v1)))
        err = await refused(
            backend.adjudicator(ch.a).register(ch.req(forged, 0)), SignatureRefusedError
        )
        assert isinstance(err, errors.SignatureError)
        # Nothing was registered: another state of the same version still registers.
        await backend.adjudicator(ch.b).register(ch.req(ch.signed(ch.state(1, (10, 20))), 1))

    async def test_refuting_after_the_window_and_concluding_early_are_refused(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, *_NEEDS)
        ch = await LedgerChannel.create(backend, asset)
        await ch.fund((10, 20))
        adj_a, adj_b = backend.adjudicator(ch.a), backend.adjudicator(ch.b)
        v1 = ch.signed(ch.state(1, (25, 5)))
        # Neither registered nor final: there is nothing to conclude.
        await refused(adj_a.withdraw(ch.req(v1, 0)), NotRegisteredError)
        await adj_a.register(ch.req(v1, 0))
        await refused(adj_a.withdraw(ch.req(v1, 0)), TimeoutNotElapsedError)
        await backend.advance_time(CHALLENGE + 1)
        await refused(
            adj_b.register(ch.req(ch.signed(ch.state(2, (5, 25))), 1)), RefutationClosedError
        )
        # A state other than the registered one cannot conclude the channel.
        other = ch.signed(ch.state(1, (5, 25)))
        await refused(adj_b.withdraw(ch.req(other, 1)), StateMismatchError)
        assert await ch.balances() == (FUNDS - 10, FUNDS - 20)  # nothing was paid
        await adj_b.withdraw(ch.req(v1, 1))
        await adj_a.withdraw(ch.req(v1, 0))
        assert await ch.balances() == (FUNDS - 10 + 25, FUNDS - 20 + 5)
        # Concluded: refuting is over for good, even with a newer fully signed state.
        await refused(
            adj_b.register(ch.req(ch.signed(ch.state(9, (0, 30))), 1)), RefutationClosedError
        )

    async def test_a_concluded_channel_pays_out_whatever_state_the_request_carries(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, *_NEEDS)
        ch = await LedgerChannel.create(backend, asset)
        await ch.fund((10, 20))
        adj_a, adj_b = backend.adjudicator(ch.a), backend.adjudicator(ch.b)
        v1, v2 = ch.signed(ch.state(1, (25, 5))), ch.signed(ch.state(2, (7, 23)))
        await adj_a.register(ch.req(v1, 0))
        await adj_b.register(ch.req(v2, 1))  # refuted
        await backend.advance_time(CHALLENGE + 1)
        await adj_b.withdraw(ch.req(v2, 1))  # concludes with v2
        # The outcome is fixed: A's withdrawal with its older state pays v2's outcome (7),
        # not v1's (25), and is not refused ...
        await adj_a.withdraw(ch.req(v1, 0))
        assert await ch.balances() == (FUNDS - 10 + 7, FUNDS - 20 + 23)
        # ... nor is one with a final state that never reached the ledger, nor a repeat.
        final = ch.signed(ch.state(5, (30, 0), final=True))
        await adj_a.withdraw(ch.req(final, 0))
        await adj_a.withdraw(ch.req(final, 0, secondary=True))
        await adj_b.withdraw(ch.req(v1, 1))
        assert await ch.balances() == (FUNDS - 10 + 7, FUNDS - 20 + 23)

    async def test_a_final_state_concluded_by_the_peer_with_another_final_state(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, *_NEEDS)
        ch = await LedgerChannel.create(backend, asset)
        await ch.fund((10, 20))
        f4 = ch.signed(ch.state(4, (12, 18), final=True))
        f5 = ch.signed(ch.state(5, (2, 28), final=True))
        await backend.adjudicator(ch.b).withdraw(ch.req(f5, 1))
        # A holds only the older final state (say, restored from an old backup).
        await backend.adjudicator(ch.a).withdraw(ch.req(f4, 0))
        assert await ch.balances() == (FUNDS - 8, FUNDS + 8)

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
            # The refutation window is still open.
            await refused(adj_a.withdraw(ch.req(v1, 0)), TimeoutNotElapsedError)
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
            v2 = ch.state(2, (4, 26))  # the payment app: the actor (0) pays, never gains
            sig2 = backend.sign_state(ch.a, v2)
            await refused(adj.progress(ch.req(v1, 0), v2, sig2), TimeoutNotElapsedError)
            await backend.advance_time(CHALLENGE + 1)  # progress starts after the window
            grab = ch.state(2, (20, 10))  # the actor gains: the app refuses
            await refused(
                adj.progress(ch.req(v1, 0), grab, backend.sign_state(ch.a, grab)),
                InvalidProgressError,
            )
            skip = ch.state(3, (4, 26))
            await refused(
                adj.progress(ch.req(v1, 0), skip, backend.sign_state(ch.a, skip)),
                InvalidProgressError,
            )
            await refused(
                adj.progress(ch.req(v1, 0), v2, backend.sign_state(ch.b, v2)),
                SignatureRefusedError,
            )
            not_registered = ch.signed(ch.state(1, (11, 19)))
            await refused(adj.progress(ch.req(not_registered, 0), v2, sig2), StateMismatchError)
            await adj.progress(ch.req(v1, 0), v2, sig2)
            ev = await next_event(sub)
            assert isinstance(ev, ProgressedEvent)
            assert (ev.version, ev.actor_idx) == (2, 0)
            v3 = ch.state(3, (4, 26))
            # Only after the force-execution window can the progressed state conclude ...
            progressed = ch.signed(v2, by=(0,))
            await refused(adj.withdraw(ch.req(progressed, 0)), TimeoutNotElapsedError)
            await backend.advance_time(CHALLENGE + 1)
            # ... and then force-execution is over.
            await refused(
                adj.progress(ch.req(progressed, 0), v3, backend.sign_state(ch.a, v3)),
                ForceExecutionClosedError,
            )
            await adj.withdraw(ch.req(progressed, 0))
            await backend.adjudicator(ch.b).withdraw(ch.req(progressed, 1))
            assert await ch.balances() == (FUNDS - 6, FUNDS + 6)
            await refused(
                adj.progress(ch.req(progressed, 0), v3, backend.sign_state(ch.a, v3)),
                ForceExecutionClosedError,
            )
        finally:
            await sub.close()
