"""Two clients end to end on the sim chain: open, pay, collide, refuse bad input, settle."""

from __future__ import annotations

import asyncio
import random

import pytest

from perun_core.channel.allocation import Allocation
from perun_core.channel.phase import Phase
from perun_core.channel.state import State
from perun_core.client import ClientConfig, LedgerChannelProposal
from perun_core.errors import (
    AssetsChangedError,
    InsufficientFundsError,
    InvalidSignatureError,
    InvalidUpdateError,
    NegativeBalanceError,
    PeerRejectedError,
    ReentrantUpdateError,
    RejectCode,
    SignatureError,
    TotalsMismatchError,
    UpdateConflictError,
    VersionError,
)
from perun_core.wire import messages as wire


async def test_happy_path_hundreds_of_payments(make_party, asset, backend, open_ch, funds) -> None:
    alice, bob = await make_party("alice"), await make_party("bob")
    ch_a, ch_b = await open_ch(alice, bob, asset, (500, 500))
    assert ch_a.phase == ch_b.phase == Phase.ACTING
    rng = random.Random(7)
    expected = [500, 500]
    for i in range(300):
        amount = rng.randint(1, 5)
        if i % 2 == 0:
            await ch_a.send(amount)
            expected = [expected[0] - amount, expected[1] + amount]
        else:
            await ch_b.send(amount)
            expected = [expected[0] + amount, expected[1] - amount]
        assert list(ch_a.balances[0]) == expected
        assert ch_a.state == ch_b.state
    assert ch_a.state.version == 300
    await asyncio.gather(ch_a.settle(), ch_b.settle())
    assert ch_a.phase == ch_b.phase == Phase.WITHDRAWN
    assert await backend.balance_of(alice.account.address, asset) == funds - 500 + expected[0]
    assert await backend.balance_of(bob.account.address, asset) == funds - 500 + expected[1]
    assert alice.client.channels == [] and bob.client.channels == []


async def test_rejected_proposal_leaves_nothing_behind(make_party, asset, open_ch, funds) -> None:
    alice = await make_party("alice")
    bob = await make_party("bob", accept=False)
    bob.client.on_proposal(lambda p, r: r.reject("not today"))
    with pytest.raises(PeerRejectedError) as err:
        await open_ch(alice, bob, asset)
    assert err.value.reason == "not today"
    assert err.value.code == RejectCode.REJECTED
    assert alice.client.channels == [] and bob.client.channels == []
    assert await alice.persister.active_peers() == [] and await bob.persister.active_peers() == []


async def test_undecided_proposal_is_rejected_with_timeout(
    make_party, asset, open_ch, funds
) -> None:
    alice = await make_party("alice")
    bob = await make_party("bob", accept=False, config=ClientConfig(proposal_timeout=0.2))
    bob.client.on_proposal(lambda p, r: None)  # never decides
    with pytest.raises(PeerRejectedError) as err:
        await open_ch(alice, bob, asset)
    assert err.value.code == RejectCode.TIMEOUT


async def test_update_handler_reject_burns_the_version(make_party, asset, open_ch, funds) -> None:
    alice, bob = await make_party("alice"), await make_party("bob")
    ch_a, ch_b = await open_ch(alice, bob, asset)
    bob.client.on_update_proposal(lambda ch, cur, new, r: r.reject("no thanks"))
    with pytest.raises(PeerRejectedError, match="no thanks"):
        await ch_a.update(lambda s: s.transfer(1, 0, 1))  # would take Bob's money
    assert ch_a.state.version == ch_b.state.version == 0
    assert ch_a.version_floor == ch_b.version_floor == 1
    bob.client.on_update_proposal(lambda ch, cur, new, r: r.accept())
    st = await ch_a.send(10)
    assert st.version == 2 and ch_b.state == st


async def test_concurrent_updates_resolve_deterministically(
    make_party, asset, open_ch, signed_states
) -> None:
    alice = await make_party("alice")
    bob = await make_party("bob")
    ch_a, ch_b = await open_ch(alice, bob, asset, (10_000, 10_000))
    bob.client.on_update_proposal(lambda ch, cur, new, r: r.accept())
    alice.client.on_update_proposal(lambda ch, cur, new, r: r.accept())
    conflicts = 0
    for _ in range(100):
        ra, rb = await asyncio.gather(ch_a.send(3), ch_b.send(2), return_exceptions=True)
        assert not isinstance(ra, BaseException), ra  # the lower index always succeeds
        if isinstance(rb, BaseException):
            assert isinstance(rb, UpdateConflictError), rb
            conflicts += 1
        assert ch_a.state == ch_b.state
        assert ch_a.next_version == ch_b.next_version
        assert ch_a.phase == ch_b.phase == Phase.ACTING
    assert conflicts > 0, "the test never produced a collision"
    # No party signed two different states with the same version.
    for party in (alice, bob):
        by_version: dict[int, set[State]] = {}
        for st in signed_states[party.account.address]:
            by_version.setdefault(st.version, set()).add(st)
        assert len(by_version) > 100  # every signed state was seen
        assert all(len(v) == 1 for v in by_version.values()), by_version


@pytest.fixture
def signed_states(monkeypatch, backend):  # type: ignore[no-untyped-def]
    """Every state each address signed, in order."""
    signed: dict[object, list[State]] = {}
    orig = backend.sign_state

    def sign_state(account, state):  # type: ignore[no-untyped-def]
        signed.setdefault(account.address, []).append(state)
        return orig(account, state)

    monkeypatch.setattr(backend, "sign_state", sign_state)
    return signed


