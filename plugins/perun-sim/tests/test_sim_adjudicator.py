"""SimAdjudicator: cooperative and disputed settlement, as the client drives it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from perun_sim import PAYMENT_APP_ID, SimAccount, SimAdjudicator, SimBackend, SimClock, SimLedger
from perun_sim.api import LocalLedger
from sim_helpers import START, Chan, D

from perun_core.channel import Asset, Params, State, SubAlloc, Transaction
from perun_core.errors import (
    InvalidSignatureError,
    MissingSubStatesError,
    StateMismatchError,
    TimeoutNotElapsedError,
)
from perun_core.interfaces import AdjudicatorReq, ProgressedEvent, RegisteredEvent


async def funded(ledger: SimLedger, chan: Chan, balances: list[int], eth: Asset) -> None:
    for acc, amount in zip(chan.accounts, balances, strict=True):
        ledger.mint(acc.address, eth, amount)
        fid = chan.backend.funding_id(chan.id, acc.address)
        await ledger.deposit(acc.address, eth, fid, amount)


def req(chan: Chan, st, idx: int, *, secondary: bool = False, sigs=None) -> AdjudicatorReq:  # type: ignore[no-untyped-def]
    tx = Transaction(st, tuple(sigs) if sigs is not None else chan.sign(st))
    return AdjudicatorReq(chan.params, tx, idx, secondary)


async def test_cooperative_settlement_pays_the_final_balances(
    backend: SimBackend,
    ledger: SimLedger,
    chan: Chan,
    alice: SimAccount,
    bob: SimAccount,
    eth: Asset,
) -> None:
    await funded(ledger, chan, [100, 100], eth)
    final = chan.state(4, [[84, 116]], final=True)
    await backend.adjudicator(alice).withdraw(req(chan, final, 0))
    await backend.adjudicator(bob).withdraw(req(chan, final, 1, secondary=True))
    assert ledger.balance_of(alice.address, eth) == 84
    assert ledger.balance_of(bob.address, eth) == 116
    assert ledger.tx_count("conclude_final") == 1
    # idempotent: a re-run after a crash sends nothing
    await backend.adjudicator(alice).withdraw(req(chan, final, 0))
    assert ledger.tx_count("withdraw") == 2


async def test_secondary_waits_for_the_primary_conclusion(
    backend: SimBackend,
    ledger: SimLedger,
    chan: Chan,
    alice: SimAccount,
    bob: SimAccount,
    eth: Asset,
) -> None:
    await funded(ledger, chan, [10, 10], eth)
    final = chan.state(1, [[5, 15]], final=True)
    bob_task = asyncio.create_task(
        backend.adjudicator(bob).withdraw(req(chan, final, 1, secondary=True))
    )
    await asyncio.sleep(0)
    await backend.adjudicator(alice).withdraw(req(chan, final, 0))
    await asyncio.wait_for(bob_task, 1)
    assert ledger.tx_count("conclude_final") == 1
    assert ledger.balance_of(bob.address, eth) == 15


async def test_secondary_concludes_itself_when_the_primary_is_gone(
    backend: SimBackend, ledger: SimLedger, chan: Chan, bob: SimAccount, eth: Asset
) -> None:
    await funded(ledger, chan, [10, 10], eth)
    final = chan.state(1, [[5, 15]], final=True)
    await asyncio.wait_for(
        backend.adjudicator(bob).withdraw(req(chan, final, 1, secondary=True)), 1
    )
    assert ledger.balance_of(bob.address, eth) == 15


async def test_concurrent_conclusions_both_succeed(
    backend: SimBackend,
    ledger: SimLedger,
    make_chan,
    alice: SimAccount,
    bob: SimAccount,
    eth: Asset,
) -> None:  # type: ignore[no-untyped-def]
    slow = SimLedger(clock=SimClock.manual(START), latency=0.01)
    sb = SimBackend(slow)
    chan = make_chan()
    chan.backend = sb
    await funded(slow, chan, [10, 10], eth)
    final = chan.state(1, [[5, 15]], final=True)
    await asyncio.gather(
        sb.adjudicator(alice).withdraw(req(chan, final, 0)),
        sb.adjudicator(bob).withdraw(req(chan, final, 1)),
    )  # one conclude_final loses the race ("already concluded") and still succeeds
    assert slow.tx_count("conclude_final") == 1
    assert (slow.balance_of(alice.address, eth), slow.balance_of(bob.address, eth)) == (5, 15)


async def test_mallory_registers_a_stale_state_and_carol_refutes(
    backend: SimBackend,
    ledger: SimLedger,
    clock: SimClock,
    chan: Chan,
    alice: SimAccount,
    bob: SimAccount,
    eth: Asset,
) -> None:
    mallory, carol = alice, bob
    await funded(ledger, chan, [100, 1], eth)
    v0 = chan.state(0, [[100, 1]])
    v5 = chan.state(5, [[0, 101]])
    m_adj, c_adj = backend.adjudicator(mallory), backend.adjudicator(carol)
    events = await c_adj.subscribe(chan.params)

    await m_adj.register(req(chan, v0, 0))
    ev = await asyncio.wait_for(events.next(), 1)
    assert isinstance(ev, RegisteredEvent) and ev.version == 0
    await c_adj.register(req(chan, v5, 1))  # the watcher's refutation
    ev = await asyncio.wait_for(events.next(), 1)
    assert isinstance(ev, RegisteredEvent) and (ev.version, ev.state) == (5, v5)

    with pytest.raises(TimeoutNotElapsedError) as ei:
        await c_adj.withdraw(req(chan, v5, 1))
    assert ei.value.reason == "timeout not passed yet"
    waiter = asyncio.create_task(ev.timeout.wait())  # what the client does
    clock.advance(D)
    await asyncio.wait_for(waiter, 1)

    # Not concluded yet: the stale state cannot conclude the channel.
    with pytest.raises(StateMismatchError) as ei:
        await m_adj.withdraw(req(chan, v0, 0))
    assert type(ei.value) is StateMismatchError and ei.value.reason == "invalid channel state"
    assert ledger.tx_count("conclude") == 0
    await c_adj.withdraw(req(chan, v5, 1))
    # Concluded: the outcome is fixed, so withdrawing with any state pays the outcome.
    await m_adj.withdraw(req(chan, v0, 0))
    assert ledger.balance_of(carol.address, eth) == 101
    assert ledger.balance_of(mallory.address, eth) == 0
    assert ledger.tx_count("conclude") == 1
    await events.close()


async def test_register_needs_every_signature(
    backend: SimBackend, chan: Chan, alice: SimAccount
) -> None:
    st = chan.state(1, [[5, 5]])
    a_sig, _ = chan.sign(st)
    with pytest.raises(InvalidSignatureError):
        await backend.adjudicator(alice).register(req(chan, st, 0, sigs=[a_sig, None]))


async def test_register_and_settle_with_a_sub_channel(
    backend: SimBackend,
    ledger: SimLedger,
    clock: SimClock,
    make_chan,
    alice: SimAccount,
    bob: SimAccount,
    eth: Asset,
) -> None:  # type: ignore[no-untyped-def]
    root = make_chan(nonce=1)
    sub = make_chan(nonce=2, ledger_channel=False, app=PAYMENT_APP_ID)
    await funded(ledger, root, [100, 100], eth)
    sub_v0 = sub.state(0, [[10, 10]])
    sub_v3 = sub.state(3, [[4, 16]])
    root_st = root.state(2, [[90, 90]], locked=[SubAlloc(sub.id, (20,), (0, 1))])
    adj = backend.adjudicator(alice)
    with pytest.raises(MissingSubStatesError):
        await adj.register(req(root, root_st, 0))
    # Susie registers with the old sub state; Tim refutes with the current one
    await adj.register(req(root, root_st, 0), {sub.id: sub.signed(sub_v0)})
    await backend.adjudicator(bob).register(req(root, root_st, 1), {sub.id: sub.signed(sub_v3)})
    assert ledger.dispute(sub.id).version == 3  # type: ignore[union-attr]
    clock.advance(D)
    # The root's window is over, but the payment-app sub-channel keeps its force room.
    with pytest.raises(TimeoutNotElapsedError):
        await adj.withdraw(req(root, root_st, 0), {sub.id: sub.signed(sub_v0)})
    clock.advance(D)
    await adj.withdraw(req(root, root_st, 0), {sub.id: sub.signed(sub_v0)})
    await backend.adjudicator(bob).withdraw(req(root, root_st, 1, secondary=True))
    assert ledger.balance_of(alice.address, eth) == 94
    assert ledger.balance_of(bob.address, eth) == 106


async def test_force_update_through_the_adjudicator(
    backend: SimBackend,
    ledger: SimLedger,
    clock: SimClock,
    make_chan,
    alice: SimAccount,
    bob: SimAccount,
    eth: Asset,
) -> None:  # type: ignore[no-untyped-def]
    chan = make_chan(app=PAYMENT_APP_ID)
    await funded(ledger, chan, [99, 1], eth)
    v1 = chan.state(1, [[99, 1]])
    adj = backend.adjudicator(alice)
    sub = await backend.adjudicator(bob).subscribe(chan.params)
    await adj.register(req(chan, v1, 0))
    assert isinstance(await asyncio.wait_for(sub.next(), 1), RegisteredEvent)
    clock.advance(D)
    v2 = chan.state(2, [[50, 50]])
    await adj.progress(req(chan, v1, 0), v2, backend.sign_state(alice, v2))
    ev = await asyncio.wait_for(sub.next(), 1)
    assert isinstance(ev, ProgressedEvent) and (ev.version, ev.actor_idx) == (2, 0)
    await sub.close()
    # the progressed state is signed by Alice only; conclusion needs no signatures
    with pytest.raises(TimeoutNotElapsedError) as ei:
        await adj.withdraw(req(chan, v2, 0, sigs=[backend.sign_state(alice, v2), None]))
    assert ei.value.reason == "timeout not passed yet"
    assert ev.timeout.deadline == clock.now() + D
    clock.advance(D)
    await adj.withdraw(req(chan, v2, 0, sigs=[backend.sign_state(alice, v2), None]))
    await backend.adjudicator(bob).withdraw(req(chan, v2, 1, sigs=[None, None]))
    assert (ledger.balance_of(alice.address, eth), ledger.balance_of(bob.address, eth)) == (50, 50)


class _PeerConcludesFirst(LocalLedger):
    """A ledger on which the peer's conclusion (with ``peer_state``) lands just before ours."""

    def __init__(self, ledger: SimLedger, peer_state: State) -> None:
        super().__init__(ledger)
        self.peer_state = peer_state

    async def conclude(
        self, params: Params, state: State, sub_states: Sequence[State] = ()
    ) -> None:
        await self.ledger.conclude(params, self.peer_state)
        await self.ledger.conclude(params, state, sub_states)


