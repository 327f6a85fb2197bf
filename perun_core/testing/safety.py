"""Fund-safety scenarios every chain backend runs: each is a way an honest party lost or
locked funds, or a channel got stuck, that the client now rules out.

Use it like :class:`~perun_core.testing.dispute.DisputeConformance`: subclass
:class:`FundSafetyConformance` and provide the ``backend`` (with ``faucet``, ``balances`` and
``time_travel``), ``parties`` and ``asset`` fixtures. The scenarios build their own parties
on a :class:`~perun_core.testing.faults.FaultyBus` over ``parties.backend``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from perun_core.channel.allocation import Allocation
from perun_core.channel.phase import Phase
from perun_core.client import ClientConfig, LedgerChannelProposal
from perun_core.errors import (
    InvalidFundingAgreementError,
    InvalidSignatureError,
    PeerRejectedError,
    PerunError,
    PhaseTransitionError,
    RejectCode,
)
from perun_core.interfaces.adjudicator import (
    AdjudicatorEvent,
    AdjudicatorReq,
    ConcludedEvent,
    RegisteredEvent,
)
from perun_core.interfaces.funder import Funder, FundingRequest
from perun_core.persistence.memory import MemoryPersister
from perun_core.testing.faults import FailingPersister, FaultyBus
from perun_core.testing.parties import Party, PartyFactory, open_channel
from perun_core.testing.waiting import until
from perun_core.wire import messages as wire

CHALLENGE = 60
QUICK = ClientConfig(update_timeout=0.5, proposal_timeout=5, sync_timeout=2)


def _from(party: Party, kind: type[wire.Message]) -> Any:
    return lambda e: e.sender == party.address and isinstance(e.msg, kind)


class FundSafetyConformance:
    """Regression scenarios for lost or locked funds and stuck channels."""

    @asynccontextmanager
    async def _world(self, parties: PartyFactory) -> AsyncIterator[tuple[PartyFactory, FaultyBus]]:
        bus = FaultyBus()
        factory = PartyFactory(parties.backend, bus, funds=parties.funds)
        try:
            yield factory, bus
        finally:
            await factory.close()

    async def _balances(self, backend: Any, asset: Any, *ps: Party) -> list[int]:
        return [await backend.balance_of(p.account.address, asset) for p in ps]

    # --- A: the final update's acceptance is lost ------------------------------------------------

    async def test_lost_final_acceptance_still_withdraws(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        """Alice's final update is accepted but the answer never comes back and Bob goes
        silent; Bob concludes with the final state and withdraws. Alice withdraws too."""
        async with self._world(parties) as (f, bus):
            alice = await f.make("alice", config=QUICK)
            bob = await f.make("bob", config=QUICK)
            start = await self._balances(backend, asset, alice, bob)
            ch_a, ch_b = await open_channel(alice, bob, asset, (100, 100))
            await ch_a.send(30)
            # From the acceptance of the final state on, Bob says nothing more to Alice.
            bus.drop_all(lambda e: e.sender == bob.address and e.recipient == alice.address)
            settle_a = asyncio.ensure_future(ch_a.settle())
            await ch_b.wait_phase(Phase.FINAL, timeout=5)
            await ch_b.settle()
            await asyncio.wait_for(settle_a, 60)
            assert ch_a.phase == Phase.WITHDRAWN
            end = await self._balances(backend, asset, alice, bob)
            assert end[0] - start[0] == -30 and end[1] - start[1] == 30

    async def test_crash_during_settle_then_restart_withdraws(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        """Alice crashes right after sending her final update; Bob settles. Alice's
        restarted client withdraws her balance."""
        async with self._world(parties) as (f, bus):
            alice = await f.make("alice", config=QUICK)
            bob = await f.make("bob", config=QUICK)
            start = await self._balances(backend, asset, alice, bob)
            ch_a, ch_b = await open_channel(alice, bob, asset, (100, 100))
            await ch_b.send(10)
            bus.drop_all(lambda e: e.recipient == alice.address)  # Alice is gone
            settle_a = asyncio.ensure_future(ch_a.settle())
            await ch_b.wait_phase(Phase.FINAL, timeout=5)
            await alice.client.close()  # the crash: nothing more of this process runs
            settle_a.cancel()
            await asyncio.gather(settle_a, return_exceptions=True)
            await ch_b.settle()
            f.bus.rules.clear()  # type: ignore[attr-defined]
            alice2 = await f.make(
                "alice", config=QUICK, account=alice.account, persister=alice.persister
            )
            ch_a2 = await alice2.next_channel()
            if ch_a2.phase != Phase.WITHDRAWN:
                await asyncio.wait_for(ch_a2.settle(), 60)
            end = await self._balances(backend, asset, alice, bob)
            assert end[0] - start[0] == 10 and end[1] - start[1] == -10

    # --- B, C: sync terminates and its floor needs proof -----------------------------------------

    async def test_sync_after_restart_and_unsolicited_sync_terminate(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        async with self._world(parties) as (f, bus):
            alice = await f.make("alice", config=QUICK)
            bob = await f.make("bob", config=QUICK)
            ch_a, ch_b = await open_channel(alice, bob, asset, (100, 100))
            await ch_a.send(1)
            await alice.client.close()
            alice2 = await f.make(
                "alice", config=QUICK, account=alice.account, persister=alice.persister
            )
            ch_a2 = await alice2.next_channel()
            await until(
                lambda: not ch_a2.record().needs_sync, 10.0, what="the restart's sync round"
            )
            await asyncio.sleep(0.3)
            before = bus.count(wire.ChannelSync)
            await asyncio.sleep(0.3)
            assert bus.count(wire.ChannelSync) == before, "sync messages keep flowing"
            assert before <= 8  # a request (resent on connect) and its answer per side
            # One unsolicited view from the peer gets one answer, and that is all.
            view = wire.ChannelSync(ch_b.id, int(ch_b.phase), ch_b.transaction, None, 0)
            await bus.publish(wire.Envelope(bob.address, alice2.address, view))
            await asyncio.sleep(0.3)
            assert bus.count(wire.ChannelSync) == before + 2
            # Updates work in both directions right after.
            await ch_a2.send(2)
            await ch_b.send(1)
            assert ch_a2.state == ch_b.state

    async def test_hostile_version_floor_is_ignored(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        async with self._world(parties) as (f, bus):
            alice = await f.make("alice", config=QUICK)
            bob = await f.make("bob", config=QUICK)
            start = await self._balances(backend, asset, alice, bob)
            ch_a, ch_b = await open_channel(alice, bob, asset, (100, 100))
            await ch_a.send(5)
            evil = wire.ChannelSync(ch_b.id, int(ch_b.phase), ch_b.transaction, None, 2**64 - 1)
            await bus.publish(wire.Envelope(bob.address, alice.address, evil))
            await asyncio.sleep(0.2)
            assert ch_a.version_floor < 100
            await ch_a.send(5)
            assert ch_a.state == ch_b.state
            await ch_a.settle()
            await ch_b.settle()
            end = await self._balances(backend, asset, alice, bob)
            assert end[0] - start[0] == -10 and end[1] - start[1] == 10

    # --- D: an acceptance with a bad signature ---------------------------------------------------

    async def test_bad_acceptance_signature_does_not_wedge_the_channel(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        async with self._world(parties) as (f, bus):
            alice = await f.make("alice", config=QUICK)
            bob = await f.make("bob", config=QUICK)
            ch_a, ch_b = await open_channel(alice, bob, asset, (100, 100))
            other = backend.wallet().new_account()

            def forge(env: wire.Envelope) -> wire.Envelope:
                msg = env.msg
                assert isinstance(msg, wire.ChannelUpdateAcc)
                bad = backend.sign_state(other, ch_b.state)
                return replace(env, msg=replace(msg, sig=bad))

            bus.rewrite_once(_from(bob, wire.ChannelUpdateAcc), forge)
            with pytest.raises(InvalidSignatureError):
                await ch_a.send(7)
            # Bob enabled it; sync brings Alice to the same state, then both pay on.
            await until(
                lambda: ch_a.state == ch_b.state, 10.0, what="sync after the bad acceptance"
            )
            assert ch_a.phase == ch_b.phase == Phase.ACTING
            await ch_a.send(1)
            await ch_b.send(2)
            assert ch_a.state == ch_b.state
            assert ch_a.balances[0] == (100 - 7 - 1 + 2, 100 + 7 + 1 - 2)

    # --- E: the peer registers during the final update -------------------------------------------

    async def test_peer_registers_during_settle(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        async with self._world(parties) as (f, _bus):
            alice = await f.make("alice", config=QUICK)
            bob = await f.make("bob", config=QUICK)
            start = await self._balances(backend, asset, alice, bob)
            ch_a, ch_b = await open_channel(
                alice, bob, asset, (100, 100), challenge_duration=CHALLENGE
            )
            await ch_a.send(20)
            registered = asyncio.Event()

            async def register_instead(ch: Any, cur: Any, new: Any, responder: Any) -> None:
                await backend.adjudicator(bob.account).register(
                    AdjudicatorReq(ch.params, ch.transaction, ch.idx)
                )
                registered.set()
                responder.reject("registered instead")

            bob.client.on_update_proposal(register_instead)
            settle_a = asyncio.ensure_future(ch_a.settle())
            await asyncio.wait_for(registered.wait(), 10)
            await until(lambda: ch_a.phase >= Phase.REGISTERED, 10.0, what="Alice sees the dispute")
            await backend.advance_time(CHALLENGE + 1)
            await asyncio.wait_for(settle_a, 60)
            if ch_b.phase != Phase.WITHDRAWN:
                await asyncio.wait_for(ch_b.settle(), 60)
            end = await self._balances(backend, asset, alice, bob)
            assert end[0] - start[0] == -20 and end[1] - start[1] == 20

    # --- F: the peer registers v0 while we fund --------------------------------------------------

    async def test_peer_registers_during_funding(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        async with self._world(parties) as (f, _bus):
            alice = await f.make("alice", config=QUICK)
            bob_acct = backend.wallet().new_account()
            for a in backend.default_assets():
                await backend.faucet(bob_acct.address, a, f.funds)
            inner = backend.funder(bob_acct)
            adj = backend.adjudicator(bob_acct)

            class RegisterFirst(Funder):
                async def fund(self, request: FundingRequest) -> None:
                    await inner.fund(request)
                    v0 = ch_holder["tx"]
                    await adj.register(AdjudicatorReq(request.params, v0, request.idx))

            ch_holder: dict[str, Any] = {}

            bob = await f.make("bob", config=QUICK, account=bob_acct, funder=RegisterFirst())

            def on_tx(ch: Any, tx: Any) -> None:
                ch_holder.setdefault("tx", tx)

            bob.client.add_tx_listener(on_tx)
            start = await self._balances(backend, asset, alice, bob)
            try:
                ch_a, ch_b = await open_channel(
                    alice, bob, asset, (100, 100), challenge_duration=CHALLENGE
                )
            except PhaseTransitionError as e:  # pragma: no cover - the regression
                raise AssertionError(f"a registration raised a programming error: {e}") from e
            await until(lambda: ch_a.phase >= Phase.REGISTERED, 10.0, what="Alice sees the dispute")
            await backend.advance_time(CHALLENGE + 1)
            for ch in (ch_a, ch_b):
                if ch.phase != Phase.WITHDRAWN:
                    await asyncio.wait_for(ch.settle(), 60)
            end = await self._balances(backend, asset, alice, bob)
            assert end == start

    # --- G: a payment colliding with settle() ----------------------------------------------------

    async def test_payment_colliding_with_settle_stays_cooperative(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        async with self._world(parties) as (f, _bus):
            alice = await f.make("alice")
            bob = await f.make("bob")
            start = await self._balances(backend, asset, alice, bob)
            ch_a, ch_b = await open_channel(
                alice, bob, asset, (100, 100), challenge_duration=CHALLENGE
            )
            events: list[AdjudicatorEvent] = []
            ch_b.watch(lambda ch, ev: events.append(ev))
            # Alice (index 0, the collision winner) pays while Bob (index 1) settles.
            await asyncio.gather(ch_a.send(9), ch_b.settle())
            if ch_a.phase != Phase.WITHDRAWN:
                await asyncio.wait_for(ch_a.settle(), 30)
            assert not any(isinstance(e, RegisteredEvent) for e in events)
            end = await self._balances(backend, asset, alice, bob)
            assert end[0] - start[0] == -9 and end[1] - start[1] == 9

    # --- H: a funding agreement that credits our deposit to the peer -----------------------------

    async def test_funding_agreement_needs_explicit_consent(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        async with self._world(parties) as (f, _bus):
            alice = await f.make("alice", config=QUICK)
            bob = await f.make("bob", config=QUICK, accept=False)
            refused: list[BaseException] = []

            def naive(proposal: Any, responder: Any) -> None:
                # Checks what the channel credits it (nothing), not what it would deposit.
                assert proposal.my_balances == (0,) and proposal.my_deposits == (50,)
                try:
                    responder.accept()
                except InvalidFundingAgreementError as e:
                    refused.append(e)

            bob.client.on_proposal(naive)
            start = await self._balances(backend, asset, alice, bob)
            prop = LedgerChannelProposal(
                peer=bob.address,
                allocation=Allocation((asset,), ((100, 0),)),
                funding_agreement=((50, 50),),
            )
            with pytest.raises(PeerRejectedError):
                await alice.client.propose_channel(prop)
            assert refused and await self._balances(backend, asset, alice, bob) == start
            bob.client.on_proposal(lambda p, r: r.accept(deposits=p.my_deposits))
            await alice.client.propose_channel(prop)
            await bob.next_channel()

    # --- I: a rejected update that we signed -----------------------------------------------------

    async def test_rejected_signed_update_is_reported_as_enforceable(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        async with self._world(parties) as (f, _bus):
            alice = await f.make("alice", config=QUICK)
            bob = await f.make("bob", config=QUICK)
            ch_a, _ch_b = await open_channel(alice, bob, asset, (100, 100))
            bob.client.on_update_proposal(lambda ch, cur, new, r: r.reject("no thanks"))
            with pytest.raises(PeerRejectedError) as info:
                await ch_a.update(lambda s: s.transfer(1, 0, 10))
            assert info.value.may_be_enforced
            assert info.value.signed is not None and info.value.signed.version == 1
            assert ch_a.rejected_signed_updates == 1
            assert [s.version for s in ch_a.enforceable_states] == [1]
            bob.client.on_update_proposal(lambda ch, cur, new, r: r.accept())
            await ch_a.send(1)  # a newer fully signed state refutes the rejected one
            assert ch_a.enforceable_states == ()

    # --- J: the responder's write fails ----------------------------------------------------------

    async def test_responder_write_failure_sends_nothing_signed(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        async with self._world(parties) as (f, bus):
            alice = await f.make("alice", config=QUICK)
            store = FailingPersister(MemoryPersister())
            bob = await f.make("bob", config=QUICK, persister=store)
            ch_a, ch_b = await open_channel(alice, bob, asset, (100, 100))
            before_b = ch_b.state
            store.fail["enabled"] = 1
            with pytest.raises(PeerRejectedError) as info:
                await ch_a.send(5)
            assert info.value.code == RejectCode.REJECTED
            assert store.failed == ["enabled"]
            assert bus.count(wire.ChannelUpdateAcc, sender=bob.address) == 0
            assert ch_b.state == before_b and ch_a.state == before_b
            await until(lambda: ch_b.version_floor >= 1, 10.0, what="the burned version")
            await ch_a.send(5)  # both skip the burned version
            assert ch_a.state == ch_b.state and ch_a.state.version >= 2
            assert ch_a.balances[0] == (95, 105)
            restored = await store.restore_channel(ch_b.id)
            assert restored is not None and restored.current == ch_b.transaction

    # --- K: the channel's last event reaches events() --------------------------------------------

    async def test_concluded_event_reaches_events_after_withdrawal(
        self, backend: Any, parties: PartyFactory, asset: Any
    ) -> None:
        async with self._world(parties) as (f, _bus):
            alice = await f.make("alice")
            bob = await f.make("bob")
            ch_a, ch_b = await open_channel(alice, bob, asset, (100, 100))
            seen: list[AdjudicatorEvent] = []

            async def collect() -> None:
                async for ev in ch_a.events():
                    seen.append(ev)
                    if isinstance(ev, ConcludedEvent):
                        return

            reader = asyncio.ensure_future(collect())
            await asyncio.sleep(0)
            await ch_a.settle()
            await ch_b.settle()
            await asyncio.wait_for(reader, 30)
            assert isinstance(seen[-1], ConcludedEvent)


__all__ = ["FundSafetyConformance", "PerunError", "until"]
