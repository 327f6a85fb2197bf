"""Force-execution scenarios every chain backend with on-chain apps runs.

Use it like :class:`~perun_core.testing.dispute.DisputeConformance`: subclass
:class:`ForceExecutionConformance` and provide the ``backend`` (with ``faucet``, ``balances``
and ``time_travel``; ledger time moves only when the test moves it), ``parties`` and ``asset``
fixtures, and ``force_app``: the AppID of an app whose on-chain rule accepts every transition
the generic rules allow (the sim ledger: :class:`AcceptAllApp` registered in its ``apps``;
Ethereum: the deployed ``TrivialApp``). The scenarios install the matching off-chain rule
(:class:`AcceptAllApp`) in every party's client. The hostile cases with a refusing app use
the backend's payment app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from perun_core.channel.app import App, AppRegistry, PaymentApp
from perun_core.channel.params import Params
from perun_core.channel.phase import Phase
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Asset
from perun_core.client import Channel
from perun_core.errors import (
    AppTransitionError,
    ChannelNotReadyError,
    ForceExecutionClosedError,
    InvalidProgressError,
    NoAppError,
    SignatureRefusedError,
    TimeoutNotElapsedError,
    TotalsMismatchError,
)
from perun_core.interfaces.adjudicator import (
    AdjudicatorEvent,
    AdjudicatorReq,
    ConcludedEvent,
    ProgressedEvent,
)
from perun_core.testing.adjudicator import refused
from perun_core.testing.parties import Party, PartyFactory, open_channel
from perun_core.testing.waiting import until

CHALLENGE = 60


class AcceptAllApp(App):
    """An app whose rule accepts every transition (the off-chain twin of ``TrivialApp``)."""

    def __init__(self, app_id: bytes) -> None:
        self.app_id = app_id

    def valid_transition(self, params: Params, frm: State, to: State, actor_idx: int) -> None:
        """Accept."""


def _install(party: Party, app: App) -> None:
    if app.app_id not in party.client.apps:
        party.client.apps.register(app)


def _record(ch: Channel) -> list[AdjudicatorEvent]:
    events: list[AdjudicatorEvent] = []
    ch.watch(lambda c, ev: events.append(ev))
    return events


def _phase(ch: Channel) -> Phase:
    """The phase (a call: type checkers would narrow ``ch.phase`` across awaits)."""
    return ch.phase


def _count(events: list[AdjudicatorEvent], n: int) -> Callable[[], bool]:
    return lambda: len(events) >= n


def _kinds(events: list[AdjudicatorEvent]) -> list[tuple[str, int]]:
    return [(type(e).__name__, e.version) for e in events]


class ForceExecutionConformance:
    """Force updates of app channels on the ledger, honest and hostile."""

    async def _pair(
        self, parties: PartyFactory, asset: Asset, app: bytes | None, balances: tuple[int, int]
    ) -> tuple[Party, Party, Channel, Channel]:
        paul = await parties.make("paul")
        paula = await parties.make("paula")
        if app is not None and app != parties.backend.payment_app_id():
            for p in (paul, paula):
                _install(p, AcceptAllApp(app))
        ch_paul, ch_paula = await open_channel(
            paul, paula, asset, balances, challenge_duration=CHALLENGE, app=app
        )
        return paul, paula, ch_paul, ch_paula

    async def _registered(self, ch_paul: Channel, ch_paula: Channel) -> int:
        """Paul registers the channel's state; both see it. Returns its version."""
        await ch_paul.register()
        await ch_paula.wait_phase(Phase.REGISTERED, timeout=10)
        assert _phase(ch_paul) == Phase.REGISTERED
        return ch_paul.state.version

    async def test_app_progression(
        self, backend: Any, parties: PartyFactory, asset: Any, force_app: bytes
    ) -> None:
        """Paul and Paula force the app channel forward in turns; settling pays the last
        forced state, and only after its force-execution window."""
        funds = parties.funds
        paul, paula, ch_paul, ch_paula = await self._pair(parties, asset, force_app, (99, 1))
        ev_paul, ev_paula = _record(ch_paul), _record(ch_paula)
        v = await self._registered(ch_paul, ch_paula)
        await backend.advance_time(CHALLENGE + 1)  # the refutation window is over
        forced = await ch_paul.force_update(lambda s: s.transfer(0, 1, 49))
        assert (forced.version, forced.balances[0]) == (v + 1, (50, 50))
        assert ch_paul.state == forced and _phase(ch_paul) == Phase.PROGRESSED
        await until(lambda: ch_paula.state == forced, 10, what="Paula adopts Paul's force update")
        assert _phase(ch_paula) == Phase.PROGRESSED
        await until(lambda: forced in paula.updates, 10, what="Paula's on_update")
        # Paula forces within the force-execution window: +10 for her.
        again = await ch_paula.force_update(lambda s: s.transfer(0, 1, 10))
        assert (again.version, again.balances[0]) == (v + 2, (40, 60))
        await until(lambda: ch_paul.state == again, 10, what="Paul adopts Paula's force update")
        for evs in (ev_paul, ev_paula):
            await until(_count(evs, 3), 10, what="the Progressed events")
            assert _kinds(evs) == [
                ("RegisteredEvent", v),
                ("ProgressedEvent", v + 1),
                ("ProgressedEvent", v + 2),
            ]
            assert [e.actor_idx for e in evs[1:] if isinstance(e, ProgressedEvent)] == [0, 1]
        # Concluding waits for the force-execution window: the ledger refuses it before ...
        req = AdjudicatorReq(ch_paul.params, Transaction.unsigned(again, 2), 0)
        await refused(backend.adjudicator(paul.account).withdraw(req), TimeoutNotElapsedError)
        # ... and settle() waits for it.
        settling = [asyncio.ensure_future(ch.settle()) for ch in (ch_paul, ch_paula)]
        await asyncio.sleep(0.3)
        assert not any(t.done() for t in settling)
        assert _phase(ch_paul) == Phase.PROGRESSED
        await backend.advance_time(CHALLENGE + 1)
        await asyncio.wait_for(asyncio.gather(*settling), 30)
        assert _phase(ch_paul) == _phase(ch_paula) == Phase.WITHDRAWN
        assert await backend.balance_of(paul.account.address, asset) == funds - 99 + 40
        assert await backend.balance_of(paula.account.address, asset) == funds - 1 + 60
        for evs in (ev_paul, ev_paula):
            await until(_count(evs, 4), 10, what="the Concluded event")
            assert isinstance(evs[-1], ConcludedEvent)
            assert evs[-1].version == v + 2

    async def test_force_update_preconditions(
        self, backend: Any, parties: PartyFactory, asset: Any, force_app: bytes
    ) -> None:
        """Not registered, refutation window open, window closed: typed errors, unchanged."""
        _paul, _paula, ch_paul, ch_paula = await self._pair(parties, asset, force_app, (10, 10))
        with pytest.raises(ChannelNotReadyError):
            await ch_paul.force_update(lambda s: s.transfer(0, 1, 1))
        assert _phase(ch_paul) == Phase.ACTING
        v = await self._registered(ch_paul, ch_paula)
        before = ch_paul.state
        with pytest.raises(TimeoutNotElapsedError):
            await ch_paul.force_update(lambda s: s.transfer(0, 1, 1))
        assert _phase(ch_paul) == Phase.REGISTERED and ch_paul.state == before
        await backend.advance_time(CHALLENGE + 1)
        # The update rules hold for forced states too: no money from nowhere.
        with pytest.raises(TotalsMismatchError):
            await ch_paul.force_update(
                lambda s: s.replace(allocation=s.allocation.with_balances(((10, 11),)))
            )
        done = await ch_paul.force_update(lambda s: s.transfer(0, 1, 1))
        assert done.version == v + 1
        await backend.advance_time(CHALLENGE + 1)  # the force-execution window ends
        with pytest.raises(ForceExecutionClosedError):
            await ch_paula.force_update(lambda s: s.transfer(1, 0, 1))
        await asyncio.gather(ch_paul.settle(), ch_paula.settle())

    async def test_force_update_on_a_channel_without_app(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        _paul, _paula, ch_paul, ch_paula = await self._pair(parties, asset, None, (10, 10))
        await self._registered(ch_paul, ch_paula)
        await backend.advance_time(CHALLENGE + 1)
        with pytest.raises(NoAppError):
            await ch_paul.force_update(lambda s: s.transfer(0, 1, 1))
        assert _phase(ch_paul) in (Phase.REGISTERED, Phase.WITHDRAWING, Phase.WITHDRAWN)
        await asyncio.gather(ch_paul.settle(), ch_paula.settle())

    async def test_force_update_the_app_refuses(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        """The payment app refuses the actor's gain: typed error before anything is sent."""
        pay = backend.payment_app_id()
        if pay is None:
            pytest.skip("the backend has no payment app")
        funds = parties.funds
        paul, paula, ch_paul, ch_paula = await self._pair(parties, asset, pay, (30, 30))
        events = _record(ch_paula)
        v = await self._registered(ch_paul, ch_paula)
        await backend.advance_time(CHALLENGE + 1)
        before = ch_paul.state
        with pytest.raises(AppTransitionError):
            await ch_paul.force_update(lambda s: s.transfer(1, 0, 5))  # Paul takes 5
        assert _phase(ch_paul) == Phase.REGISTERED and ch_paul.state == before
        # Nothing reached the ledger: the next version is still free for a valid update.
        forced = await ch_paul.force_update(lambda s: s.transfer(0, 1, 5))
        assert forced.version == v + 1
        await until(lambda: len(events) >= 2, 10, what="Paula's Progressed event")
        assert _kinds(events) == [("RegisteredEvent", v), ("ProgressedEvent", v + 1)]
        await backend.advance_time(CHALLENGE + 1)
        await asyncio.gather(ch_paul.settle(), ch_paula.settle())
        assert await backend.balance_of(paul.account.address, asset) == funds - 5
        assert await backend.balance_of(paula.account.address, asset) == funds + 5

    async def test_a_force_update_the_ledger_refuses_restores_the_phase(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        """Paul's client runs a laxer rule than the ledger's app: the ledger refuses, the
        caller gets the ledger's typed error and the channel its previous phase."""
        pay = backend.payment_app_id()
        if pay is None:
            pytest.skip("the backend has no payment app")
        paul, _paula, ch_paul, ch_paula = await self._pair(parties, asset, pay, (30, 30))
        lax = AppRegistry()
        lax.register(AcceptAllApp(pay))
        paul.client.apps = lax
        await self._registered(ch_paul, ch_paula)
        await backend.advance_time(CHALLENGE + 1)
        before = ch_paul.state
        await refused(ch_paul.force_update(lambda s: s.transfer(1, 0, 5)), InvalidProgressError)
        assert _phase(ch_paul) == Phase.REGISTERED and ch_paul.state == before
        forced = await ch_paul.force_update(lambda s: s.transfer(0, 1, 2))
        await refused(ch_paul.force_update(lambda s: s.transfer(1, 0, 9)), InvalidProgressError)
        assert _phase(ch_paul) == Phase.PROGRESSED and ch_paul.state == forced
        paul.client.apps = AppRegistry()
        paul.client.apps.register(PaymentApp(pay))
        await backend.advance_time(CHALLENGE + 1)
        await asyncio.gather(ch_paul.settle(), ch_paula.settle())

    async def test_a_bogus_progress_by_the_peer_leaves_us_unharmed(
        self, backend: Any, parties: PartyFactory, asset: Any, force_app: bytes
    ) -> None:
        """Paula sends the ledger transitions it must refuse; Paul's channel is unchanged
        and settles with what it holds."""
        funds = parties.funds
        paul, paula, ch_paul, ch_paula = await self._pair(parties, asset, force_app, (50, 50))
        await ch_paula.send(10)
        events = _record(ch_paul)
        v = await self._registered(ch_paul, ch_paula)
        await backend.advance_time(CHALLENGE + 1)
        reg = ch_paul.transaction
        assert reg is not None
        adj = backend.adjudicator(paula.account)
        req = AdjudicatorReq(ch_paula.params, reg, 1)
        grab = reg.state.replace(
            version=v + 1, allocation=reg.state.allocation.with_balances(((0, 200),))
        )
        await refused(
            adj.progress(req, grab, backend.sign_state(paula.account, grab)), InvalidProgressError
        )
        take = reg.state.transfer(0, 1, 60).replace(version=v + 1)
        # Signed by Paula, claimed as Paul's move.
        await refused(
            adj.progress(
                AdjudicatorReq(ch_paula.params, reg, 0),
                take,
                backend.sign_state(paula.account, take),
            ),
            SignatureRefusedError,
        )
        await asyncio.sleep(0.2)
        assert _kinds(events) == [("RegisteredEvent", v)]
        assert _phase(ch_paul) == Phase.REGISTERED and ch_paul.state == reg.state
        await backend.advance_time(CHALLENGE + 1)  # past the 2x window of an app channel
        await asyncio.gather(ch_paul.settle(), ch_paula.settle())
        assert await backend.balance_of(paul.account.address, asset) == funds + 10
        assert await backend.balance_of(paula.account.address, asset) == funds - 10


__all__ = ["AcceptAllApp", "ForceExecutionConformance"]
