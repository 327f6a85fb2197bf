"""The sim ledger enforces the ledger rules with the Ethereum reason strings.

Alice and Bob fund a channel; Mallory (as either of them) tries every stale, early or
forged transaction; the ledger refuses each with the contract's reason and changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest
from perun_sim import (
    PAYMENT_APP_ID,
    DisputePhase,
    SimAccount,
    SimClock,
    SimLedger,
    WithdrawalAuth,
)
from sim_helpers import START, Chan, D

from perun_core import errors as E
from perun_core.channel import Asset, SubAlloc
from perun_core.errors import ChainError, MissingSubStatesError
from perun_core.interfaces import ConcludedEvent, ProgressedEvent, RegisteredEvent

# The error type every refusal must have (the reason is the contract's text).
EXPECTED: dict[str, type[ChainError]] = {
    "insufficient balance": E.InsufficientBalanceError,
    "invalid amount": E.InvalidLedgerInputError,
    "asset not on this ledger": E.InvalidLedgerInputError,
    "invalid version": E.StaleStateError,
    "refutation timeout passed": E.RefutationClosedError,
    "incorrect phase": E.RefutationClosedError,
    "signatures length mismatch": E.SignatureRefusedError,
    "invalid signature": E.SignatureRefusedError,
    "ECDSA: invalid signature length": E.SignatureRefusedError,
    "ECDSA: invalid signature 'v' value": E.SignatureRefusedError,
    "signature verification failed": E.SignatureRefusedError,
    "invalid params": E.ParamsMismatchError,
    "not ledger": E.ChannelKindError,
    "cannot have app": E.ChannelKindError,
    "cannot have sub-channels": E.ChannelKindError,
    "must have app": E.ChannelKindError,
    "not registered": E.NotRegisteredError,
    "timeout not passed yet": E.TimeoutNotElapsedError,
    "timeout not passed": E.TimeoutNotElapsedError,
    "timeout passed": E.ForceExecutionClosedError,
    "invalid phase": E.ForceExecutionClosedError,
    "channel already concluded": E.AlreadyConcludedError,
    "invalid channel state": E.StateMismatchError,
    "wrong old state": E.StateMismatchError,
    "channel not settled": E.NotSettledError,
    "insufficient funds": E.InsufficientHoldingsError,
    "state not final": E.NotFinalError,
    "actorIdx out of range": E.InvalidProgressError,
    "version must increment by one": E.InvalidProgressError,
    "sum of balances mismatch": E.InvalidProgressError,
    "unknown app": E.InvalidProgressError,
    "subChannels: too short": E.MissingSubStatesError,
    "invalid sub-channel id": E.SubChannelMismatchError,
    "uint256[]: unequal item": E.SubChannelMismatchError,
}


async def refused(
    op: Awaitable[None], reason: str, error: type[ChainError] | None = None
) -> ChainError:
    """``op`` is refused with ``reason`` and exactly the error type for it."""
    with pytest.raises(ChainError) as ei:
        await op
    assert ei.value.reason == reason, ei.value.reason
    assert type(ei.value) is (error or EXPECTED[reason]), type(ei.value)
    return ei.value


async def fund(ledger: SimLedger, chan: Chan, balances: list[list[int]]) -> None:
    """Every participant mints and deposits its column of ``balances``."""
    for a, asset in enumerate(chan.assets):
        for p, acc in enumerate(chan.accounts):
            amount = balances[a][p]
            ledger.mint(acc.address, asset, amount)
            fid = chan.backend.funding_id(chan.id, acc.address)
            await ledger.deposit(acc.address, asset, fid, amount)


async def withdraw_all(ledger: SimLedger, chan: Chan, asset: Asset) -> list[int]:
    """Every participant withdraws its whole holdings; returns the amounts."""
    out = []
    for acc in chan.accounts:
        amount = ledger.holdings_of(asset, chan.id, acc.address)
        auth = WithdrawalAuth(chan.id, acc.address, acc.address, amount, asset)
        await ledger.withdraw(auth, acc.sign(auth.encode()))
        out.append(amount)
    return out


# --- deposits ------------------------------------------------------------------------------


async def test_deposit_moves_account_balance_into_holdings(
    ledger: SimLedger, chan: Chan, alice: SimAccount, eth: Asset
) -> None:
    ledger.mint(alice.address, eth, 100)
    fid = chan.backend.funding_id(chan.id, alice.address)
    await ledger.deposit(alice.address, eth, fid, 30)
    await ledger.deposit(alice.address, eth, fid, 5)
    assert ledger.balance_of(alice.address, eth) == 65
    assert ledger.holdings(eth, fid) == 35
    assert ledger.holdings_of(eth, chan.id, alice.address) == 35

    await refused(ledger.deposit(alice.address, eth, fid, 66), "insufficient balance")
    await refused(ledger.deposit(alice.address, eth, fid, -1), "invalid amount")
    await refused(
        ledger.deposit(alice.address, Asset(1, b"ETH"), fid, 1), "asset not on this ledger"
    )
    assert ledger.balance_of(alice.address, eth) == 65  # refused deposits changed nothing
    assert ledger.holdings(eth, fid) == 35
    assert ledger.tx_count("deposit") == 2


# --- register and refute ---------------------------------------------------------------------


async def test_register_then_refute_with_newer_state_keeps_the_timeout(
    ledger: SimLedger, clock: SimClock, chan: Chan
) -> None:
    await ledger.register(chan.signed(chan.state(1, [[5, 5]])))
    d = ledger.dispute(chan.id)
    assert d is not None
    assert (d.version, d.phase, d.timeout) == (1, DisputePhase.DISPUTE, START + D)
    assert not d.has_app and d.challenge_duration == D

    clock.advance(D - 1)  # the last second of the refutation window
    await ledger.register(chan.signed(chan.state(4, [[2, 8]])))
    d = ledger.dispute(chan.id)
    assert d is not None
    assert (d.version, d.timeout) == (4, START + D)  # refutation does not extend
    assert d.state == chan.state(4, [[2, 8]])

    evs = ledger.events(chan.id)
    assert [type(e) for e in evs] == [RegisteredEvent, RegisteredEvent]
    assert [e.version for e in evs] == [1, 4]
    assert [e.timeout.deadline for e in evs] == [START + D, START + D]
    assert evs[1].state == chan.state(4, [[2, 8]])  # type: ignore[attr-defined]


async def test_stale_or_equal_version_is_refused(ledger: SimLedger, chan: Chan) -> None:
    await ledger.register(chan.signed(chan.state(3, [[5, 5]])))
    await refused(ledger.register(chan.signed(chan.state(2, [[9, 1]]))), "invalid version")
    # same version, different content
    await refused(ledger.register(chan.signed(chan.state(3, [[9, 1]]))), "invalid version")
    d = ledger.dispute(chan.id)
    assert d is not None and d.version == 3
    assert len(ledger.events(chan.id)) == 1


async def test_registering_the_same_state_again_is_a_silent_no_op(
    ledger: SimLedger, chan: Chan
) -> None:
    signed = chan.signed(chan.state(3, [[5, 5]]))
    await ledger.register(signed)
    await ledger.register(signed)
    assert len(ledger.events(chan.id)) == 1


async def test_refutation_after_the_timeout_is_refused(
    ledger: SimLedger, clock: SimClock, chan: Chan
) -> None:
    await ledger.register(chan.signed(chan.state(1, [[5, 5]])))
    clock.advance(D)  # now == timeout: the window is closed
    await refused(
        ledger.register(chan.signed(chan.state(2, [[4, 6]]))), "refutation timeout passed"
    )


async def test_registering_a_final_state_times_out_at_once(
    ledger: SimLedger, chan: Chan, eth: Asset
) -> None:
    await fund(ledger, chan, [[5, 5]])
    final = chan.state(2, [[3, 7]], final=True)
    await ledger.register(chan.signed(final))
    d = ledger.dispute(chan.id)
    assert d is not None and d.timeout == START
    await ledger.conclude(chan.params, final)  # no app, final: concludable immediately
    assert await withdraw_all(ledger, chan, eth) == [3, 7]


async def test_register_signature_rules(ledger: SimLedger, chan: Chan, alice: SimAccount) -> None:
    from perun_core.channel import SignedState

    st = chan.state(1, [[5, 5]])
    a_sig, b_sig = chan.sign(st)
    await refused(
        ledger.register(SignedState(chan.params, st, (a_sig,))), "signatures length mismatch"
    )
    await refused(
        ledger.register(SignedState(chan.params, st, (a_sig, a_sig))), "invalid signature"
    )
    await refused(
        ledger.register(SignedState(chan.params, st, (b_sig, a_sig))), "invalid signature"
    )
    await refused(
        ledger.register(SignedState(chan.params, st, (a_sig, b_sig[:64]))),
        "ECDSA: invalid signature length",
    )
    await refused(
        ledger.register(SignedState(chan.params, st, (a_sig, b_sig[:64] + b"\x1b"))),
        "ECDSA: invalid signature 'v' value",
    )
    # a state of another channel under these params
    other = st.replace(channel_id=b"\x09" * 32)
    await refused(
        ledger.register(SignedState(chan.params, other, chan.sign(other))), "invalid params"
    )
    assert ledger.dispute(chan.id) is None
    assert ledger.tx_count() == 0


async def test_only_ledger_channels_can_be_registered_as_root(ledger: SimLedger, make_chan) -> None:  # type: ignore[no-untyped-def]
    sub = make_chan(ledger_channel=False)
    await refused(ledger.register(sub.signed(sub.state(1, [[1, 1]]))), "not ledger")
    await refused(ledger.conclude(sub.params, sub.state(1, [[1, 1]])), "not ledger")
    fin = sub.state(1, [[1, 1]], final=True)
    await refused(ledger.conclude_final(sub.params, fin, sub.sign(fin)), "not ledger")


async def test_malformed_states_are_refused(ledger: SimLedger, chan: Chan) -> None:
    from perun_core.channel import SignedState
    from perun_core.errors import NegativeBalanceError

    neg = chan.state(1, [[-1, 11]])
    with pytest.raises(NegativeBalanceError):  # the client cannot even sign it...
        chan.sign(neg)
    ok_sigs = chan.sign(chan.state(1, [[0, 10]]))
    # ...and the ledger refuses it with a reason instead of crashing
    await refused_prefix(ledger.register(SignedState(chan.params, neg, ok_sigs)), "invalid state")
    short = chan.state(1, [[10]])
    err = await refused_prefix(ledger.register(chan.signed(short)), "invalid allocation")
    assert "invalid allocation" in err.reason


async def refused_prefix(
    op: Awaitable[None], prefix: str, error: type[ChainError] = E.InvalidLedgerInputError
) -> ChainError:
    with pytest.raises(error) as ei:
        await op
    assert type(ei.value) is error, type(ei.value)
    assert ei.value.reason.startswith(prefix), ei.value.reason
    return ei.value


# --- conclude, outcome, withdraw -----------------------------------------------------------------


async def test_conclude_before_the_timeout_is_refused(
    ledger: SimLedger, clock: SimClock, chan: Chan
) -> None:
    st = chan.state(1, [[5, 5]])
    await refused(ledger.conclude(chan.params, st), "not registered")
    await ledger.register(chan.signed(st))
    clock.advance(D - 1)
    await refused(ledger.conclude(chan.params, st), "timeout not passed yet")
    clock.advance(1)
    await ledger.conclude(chan.params, st)
    d = ledger.dispute(chan.id)
    assert d is not None and d.phase == DisputePhase.CONCLUDED
    await refused(ledger.conclude(chan.params, st), "channel already concluded")


async def test_conclude_with_a_state_other_than_the_registered_one_is_refused(
    ledger: SimLedger, clock: SimClock, chan: Chan
) -> None:
    await ledger.register(chan.signed(chan.state(2, [[5, 5]])))
    clock.advance(D)
    await refused(ledger.conclude(chan.params, chan.state(1, [[9, 1]])), "invalid channel state")
    await ledger.conclude(chan.params, chan.state(2, [[5, 5]]))
    # Once concluded, the same refusal tells that the outcome is fixed by another state.
    await refused(
        ledger.conclude(chan.params, chan.state(1, [[9, 1]])),
        "invalid channel state",
        E.ConcludedWithOtherStateError,
    )


async def test_dispute_pays_the_registered_outcome_and_withdrawals_are_checked(
    ledger: SimLedger,
    clock: SimClock,
    chan: Chan,
    alice: SimAccount,
    bob: SimAccount,
    eth: Asset,
) -> None:
    await fund(ledger, chan, [[50, 50]])
    st = chan.state(7, [[30, 70]])
    await ledger.register(chan.signed(st))

    auth = WithdrawalAuth(chan.id, alice.address, alice.address, 30, eth)
    await refused(ledger.withdraw(auth, alice.sign(auth.encode())), "channel not settled")

    clock.advance(D)
    await ledger.conclude(chan.params, st)
    assert ledger.is_settled(eth, chan.id)
    assert ledger.holdings_of(eth, chan.id, alice.address) == 30
    assert ledger.holdings_of(eth, chan.id, bob.address) == 70

    # Bob cannot sign Alice's withdrawal
    await refused(ledger.withdraw(auth, bob.sign(auth.encode())), "signature verification failed")
    # partial withdrawals, then the rest, then nothing more
    part = WithdrawalAuth(chan.id, alice.address, alice.address, 10, eth)
    await ledger.withdraw(part, alice.sign(part.encode()))
    rest = WithdrawalAuth(chan.id, alice.address, alice.address, 20, eth)
    await ledger.withdraw(rest, alice.sign(rest.encode()))
    await refused(ledger.withdraw(auth, alice.sign(auth.encode())), "insufficient funds")
    assert ledger.balance_of(alice.address, eth) == 30
    # Bob pays his share to Carol
    carol = SimAccount.from_seed(b"carol").address
    to_carol = WithdrawalAuth(chan.id, bob.address, carol, 70, eth)
    await ledger.withdraw(to_carol, bob.sign(to_carol.encode()))
    await refused(ledger.withdraw(to_carol, bob.sign(to_carol.encode())), "insufficient funds")
    assert ledger.balance_of(carol, eth) == 70
    assert ledger.balance_of(bob.address, eth) == 0


async def test_under_funded_channel_refunds_every_deposit(
    ledger: SimLedger, clock: SimClock, chan: Chan, eth: Asset
) -> None:
    # Alice deposited her 10, Bob never did: v0 says 10/10, which the ledger cannot pay
    await fund(ledger, chan, [[10, 0]])
    v0 = chan.state(0, [[10, 10]])
    await ledger.register(chan.signed(v0))
    clock.advance(D)
    await ledger.conclude(chan.params, v0)
    assert await withdraw_all(ledger, chan, eth) == [10, 0]


async def test_over_funded_channel_pays_the_outcome_and_the_surplus_stays(
    ledger: SimLedger, clock: SimClock, chan: Chan, eth: Asset
) -> None:
    await fund(ledger, chan, [[12, 10]])
    st = chan.state(1, [[4, 16]])
    await ledger.register(chan.signed(st))
    clock.advance(D)
    await ledger.conclude(chan.params, st)
    assert await withdraw_all(ledger, chan, eth) == [4, 16]


async def test_conclude_final_overrides_a_running_dispute(
    ledger: SimLedger, chan: Chan, eth: Asset
) -> None:
    await fund(ledger, chan, [[5, 5]])
    await ledger.register(chan.signed(chan.state(9, [[1, 9]])))
    final = chan.state(3, [[6, 4]], final=True)  # lower version, still wins
    await ledger.conclude_final(chan.params, final, chan.sign(final))
    d = ledger.dispute(chan.id)
    assert d is not None
    assert (d.phase, d.version, d.timeout) == (DisputePhase.CONCLUDED, 3, START)
    evs = ledger.events(chan.id)
    assert isinstance(evs[-1], ConcludedEvent) and evs[-1].version == 3
    await refused(
        ledger.conclude_final(chan.params, final, chan.sign(final)), "channel already concluded"
    )
    await refused(ledger.register(chan.signed(chan.state(10, [[1, 9]]))), "incorrect phase")
    assert await withdraw_all(ledger, chan, eth) == [6, 4]


async def test_conclude_final_rules(ledger: SimLedger, chan: Chan) -> None:
    nonfinal = chan.state(3, [[6, 4]])
    await refused(
        ledger.conclude_final(chan.params, nonfinal, chan.sign(nonfinal)), "state not final"
    )
    locked = chan.state(3, [[5, 4]], final=True, locked=[SubAlloc(b"\x05" * 32, (1,), (0, 1))])
    await refused(
        ledger.conclude_final(chan.params, locked, chan.sign(locked)), "cannot have sub-channels"
    )
    final = chan.state(3, [[6, 4]], final=True)
    a_sig, _ = chan.sign(final)
    await refused(ledger.conclude_final(chan.params, final, (a_sig, a_sig)), "invalid signature")
    assert ledger.dispute(chan.id) is None


# --- apps: 2x rule and progress ----------------------------------------------------------------


async def test_app_channel_concludes_only_after_twice_the_duration(
    ledger: SimLedger, clock: SimClock, make_chan
) -> None:  # type: ignore[no-untyped-def]
    chan = make_chan(app=PAYMENT_APP_ID)
    st = chan.state(1, [[5, 5]])
    await ledger.register(chan.signed(st))
    d = ledger.dispute(chan.id)
    assert d is not None and d.has_app and d.timeout == START + D
    clock.set(START + 2 * D - 1)
    await refused(ledger.conclude(chan.params, st), "timeout not passed yet")
    clock.advance(1)
    await ledger.conclude(chan.params, st)


async def test_progress_force_executes_app_transitions(
    ledger: SimLedger, clock: SimClock, make_chan, eth: Asset
) -> None:  # type: ignore[no-untyped-def]
    chan = make_chan(app=PAYMENT_APP_ID)
    alice, bob = chan.accounts
    await fund(ledger, chan, [[5, 5]])
    v1 = chan.state(1, [[5, 5]])
    await ledger.register(chan.signed(v1))
    v2 = chan.state(2, [[3, 7]])  # Alice pays Bob 2: valid for the payment app with actor 0

    def sig(acc: SimAccount, st: object) -> bytes:
        return chan.backend.sign_state(acc, st)

    await refused(ledger.progress(chan.params, v1, v2, 0, sig(alice, v2)), "timeout not passed")
    clock.advance(D)
    await refused(ledger.progress(chan.params, v1, v2, 0, sig(bob, v2)), "invalid signature")
    await refused(ledger.progress(chan.params, v1, v2, 2, sig(alice, v2)), "actorIdx out of range")
    skip = chan.state(3, [[3, 7]])
    await refused(
        ledger.progress(chan.params, v1, skip, 0, sig(alice, skip)),
        "version must increment by one",
    )
    mint = chan.state(2, [[5, 7]])
    await refused(
        ledger.progress(chan.params, v1, mint, 0, sig(alice, mint)), "sum of balances mismatch"
    )
    # the app rule runs on chain (D9): Alice may not take Bob's money
    grab = chan.state(2, [[7, 3]])
    err = await refused_prefix(
        ledger.progress(chan.params, v1, grab, 0, sig(alice, grab)),
        "[U12-app]",
        E.InvalidProgressError,
    )
    assert "may not increase" in err.reason

    await ledger.progress(chan.params, v1, v2, 0, sig(alice, v2))
    d = ledger.dispute(chan.id)
    assert d is not None
    assert (d.phase, d.version, d.timeout) == (DisputePhase.FORCEEXEC, 2, clock.now() + D)
    ev = ledger.events(chan.id)[-1]
    assert isinstance(ev, ProgressedEvent)
    assert (ev.version, ev.actor_idx, ev.state, ev.timeout.deadline) == (2, 0, v2, d.timeout)

    await refused(ledger.progress(chan.params, v1, v2, 0, sig(alice, v2)), "wrong old state")
    # Bob progresses once more inside the force-execution window
    v3 = chan.state(3, [[4, 6]])
    await ledger.progress(chan.params, v2, v3, 1, sig(bob, v3))
    t3 = ledger.dispute(chan.id).timeout  # type: ignore[union-attr]
    clock.set(t3 - 1)
    await refused(ledger.conclude(chan.params, v3), "timeout not passed yet")
    v4 = chan.state(4, [[3, 7]])
    clock.set(t3)
    await refused(ledger.progress(chan.params, v3, v4, 0, sig(alice, v4)), "timeout passed")
    await ledger.conclude(chan.params, v3)  # after a progress: t_progress + d, no 2x
    await refused(ledger.progress(chan.params, v3, v4, 0, sig(alice, v4)), "invalid phase")
    assert await withdraw_all(ledger, chan, eth) == [4, 6]


async def test_progress_needs_an_app_and_a_registration(
    ledger: SimLedger, clock: SimClock, chan: Chan
) -> None:
    v1, v2 = chan.state(1, [[5, 5]]), chan.state(2, [[4, 6]])
    alice = chan.accounts[0]
    s2 = chan.backend.sign_state(alice, v2)
    await refused(ledger.progress(chan.params, v1, v2, 0, s2), "not registered")
    await ledger.register(chan.signed(v1))
    clock.advance(D)
    await refused(ledger.progress(chan.params, v1, v2, 0, s2), "must have app")


async def test_progress_with_an_app_the_ledger_does_not_know(clock: SimClock, make_chan) -> None:  # type: ignore[no-untyped-def]
    chan = make_chan(app=b"\x77" * 20)
    ledger = chan.backend.ledger
    v1, v2 = chan.state(1, [[5, 5]]), chan.state(2, [[4, 6]])
    await ledger.register(chan.signed(v1))
    clock.advance(D)
    await refused(
        ledger.progress(chan.params, v1, v2, 0, chan.backend.sign_state(chan.accounts[0], v2)),
        "unknown app",
    )


# --- sub-channels ------------------------------------------------------------------------------


async def test_register_and_conclude_with_sub_channels(
    ledger: SimLedger, clock: SimClock, make_chan, eth: Asset
) -> None:  # type: ignore[no-untyped-def]
    root = make_chan(nonce=1)
    sub = make_chan(nonce=2, ledger_channel=False)
    subsub = make_chan(nonce=3, ledger_channel=False)
    await fund(ledger, root, [[50, 50]])
    ss_state = subsub.state(4, [[1, 3]])
    sub_state = sub.state(5, [[2, 2]], locked=[SubAlloc(subsub.id, (4,), (0, 1))])
    # the root locks 8 in the sub-channel, which locks 4 in the sub-sub-channel
    root_state = root.state(9, [[40, 52]], locked=[SubAlloc(sub.id, (8,), (0, 1))])

    await refused(ledger.register(root.signed(root_state)), "subChannels: too short")
    await refused(
        ledger.register(root.signed(root_state), [subsub.signed(ss_state), sub.signed(sub_state)]),
        "invalid sub-channel id",
    )
    bad_sub = sub.state(5, [[2, 3]], locked=[SubAlloc(subsub.id, (4,), (0, 1))])
    await refused(
        ledger.register(root.signed(root_state), [sub.signed(bad_sub), subsub.signed(ss_state)]),
        "uint256[]: unequal item",
    )
    assert ledger.dispute(root.id) is None  # atomic: nothing of the refused trees stored

    await ledger.register(root.signed(root_state), [sub.signed(sub_state), subsub.signed(ss_state)])
    for c, v in ((root, 9), (sub, 5), (subsub, 4)):
        d = ledger.dispute(c.id)
        assert d is not None and d.version == v
        assert [e.version for e in ledger.events(c.id)] == [v]

    clock.advance(D)
    with pytest.raises(MissingSubStatesError):
        await ledger.conclude(root.params, root_state, [sub_state])
    await refused(
        ledger.conclude(root.params, root_state, [sub.state(5, [[2, 2]]), ss_state]),
        "invalid channel state",
    )
    await ledger.conclude(root.params, root_state, [sub_state, ss_state])
    for c in (root, sub, subsub):
        d = ledger.dispute(c.id)
        assert d is not None and d.phase == DisputePhase.CONCLUDED
        assert isinstance(ledger.events(c.id)[-1], ConcludedEvent)
    # Alice: 40 + 2 + 1, Bob: 52 + 2 + 3
    assert await withdraw_all(ledger, root, eth) == [43, 57]


async def test_virtual_channel_rules(ledger: SimLedger, make_chan) -> None:  # type: ignore[no-untyped-def]
    root = make_chan(nonce=1)
    virt = make_chan(nonce=2, ledger_channel=False, virtual_channel=True, app=PAYMENT_APP_ID)
    v_state = virt.state(1, [[1, 1]])
    root_state = root.state(1, [[4, 4]], locked=[SubAlloc(virt.id, (2,), (1, 0))])
    await refused(
        ledger.register(root.signed(root_state), [virt.signed(v_state)]), "cannot have app"
    )


# --- events ----------------------------------------------------------------------------------


async def test_subscription_replays_the_latest_event_then_follows(
    ledger: SimLedger, clock: SimClock, chan: Chan
) -> None:
    await ledger.register(chan.signed(chan.state(1, [[5, 5]])))
    await ledger.register(chan.signed(chan.state(2, [[4, 6]])))
    sub = ledger.subscribe(chan.id)
    first = await asyncio.wait_for(sub.next(), 1)
    assert isinstance(first, RegisteredEvent)
    assert (first.version, first.timeout.deadline) == (2, START + D)  # the latest only

    pending = asyncio.create_task(sub.next())
    await ledger.register(chan.signed(chan.state(3, [[3, 7]])))
    third = await asyncio.wait_for(pending, 1)
    assert third is not None and third.version == 3

    clock.advance(D)
    await ledger.conclude(chan.params, chan.state(3, [[3, 7]]))
    ev = await asyncio.wait_for(sub.next(), 1)
    assert isinstance(ev, ConcludedEvent) and ev.version == 3
    assert await ev.timeout.is_elapsed()

    pending = asyncio.create_task(sub.next())
    await asyncio.sleep(0)
    await sub.close()
    assert await asyncio.wait_for(pending, 1) is None
    assert await sub.next() is None


async def test_subscription_of_a_quiet_channel_waits_for_the_first_event(
    ledger: SimLedger, chan: Chan
) -> None:
    sub = ledger.subscribe(chan.id)
    pending = asyncio.create_task(sub.next())
    await asyncio.sleep(0.01)
    assert not pending.done()
    await ledger.register(chan.signed(chan.state(1, [[5, 5]])))
    ev = await asyncio.wait_for(pending, 1)
    assert ev is not None and ev.version == 1
    await sub.close()


async def test_latency_delays_each_transaction(chan: Chan, alice: SimAccount, eth: Asset) -> None:
    slow = SimLedger(clock=SimClock.manual(0), latency=0.02)
    slow.mint(alice.address, eth, 1)
    loop = asyncio.get_running_loop()
    t = loop.time()
    await slow.deposit(alice.address, eth, b"\x00" * 32, 1)
    assert loop.time() - t >= 0.015


async def test_close_wakes_every_pending_reader(ledger: SimLedger, chan: Chan) -> None:
    sub = ledger.subscribe(chan.id)
    readers = [asyncio.create_task(sub.next()) for _ in range(3)]
    await asyncio.sleep(0)
    await sub.close()
    assert await asyncio.wait_for(asyncio.gather(*readers), 1) == [None, None, None]
    # a closed subscription no longer receives events
    await ledger.register(chan.signed(chan.state(1, [[5, 5]])))
    assert await sub.next() is None