async def test_losing_the_conclusion_race_to_another_state_still_pays_out(
    ledger: SimLedger, clock: SimClock, make_chan, alice: SimAccount, eth: Asset
) -> None:  # type: ignore[no-untyped-def]
    chan, other = make_chan(nonce=1), make_chan(nonce=2)
    await funded(ledger, chan, [10, 20], eth)
    v1, v2 = chan.state(1, [[25, 5]]), chan.state(2, [[7, 23]])
    await ledger.register(chan.signed(v1))
    await ledger.register(chan.signed(v2))
    clock.advance(D)
    racing = SimAdjudicator(_PeerConcludesFirst(ledger, v2), alice)
    # Alice concludes with the stale v1: the ledger refuses with "invalid channel state",
    # but the channel is concluded by then, so her withdrawal of the outcome goes through.
    await racing.withdraw(req(chan, v1, 0))
    assert ledger.balance_of(alice.address, eth) == 7
    # Without a conclusion, the same refusal is an error.
    await funded(ledger, other, [10, 20], eth)
    await ledger.register(other.signed(other.state(2, [[7, 23]])))
    clock.advance(D)
    with pytest.raises(StateMismatchError):
        await SimAdjudicator(ledger, alice).withdraw(req(other, other.state(1, [[25, 5]]), 0))
    assert ledger.balance_of(alice.address, eth) == 7


async def test_concurrent_withdrawals_of_one_participant_both_succeed(
    make_chan, alice: SimAccount, eth: Asset
) -> None:  # type: ignore[no-untyped-def]
    # With latency both read the same holdings before either withdrawal lands.
    slow = SimLedger(clock=SimClock.manual(START), latency=0.01)
    chan = make_chan()
    await funded(slow, chan, [10, 20], eth)
    final = chan.state(1, [[12, 18]], final=True)
    adj = SimAdjudicator(slow, alice)
    await asyncio.gather(adj.withdraw(req(chan, final, 0)), adj.withdraw(req(chan, final, 0)))
    assert slow.balance_of(alice.address, eth) == 12
    assert slow.tx_count("withdraw") == 1
