"""Sub-channel scenarios every chain backend with the ``sub_channels`` capability runs.

Subclass :class:`SubChannelConformance` and provide the ``backend`` (with ``faucet``,
``balances`` and ``time_travel``), ``parties`` and ``asset`` fixtures, as for
:class:`~perun_core.testing.dispute.DisputeConformance`. Ledger time is moved with
``backend.advance_time``; nothing sleeps out a challenge duration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from perun_core.channel.allocation import Allocation
from perun_core.channel.phase import Phase
from perun_core.channel.state import SignedState, State
from perun_core.client import Channel, ClientConfig
from perun_core.errors import (
    ChannelFundingError,
    InsufficientFundsError,
    LockedFundsChangedError,
    PeerRejectedError,
    RequestTimedOutError,
    StateMismatchError,
    SubChannelsPresentError,
    TimeoutNotElapsedError,
)
from perun_core.interfaces.adjudicator import (
    AdjudicatorEvent,
    AdjudicatorReq,
    RegisteredEvent,
)
from perun_core.testing.faults import FaultyBus
from perun_core.testing.parties import Party, PartyFactory, open_channel
from perun_core.testing.waiting import until
from perun_core.wire import messages as wire

CHALLENGE = 60
HOSTILE_CFG = ClientConfig(update_timeout=2, proposal_timeout=5)
CHEATER = ClientConfig(watch=False, auto_settle=False, update_timeout=5, proposal_timeout=5)


def _free(ch: Channel) -> tuple[int, ...]:
    return ch.balances[0]


def _locked(ch: Channel) -> dict[bytes, tuple[int, ...]]:
    return {sa.id: sa.balances for sa in ch.state.allocation.locked}


async def _open_sub(
    a: Channel, b_party: Party, balances: tuple[int, int], **kw: Any
) -> tuple[Channel, Channel]:
    sub_a = await a.propose_sub_channel([list(balances)], **kw)
    sub_b = await b_party.next_channel()
    while sub_b.id != sub_a.id:  # skip channels announced to b as a proposer
        sub_b = await b_party.next_channel()
    assert sub_b.parent == a.id
    await sub_b.wait_phase(Phase.ACTING, timeout=5)
    return sub_a, sub_b


async def _withdrawn(x: Channel, y: Channel) -> None:
    await until(lambda: Phase.WITHDRAWN == x.phase == y.phase)


async def _unlocked(parent: Channel, sub_id: bytes) -> None:
    await until(lambda: sub_id not in _locked(parent))


class SubChannelConformance:
    """Sub-channels: funding, nesting, settlement into the parent, disputes of the tree."""

    async def _check_both(self, x: Channel, y: Channel, free: tuple[int, int], locked: int) -> None:
        """Both ends agree on the free balances and on how many sub-channels are locked."""
        await until(lambda: x.state == y.state)
        assert _free(x) == _free(y) == free
        assert len(_locked(x)) == locked

    async def test_sub_channels_nested_two_deep_settle_step_by_step(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        susie = await parties.make("susie")
        tim = await parties.make("tim")
        funds = parties.funds
        led_s, led_t = await open_channel(susie, tim, asset, (100, 100))
        # Two sub-channels of the ledger channel, proposed by either party.
        sub1_s, sub1_t = await _open_sub(led_s, tim, (10, 10))
        await self._check_both(led_s, led_t, (90, 90), 1)
        assert _locked(led_s) == {sub1_s.id: (20,)}
        sub2_t, sub2_s = await _open_sub(led_t, susie, (5, 5))
        await self._check_both(led_s, led_t, (85, 85), 2)
        assert _locked(led_s)[sub2_s.id] == (10,)
        # Three payment-app sub-sub-channels under sub-channel 1.
        pay = susie.client.backend.payment_app_id()
        subsubs = []
        for amounts in ((3, 3), (2, 2), (1, 1)):
            subsubs.append(await _open_sub(sub1_s, tim, amounts, app=pay))
        await self._check_both(sub1_s, sub1_t, (4, 4), 3)
        assert sum(_locked(sub1_s)[x.id][0] for x, _ in subsubs) == 12
        assert _free(led_s) == (85, 85)  # the ledger channel did not move
        # One transfer in each channel of the tree, each independent of its parent.
        await led_s.send(7)
        await sub1_t.send(2)
        await sub2_s.send(1)
        for x_s, _x_t in subsubs:
            await x_s.send(1)
        assert _free(led_t) == (78, 92)
        assert _free(sub1_s) == (6, 2)
        # A parent with live sub-channels cannot settle cooperatively.
        with pytest.raises(SubChannelsPresentError):
            await sub1_s.settle()
        with pytest.raises(SubChannelsPresentError):
            await led_t.settle()
        # Settle the sub-sub-channels: each folds its final balances back into sub 1.
        for i, (x_s, x_t) in enumerate(subsubs):
            final_s = x_s.balances[0]
            before = _free(sub1_s)
            await x_t.settle() if i % 2 else await x_s.settle()
            await _withdrawn(x_s, x_t)
            await _unlocked(sub1_t, x_s.id)
            assert _free(sub1_s) == (before[0] + final_s[0], before[1] + final_s[1])
            assert x_s.id not in _locked(sub1_s)
        # sub-sub finals: (2, 4), (1, 3), (0, 2) on top of sub 1's free (6, 2)
        assert _free(sub1_s) == (6 + 3, 2 + 9) and not _locked(sub1_s)
        # Then the sub-channels, then the ledger channel.
        await sub1_s.settle()
        await sub2_t.settle()
        await until(lambda: Phase.WITHDRAWN == sub1_t.phase == sub2_s.phase)
        await self._check_both(led_s, led_t, (78 + 9 + 4, 92 + 11 + 6), 0)
        held = [await backend.balance_of(p.account.address, asset) for p in (susie, tim)]
        assert held == [funds - 100, funds - 100]
        await led_s.settle()
        await led_t.settle()
        after = [await backend.balance_of(p.account.address, asset) for p in (susie, tim)]
        assert after == [funds - 9, funds + 9]

    async def test_sub_channel_proposals_that_cannot_be_funded_are_refused(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        susie = await parties.make("susie")
        tim = await parties.make("tim")
        led_s, led_t = await open_channel(susie, tim, asset, (10, 5))
        with pytest.raises(InsufficientFundsError):
            await led_s.propose_sub_channel([[11, 0]])
        # The proposer's own balance suffices but the peer's free balance does not: the
        # peer's check refuses it with a typed answer, and nothing changes.
        tim.client.on_proposal(lambda p, r: r.reject("not now"))
        with pytest.raises(PeerRejectedError, match="not now"):
            await led_s.propose_sub_channel([[1, 1]])
        assert led_s.state == led_t.state and not led_s.state.allocation.locked
        assert led_s.state.version == 0

    async def test_stale_sub_state_registration_is_refuted_and_the_tree_settles(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        susie = await parties.make("susie", config=CHEATER)
        tim = await parties.make("tim", config=ClientConfig(auto_settle=False))
        funds = parties.funds
        led_s, led_t = await open_channel(
            susie, tim, asset, (100, 100), challenge_duration=CHALLENGE
        )
        sub_s, sub_t = await _open_sub(led_s, tim, (20, 20))
        stale_sub = sub_s.transaction
        assert stale_sub is not None and stale_sub.state.version == 0
        for _ in range(3):
            await sub_s.send(5)  # Susie pays Tim 15 in the sub-channel
        assert sub_t.balances[0] == (5, 35)
        events: list[AdjudicatorEvent] = []
        sub_t.watch(lambda ch, ev: events.append(ev))
        # Susie registers the current ledger state with the version-0 sub-channel state.
        led = led_s.transaction
        assert led is not None
        adj_s = backend.adjudicator(susie.account)
        stale = {sub_s.id: SignedState.from_tx(sub_s.params, stale_sub)}
        await adj_s.register(AdjudicatorReq(led_s.params, led, 0), stale)
        # Tim's watcher refutes with the current sub-channel version.
        await until(lambda: any(e.version == 3 for e in events if isinstance(e, RegisteredEvent)))
        assert isinstance(events[0], RegisteredEvent) and events[0].version == 0
        await backend.advance_time(CHALLENGE + 1)
        # Concluding with the old sub-channel state cannot pay its outcome: the ledger
        # refuses it (Ethereum) or concludes with the sub-channel state it registered last.
        try:
            await adj_s.withdraw(AdjudicatorReq(led_s.params, led, 0), stale)
        except StateMismatchError:
            assert await backend.balance_of(susie.account.address, asset) == funds - 100
        else:
            assert await backend.balance_of(susie.account.address, asset) == funds - 15
        await sub_t.settle()  # settling the sub-channel settles the whole tree
        assert sub_t.phase == Phase.WITHDRAWN
        await led_t.wait_phase(Phase.WITHDRAWN, timeout=10)
        await sub_s.settle()  # Susie, unaware of the dispute, settles the tree too
        assert led_s.phase == Phase.WITHDRAWN
        assert await backend.balance_of(tim.account.address, asset) == funds + 15
        assert await backend.balance_of(susie.account.address, asset) == funds - 15

    async def test_settling_a_sub_channel_with_a_silent_peer_disputes_the_tree(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        susie = await parties.make("susie", config=ClientConfig(update_timeout=0.5))
        tim = await parties.make("tim", config=ClientConfig(update_timeout=0.5))
        funds = parties.funds
        led_s, _led_t = await open_channel(
            susie, tim, asset, (50, 50), challenge_duration=CHALLENGE
        )
        sub_s, _sub_t = await _open_sub(led_s, tim, (10, 10))
        await sub_s.send(4)
        await tim.client.close()  # Tim vanishes
        settling = asyncio.ensure_future(sub_s.settle())
        on_ledger = (Phase.REGISTERED, Phase.WITHDRAWING)
        await until(lambda: led_s.phase in on_ledger, timeout=20)
        await backend.advance_time(CHALLENGE + 1)
        await asyncio.wait_for(settling, 20)
        assert sub_s.phase == Phase.WITHDRAWN and led_s.phase == Phase.WITHDRAWN
        assert await backend.balance_of(susie.account.address, asset) == funds - 4

    async def test_an_app_sub_channel_move_forced_after_a_dispute_is_paid(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        """Tim stops answering; Susie disputes the tree, forces her payment-app move in the
        sub-channel on the ledger after the refutation window, and the conclusion of the
        root pays the forced sub-channel state."""
        pay = backend.payment_app_id()
        if pay is None:
            pytest.skip("the backend has no payment app")
        susie = await parties.make("susie", config=ClientConfig(update_timeout=1))
        tim = await parties.make("tim", config=ClientConfig(update_timeout=1))
        funds = parties.funds
        led_s, led_t = await open_channel(susie, tim, asset, (50, 50), challenge_duration=CHALLENGE)
        sub_s, sub_t = await _open_sub(led_s, tim, (10, 10), app=pay)
        await sub_s.send(2)  # (8, 12)
        await sub_s.register()  # registers the whole tree from the ledger channel
        await until(lambda: sub_t.phase in (Phase.REGISTERED, Phase.WITHDRAWING), timeout=20)
        await backend.advance_time(CHALLENGE + 1)  # the refutation window ends
        await sub_s.force_update(lambda s: s.transfer(0, 1, 3))  # Susie pays Tim 3 more
        assert sub_s.phase == Phase.PROGRESSED and sub_s.balances[0] == (5, 15)
        await until(lambda: sub_t.state.balances[0] == (5, 15), timeout=20)
        await backend.advance_time(CHALLENGE + 1)  # the force-execution window ends
        await asyncio.wait_for(sub_s.settle(), 30)
        await led_t.wait_phase(Phase.WITHDRAWN, timeout=30)
        assert led_s.phase == Phase.WITHDRAWN
        assert await backend.balance_of(susie.account.address, asset) == funds - 5
        assert await backend.balance_of(tim.account.address, asset) == funds + 5

    async def test_a_tree_with_an_app_sub_channel_keeps_its_force_window(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        """Mallory registers the tree and tries to conclude the root as soon as its own
        refutation window is over: the ledger refuses until the app sub-channel's
        force-execution room has passed too, so Tim can still force his move."""
        pay = backend.payment_app_id()
        if pay is None:
            pytest.skip("the backend has no payment app")
        mallory = await parties.make("mallory", config=CHEATER)
        tim = await parties.make("tim", config=ClientConfig(auto_settle=False))
        led_m, _led_t = await open_channel(
            mallory, tim, asset, (50, 50), challenge_duration=CHALLENGE
        )
        sub_m, sub_t = await _open_sub(led_m, tim, (10, 10), app=pay)
        led, sub = led_m.transaction, sub_m.transaction
        assert led is not None and sub is not None
        adj = backend.adjudicator(mallory.account)
        subs = {sub_m.id: SignedState.from_tx(sub_m.params, sub)}
        await adj.register(AdjudicatorReq(led_m.params, led, 0), subs)
        await until(lambda: sub_t.phase == Phase.REGISTERED, timeout=20)
        await backend.advance_time(CHALLENGE + 1)  # the root's refutation window is over
        with pytest.raises(TimeoutNotElapsedError):
            await adj.withdraw(AdjudicatorReq(led_m.params, led, 0), subs)
        # Tim can still force a move in the room the ledger kept (the payment app lets the
        # actor pay: he pays Mallory 1), and the conclusion pays it.
        await sub_t.force_update(lambda s: s.transfer(1, 0, 1))
        await backend.advance_time(CHALLENGE + 1)
        await asyncio.wait_for(sub_t.settle(), 30)
        assert sub_t.phase == Phase.WITHDRAWN


class HostileSubChannelConformance:
    """Mallory, an insider with a real client, bends the parent updates that fund and
    settle a sub-channel (her client's messages are rewritten on the wire and signed again
    with her key). Alice's client refuses each with a typed answer and loses nothing.

    Needs the same fixtures as :class:`SubChannelConformance`; builds its parties on a
    :class:`~perun_core.testing.faults.FaultyBus`.
    """

    @staticmethod
    def _bend(
        bus: FaultyBus,
        mallory: Party,
        change: Callable[[State], State],
        when: Callable[[State], bool],
    ) -> None:
        """Rewrite Mallory's next parent update matching ``when`` (re-signed by her)."""
        backend = mallory.client.backend

        def pred(env: wire.Envelope) -> bool:
            msg = env.msg
            return (
                env.sender == mallory.address
                and isinstance(msg, wire.ChannelUpdate)
                and when(msg.state)
            )

        def rewrite(env: wire.Envelope) -> wire.Envelope:
            msg = env.msg
            assert isinstance(msg, wire.ChannelUpdate)
            bent = change(msg.state)
            sig = backend.sign_state(mallory.account, bent)
            return replace(env, msg=wire.ChannelUpdate(bent, msg.actor_idx, sig))

        bus.rewrite_once(pred, rewrite)

    async def _pair(self, parties: PartyFactory) -> tuple[PartyFactory, FaultyBus]:
        bus = FaultyBus()
        return PartyFactory(parties.backend, bus, funds=parties.funds), bus

    async def test_a_parent_payment_crossing_the_funding_update_does_not_stop_it(
        self, parties: PartyFactory, asset: Any
    ) -> None:
        """Not hostile, unlucky: Susie pays on the parent just as Tim's funding update for
        his new sub-channel is on the wire. The two cross (a collision, both versions
        burned); Susie's payment goes first and Tim's client funds the sub-channel again."""
        f, bus = await self._pair(parties)
        try:
            susie = await f.make("susie", config=HOSTILE_CFG)
            tim = await f.make("tim", config=HOSTILE_CFG)
            led_s, led_t = await open_channel(susie, tim, asset, (50, 50))
            held: list[wire.Envelope] = []
            payment: list[asyncio.Future[Any]] = []

            def hold_funding(env: wire.Envelope) -> wire.Envelope | None:
                msg = env.msg
                if (
                    not held
                    and env.sender == tim.address
                    and isinstance(msg, wire.ChannelUpdate)
                    and msg.state.allocation.locked
                ):
                    held.append(env)
                    payment.append(asyncio.ensure_future(led_s.send(5)))
                    return None
                if held and env.sender == susie.address and isinstance(msg, wire.ChannelUpdate):
                    # Susie's payment is out: now let Tim's funding update cross it.
                    asyncio.get_running_loop().call_soon(
                        lambda: asyncio.ensure_future(bus.deliver(held[0]))
                    )
                return env

            bus.rules.append(hold_funding)
            sub_t = await led_t.propose_sub_channel([[10, 10]])
            await asyncio.wait_for(asyncio.gather(*payment), 10)
            await until(lambda: led_s.state == led_t.state and bool(led_s.state.allocation.locked))
            assert led_s.balances[0] == (50 - 5 - 10, 50 + 5 - 10)
            assert _locked(led_s) == {sub_t.id: (20,)}
            assert sub_t.phase == Phase.ACTING
        finally:
            await f.close()

    async def test_a_lost_sub_channel_acceptance_is_resolved_by_sync(
        self, parties: PartyFactory, asset: Any
    ) -> None:
        """Tim's acceptance of a sub-channel payment is lost: Susie's update times out, the
        sub-channel syncs like any channel, and both go on from the same state."""
        f, bus = await self._pair(parties)
        try:
            susie = await f.make("susie", config=ClientConfig(update_timeout=0.5, sync_timeout=2))
            tim = await f.make("tim", config=ClientConfig(update_timeout=0.5, sync_timeout=2))
            led_s, _led_t = await open_channel(susie, tim, asset, (50, 50))
            sub_s, sub_t = await _open_sub(led_s, tim, (10, 10))

            def sub_acc(env: wire.Envelope) -> bool:
                msg = env.msg
                return isinstance(msg, wire.ChannelUpdateAcc) and msg.channel_id == sub_s.id

            bus.drop_once(sub_acc)
            with pytest.raises(RequestTimedOutError):
                await sub_s.send(3)
            await until(lambda: sub_s.synced and sub_t.synced and sub_s.state == sub_t.state)
            assert sub_t.balances[0] == (7, 13)  # Tim had signed it: sync adopts it
            await sub_s.send(1)
            await until(lambda: sub_t.balances[0] == (6, 14))
        finally:
            await f.close()

    async def test_funding_that_takes_more_than_agreed_is_refused(
        self, parties: PartyFactory, asset: Any
    ) -> None:
        f, bus = await self._pair(parties)
        try:
            mallory = await f.make("mallory", config=HOSTILE_CFG)
            alice = await f.make("alice", config=HOSTILE_CFG)
            led_m, led_a = await open_channel(mallory, alice, asset, (50, 50))

            def take_more(st: State) -> State:
                bal = st.allocation.balances[0]
                lock = st.allocation.locked[-1]
                more = replace(lock, balances=(lock.balances[0] + 5,))
                alloc = replace(st.allocation, balances=((bal[0], bal[1] - 5),), locked=(more,))
                return replace(st, allocation=alloc)

            self._bend(bus, mallory, take_more, lambda st: bool(st.allocation.locked))
            with pytest.raises(ChannelFundingError) as info:
                await led_m.propose_sub_channel([[10, 10]])
            assert isinstance(info.value.__cause__, PeerRejectedError)
            # Alice refused: her ledger channel locks nothing and is still usable.
            assert not led_a.state.allocation.locked and led_a.balances[0] == (50, 50)
            await led_m.send(1)
            await until(lambda: led_a.balances[0] == (49, 51))
            assert any(isinstance(e, LockedFundsChangedError) for e in alice.errors)
        finally:
            await f.close()

    async def test_settlement_that_pays_mallory_more_is_refused_then_done_right(
        self, parties: PartyFactory, asset: Any
    ) -> None:
        f, bus = await self._pair(parties)
        try:
            mallory = await f.make("mallory", config=HOSTILE_CFG)
            alice = await f.make("alice", config=HOSTILE_CFG)
            led_m, led_a = await open_channel(mallory, alice, asset, (50, 50))
            sub_m, sub_a = await _open_sub(led_m, alice, (10, 10))
            await sub_m.send(4)  # Mallory pays Alice 4: the sub-channel ends (6, 14)

            def pay_mallory(st: State) -> State:
                bal = st.allocation.balances[0]
                alloc = replace(st.allocation, balances=((bal[0] + 8, bal[1] - 8),))
                return replace(st, allocation=alloc)

            # The fold back into the parent (the update that unlocks the sub-channel).
            self._bend(
                bus,
                mallory,
                pay_mallory,
                lambda st: st.channel_id == led_m.id and not st.allocation.locked,
            )
            await sub_m.update(lambda s: s.finalized())
            await until(lambda: bus.count(wire.ChannelUpdateRej, alice.address) >= 1)
            assert led_a.state.allocation.locked  # refused: the sub-channel is still locked
            assert sub_a.phase == Phase.FINAL
            # Mallory's client (honest code) tries again, this time unbent.
            await sub_m.settle()
            await until(lambda: sub_a.phase == Phase.WITHDRAWN)
            assert led_a.balances[0] == led_m.balances[0] == (40 + 6, 40 + 14)
        finally:
            await f.close()

    async def test_unlocking_a_live_sub_channel_is_refused(
        self, parties: PartyFactory, asset: Any
    ) -> None:
        f, bus = await self._pair(parties)
        try:
            mallory = await f.make("mallory", config=HOSTILE_CFG)
            alice = await f.make("alice", config=HOSTILE_CFG)
            led_m, led_a = await open_channel(mallory, alice, asset, (50, 50))
            sub_m, sub_a = await _open_sub(led_m, alice, (10, 10))

            def unlock(st: State) -> State:
                bal = st.allocation.balances[0]
                alloc = Allocation(st.allocation.assets, ((bal[0] + 20, bal[1]),))
                return replace(st, allocation=alloc)

            self._bend(bus, mallory, unlock, lambda st: st.channel_id == led_m.id)
            with pytest.raises(PeerRejectedError):
                await led_m.send(1)
            assert led_a.state.allocation.locked and led_a.balances[0] == (40, 40)
            await sub_m.send(2)  # the sub-channel is untouched
            await until(lambda: sub_a.balances[0] == (8, 12))
            # Alice's own client refuses the same change before signing anything.
            version = led_a.state.version
            with pytest.raises(LockedFundsChangedError):
                await led_a.update(unlock)
            assert led_a.state.version == version and led_a.state.allocation.locked
        finally:
            await f.close()