async def test_callbacks_read_state_without_deadlock(make_party, asset, open_ch, funds) -> None:
    alice, bob = await make_party("alice"), await make_party("bob")
    ch_a, ch_b = await open_ch(alice, bob, asset)
    seen: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    async def handler(ch, cur, new, responder):  # type: ignore[no-untyped-def]
        seen.append((ch.state.version, ch.phase))  # reading inside the handler never blocks
        try:
            await ch.update(lambda s: s)
        except ReentrantUpdateError as e:
            errors.append(e)
        await responder.accept()

    async def on_update(ch, old, new):  # type: ignore[no-untyped-def]
        seen.append((ch.state.version, ch.phase))
        try:
            await ch.send(1)
        except ReentrantUpdateError as e:
            errors.append(e)

    bob.client.on_update_proposal(handler)
    bob.client.on_update(on_update)
    await asyncio.wait_for(ch_a.send(5), 5)
    await asyncio.sleep(0.05)
    assert seen[0] == (0, Phase.SIGNING)
    assert seen[1] == (1, Phase.ACTING)
    assert len(errors) == 2 and all(isinstance(e, ReentrantUpdateError) for e in errors)
    assert ch_b.state.version == 1


async def test_invalid_local_updates_raise_before_anything_is_sent(
    make_party, asset, open_ch, funds
) -> None:
    alice, bob = await make_party("alice"), await make_party("bob")
    ch_a, ch_b = await open_ch(alice, bob, asset)
    with pytest.raises(InsufficientFundsError):
        await ch_a.send(101)
    with pytest.raises(NegativeBalanceError):
        await ch_a.update(lambda s: s.replace(allocation=s.allocation.with_balances([[-1, 201]])))
    with pytest.raises(TotalsMismatchError):
        await ch_a.update(lambda s: s.replace(allocation=s.allocation.with_balances([[100, 101]])))
    assert ch_a.state.version == 0 and ch_a.version_floor == 0 and ch_a.phase == Phase.ACTING
    assert ch_b.state.version == 0
    await ch_a.send(1)
    assert ch_b.balances[0] == (99, 101)


async def test_invalid_remote_updates_are_refused_and_the_channel_stays_usable(
    make_party, asset, backend, bus, open_ch, funds
) -> None:
    alice, bob = await make_party("alice"), await make_party("bob")
    ch_a, ch_b = await open_ch(alice, bob, asset)
    await ch_a.send(10)
    errors: list[BaseException] = []
    bob.client.on_error(errors.append)
    cur = ch_b.state
    sign = lambda st: backend.sign_state(alice.account, st)  # noqa: E731
    other = backend.asset("PRN")

    async def inject(state: State, sig: bytes | None = None) -> None:
        msg = wire.ChannelUpdate(state, 0, sig if sig is not None else sign(state))
        await bus.publish(wire.Envelope(alice.address, bob.address, msg))
        await asyncio.sleep(0.02)

    v2 = cur.replace(version=2)
    # (Far ahead: a proposal only a few versions ahead starts a sync round instead.)
    await inject(cur.replace(version=50, allocation=cur.allocation.transfer(0, 1, 1)))
    await inject(v2.replace(allocation=cur.allocation.with_balances([[95, 110]])))
    await inject(v2.replace(allocation=Allocation((other,), cur.allocation.balances)))
    good = v2.replace(allocation=cur.allocation.transfer(0, 1, 1))
    await inject(good, backend.sign_state(bob.account, good))  # signed by the wrong key
    await inject(good, b"\x01" * 65)  # not a signature at all
    kinds = [type(e) for e in errors]
    assert kinds[:4] == [
        VersionError,
        TotalsMismatchError,
        AssetsChangedError,
        InvalidSignatureError,
    ], kinds
    assert all(isinstance(e, InvalidUpdateError) for e in errors[:4])
    assert len(errors) == 5 and isinstance(errors[4], SignatureError)
    # Bob's channel is unchanged ...
    assert ch_b.state == cur and ch_b.phase == Phase.ACTING
    # ... and still works.
    await ch_a.send(1)
    await ch_b.send(2)
    assert ch_a.state == ch_b.state and ch_b.balances[0] == (91, 109)


async def test_default_handler_refuses_taking_our_money(make_party, asset, open_ch, funds) -> None:
    alice, bob = await make_party("alice"), await make_party("bob")
    ch_a, _ = await open_ch(alice, bob, asset)
    with pytest.raises(PeerRejectedError) as err:
        await ch_a.update(lambda s: s.transfer(1, 0, 5))
    assert err.value.code == RejectCode.REJECTED


async def test_settle_by_one_party_while_the_other_pays(
    make_party, asset, backend, open_ch, funds
) -> None:
    alice, bob = await make_party("alice"), await make_party("bob")
    ch_a, ch_b = await open_ch(alice, bob, asset)
    await ch_b.send(30)
    await ch_a.settle()  # proposes final, concludes and withdraws Alice's share
    # Bob's client saw the conclusion on the ledger and withdrew by itself (auto_settle).
    await ch_b.wait_phase(Phase.WITHDRAWN, timeout=5)
    await ch_b.settle()  # settling a settled channel is a no-op
    assert await backend.balance_of(alice.account.address, asset) == funds + 30
    assert await backend.balance_of(bob.account.address, asset) == funds - 30


async def test_proposal_with_unknown_peer_times_out_cleanly(
    make_party, asset, bus, open_ch, funds
) -> None:
    from perun_core.errors import PerunError

    alice = await make_party("alice")
    ghost = type(alice.address)(b"\x42" * 20)
    with pytest.raises(PerunError):
        await alice.client.propose_channel(
            LedgerChannelProposal(peer=ghost, allocation=Allocation((asset,), ((1, 1),)))
        )
    assert alice.client.channels == []
