"""Data-model invariants (see docs/concepts.md), checked with random allocations and updates.

Random channels have 1-4 participants, 1-3 assets, 0-3 locked sub-allocations and balances
anywhere in ``[0, 2**256)``. A random valid update must pass ``check_update``; a random
invalid one must raise exactly the typed error of the rule it breaks, carrying the channel
ID, the version and the rule name; when several rules are broken at once the first one in the
rule order wins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from perun_sim.backend import SimBackend

from perun_core.channel import limits
from perun_core.channel.allocation import Allocation, SubAlloc
from perun_core.channel.app import App, PaymentApp
from perun_core.channel.params import Params, make_params, nonce_from_shares
from perun_core.channel.phase import ALLOWED_TRANSITIONS, Phase, check_transition
from perun_core.channel.state import State
from perun_core.channel.types import Address, Asset
from perun_core.channel.validation import (
    check_allocation,
    check_initial,
    check_update,
    next_version,
)
from perun_core.errors import (
    ActorMismatchError,
    AppFaultError,
    AppMismatchError,
    AppTransitionError,
    AssetsChangedError,
    BalanceOverflowError,
    ChannelIDMismatchError,
    FinalStateError,
    InsufficientFundsError,
    InvalidAllocationError,
    InvalidAppDataError,
    InvalidInitialStateError,
    InvalidStateError,
    InvalidUpdateError,
    LockedFundsChangedError,
    NegativeBalanceError,
    PhaseTransitionError,
    TotalsMismatchError,
    VersionError,
)

BOUND = 2**256
MAX = BOUND - 1
FAST = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def sim() -> SimBackend:
    """The sim backend computes channel IDs (SHA3-256 over every params field)."""
    return SimBackend()


# --- strategies -------------------------------------------------------------------------------


def addresses(n: int) -> st.SearchStrategy[list[Address]]:
    return st.lists(
        st.binary(min_size=20, max_size=20).map(Address), min_size=n, max_size=n, unique=True
    )


assets_st = st.lists(
    st.builds(
        Asset,
        st.integers(0, MAX),
        st.sampled_from([b"ETH", b"PRN", b"USDC", b"\x01" * 20, b"\xff" * 20]),
    ),
    min_size=1,
    max_size=3,
    unique=True,
)


@st.composite
def split(draw: st.DrawFn, total: int, parts: int) -> list[int]:
    """``parts`` non-negative integers summing to ``total`` (often with huge values)."""
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=parts - 1, max_size=parts - 1)))
    bounds = [0, *cuts, total]
    return [bounds[i + 1] - bounds[i] for i in range(parts)]


@dataclass(frozen=True)
class Chan:
    """A random channel: params with a sim channel ID and a valid current state."""

    params: Params
    state: State

    @property
    def n(self) -> int:
        return self.params.num_parts

    @property
    def alloc(self) -> Allocation:
        return self.state.allocation

    def next(self, **changes: Any) -> State:
        """The current state at the next version, with ``changes``."""
        return replace(self.state, version=self.state.version + 1, **changes)


totals_st = st.one_of(st.integers(0, MAX), st.just(MAX), st.integers(0, 10**6))


@st.composite
def channels(
    draw: st.DrawFn,
    sim: SimBackend,
    *,
    min_parts: int = 1,
    locked: bool = True,
    app: bytes | None = None,
    max_total: int = MAX,
) -> Chan:
    n = draw(st.integers(min_parts, 4))
    parts = draw(addresses(n))
    params = make_params(
        sim,
        challenge_duration=draw(st.integers(1, 2**32 - 1)),
        participants=parts,
        nonce=draw(st.integers(0, MAX)),
        app=app,
    )
    assets = draw(assets_st)
    n_subs = draw(st.integers(0, 3)) if locked else 0
    sub_ids = draw(
        st.lists(st.binary(min_size=32, max_size=32), min_size=n_subs, max_size=n_subs, unique=True)
    )
    assume(params.id not in sub_ids)
    rows: list[list[int]] = []
    sub_rows: list[list[int]] = [[] for _ in range(n_subs)]
    for _ in assets:
        total = draw(st.one_of(st.integers(0, max_total), st.just(max_total)))
        cells = draw(split(total, n + n_subs))
        rows.append(cells[:n])
        for s in range(n_subs):
            sub_rows[s].append(cells[n + s])
    subs = []
    for s in range(n_subs):
        k = draw(st.integers(1, n))
        index_map = draw(st.permutations(range(n)))[:k]
        subs.append(SubAlloc(sub_ids[s], tuple(sub_rows[s]), tuple(index_map)))
    version = draw(st.integers(0, 2**40))
    state = State(params.id, version, Allocation(assets, rows, subs), app=app)
    return Chan(params, state)


def expect(
    err_type: type[InvalidUpdateError], fn: Callable[[], object], chan: Chan, version: int
) -> Any:
    """Run ``fn``; it must raise exactly ``err_type`` carrying the channel, version and rule."""
    with pytest.raises(InvalidUpdateError) as info:
        fn()
    err = info.value
    assert type(err) is err_type, f"expected {err_type.__name__}, got {type(err).__name__}: {err}"
    assert err.channel_id == chan.params.id
    assert err.version == version
    assert err.rule == err_type.rule and err.rule in str(err)
    return err


def update(chan: Chan, new: State, **kw: Any) -> None:
    """``check_update`` with the usual arguments: participant 0 proposes, no burned versions."""
    args: dict[str, Any] = {
        "actor_idx": 0,
        "expected_actor": 0,
        "version_floor": 0,
        "app": None,
    }
    args.update(kw)
    check_update(chan.params, chan.state, new, **args)


# --- allocations ------------------------------------------------------------------------------


@FAST
@given(data=st.data())
def test_random_allocations_are_valid_and_totals_add_up(
    sim: SimBackend, data: st.DataObject
) -> None:
    chan = data.draw(channels(sim))
    alloc = chan.alloc
    check_allocation(alloc, chan.n, channel_id=chan.params.id, version=chan.state.version)
    for a, total in enumerate(alloc.totals()):
        assert total == sum(alloc.balances[a]) + sum(s.balances[a] for s in alloc.locked)
        assert total < BOUND
    assert alloc.num_parts == chan.n


@FAST
@given(data=st.data())
def test_transfer_moves_exactly_the_amount(sim: SimBackend, data: st.DataObject) -> None:
    chan = data.draw(channels(sim, min_parts=2))
    alloc = chan.alloc
    a = data.draw(st.integers(0, len(alloc.assets) - 1))
    frm, to = data.draw(st.permutations(range(chan.n)))[:2]
    held = alloc.balance(frm, a)
    amount = data.draw(st.integers(0, held))
    moved = alloc.transfer(frm, to, amount, a)
    assert moved.totals() == alloc.totals()
    assert moved.balance(frm, a) == held - amount
    assert moved.balance(to, a) == alloc.balance(to, a) + amount
    assert moved.assets == alloc.assets and moved.locked == alloc.locked
    for b, (old_row, new_row) in enumerate(zip(alloc.balances, moved.balances, strict=True)):
        for p, (o, n) in enumerate(zip(old_row, new_row, strict=True)):
            if (b, p) not in {(a, frm), (a, to)}:
                assert o == n
    # The paying party proposes: valid with no app and under the payment rule.
    new = chan.next(allocation=moved)
    update(chan, new, actor_idx=frm, expected_actor=frm)
    # Paying more than one holds is refused and changes nothing.
    with pytest.raises(InsufficientFundsError):
        alloc.transfer(frm, to, held + 1, a)
    with pytest.raises(ValueError):
        alloc.transfer(frm, to, -1, a)
    assert alloc == chan.alloc


@FAST
@given(data=st.data())
def test_payments_pass_the_payment_app(sim: SimBackend, data: st.DataObject) -> None:
    pay = PaymentApp(b"\x42" * 20)
    chan = data.draw(channels(sim, min_parts=2, app=pay.app_id))
    frm, to = data.draw(st.permutations(range(chan.n)))[:2]
    a = data.draw(st.integers(0, len(chan.alloc.assets) - 1))
    amount = data.draw(st.integers(0, chan.alloc.balance(frm, a)))
    new = chan.next(allocation=chan.alloc.transfer(frm, to, amount, a))
    update(chan, new, actor_idx=frm, expected_actor=frm, app=pay)
    if amount > 0:
        # The same state proposed by the receiver: it would pay itself.
        err = expect(
            AppTransitionError,
            lambda: update(chan, new, actor_idx=to, expected_actor=to, app=pay),
            chan,
            new.version,
        )
        assert "may not" in str(err)


@FAST
@given(data=st.data())
def test_random_redistribution_is_a_valid_update(sim: SimBackend, data: st.DataObject) -> None:
    chan = data.draw(channels(sim))
    rows = []
    for row in chan.alloc.balances:
        rows.append(data.draw(split(sum(row), chan.n)))
    floor = data.draw(st.one_of(st.just(0), st.integers(0, chan.state.version + 5)))
    version = next_version(chan.state.version, floor)
    new = replace(chan.state, version=version, allocation=chan.alloc.with_balances(rows))
    actor = data.draw(st.integers(0, chan.n - 1))
    update(chan, new, actor_idx=actor, expected_actor=actor, version_floor=floor)
    if data.draw(st.booleans()):
        update(chan, new.finalized(), actor_idx=actor, expected_actor=actor, version_floor=floor)


@given(cur=st.integers(0, 2**64), floor=st.integers(0, 2**64))
def test_next_version_is_above_current_and_every_burned_version(cur: int, floor: int) -> None:
    v = next_version(cur, floor)
    assert v > cur and v > floor
    assert v in (cur + 1, floor + 1)


# --- each invalid update raises exactly its error ---------------------------------------------


class AcceptAll(App):
    """An app that accepts every transition and only empty data."""

    def __init__(self, app_id: bytes) -> None:
        self.app_id = app_id

    def decode_data(self, data: bytes) -> object:
        if data:
            raise ValueError("this app carries no data")
        return None

    def valid_transition(self, params: Params, frm: State, to: State, actor_idx: int) -> None:
        return None


class Faulty(AcceptAll):
    """An app that crashes with a given exception (a bug in the app, not a refusal)."""

    def __init__(self, app_id: bytes, exc: BaseException) -> None:
        super().__init__(app_id)
        self.exc = exc

    def valid_transition(self, params: Params, frm: State, to: State, actor_idx: int) -> None:
        raise self.exc


class Refusing(AcceptAll):
    """An app that refuses every transition, raising a bare reason like a user's app would."""

    def valid_transition(self, params: Params, frm: State, to: State, actor_idx: int) -> None:
        raise AppTransitionError("this app refuses everything")


@FAST
@given(data=st.data(), wrong=st.integers(0, 2**64 - 1))
def test_wrong_version(sim: SimBackend, data: st.DataObject, wrong: int) -> None:
    chan = data.draw(channels(sim))
    floor = data.draw(st.integers(0, chan.state.version + 10))
    expected = next_version(chan.state.version, floor)
    assume(wrong != expected)
    new = replace(chan.state, version=wrong)
    err = expect(VersionError, lambda: update(chan, new, version_floor=floor), chan, wrong)
    assert (err.expected, err.got) == (expected, wrong)


@FAST
@given(data=st.data())
def test_changed_totals(sim: SimBackend, data: st.DataObject) -> None:
    chan = data.draw(channels(sim))
    a = data.draw(st.integers(0, len(chan.alloc.assets) - 1))
    p = data.draw(st.integers(0, chan.n - 1))
    old_total = chan.alloc.totals()[a]
    # Create or destroy money without breaking any other rule.
    delta = data.draw(st.integers(-chan.alloc.balance(p, a), MAX - old_total).filter(bool))
    rows = [list(r) for r in chan.alloc.balances]
    rows[a][p] += delta
    new = chan.next(allocation=chan.alloc.with_balances(rows))
    err = expect(TotalsMismatchError, lambda: update(chan, new), chan, new.version)
    assert (err.asset, err.old, err.new) == (a, old_total, old_total + delta)


@FAST
@given(data=st.data())
def test_negative_balance(sim: SimBackend, data: st.DataObject) -> None:
    chan = data.draw(channels(sim))
    rows = [list(r) for r in chan.alloc.balances]
    a = data.draw(st.integers(0, len(rows) - 1))
    p = data.draw(st.integers(0, chan.n - 1))
    # Even when the totals still match, a negative balance is refused (U7 before U9).
    debt = data.draw(st.integers(1, 2**300))
    rows[a][p] = -debt
    new = chan.next(allocation=chan.alloc.with_balances(rows))
    expect(NegativeBalanceError, lambda: update(chan, new), chan, new.version)
    expect(
        NegativeBalanceError,
        lambda: check_allocation(new.allocation, chan.n, channel_id=chan.params.id, version=7),
        chan,
        7,
    )


@FAST
@given(data=st.data())
def test_balance_overflow(sim: SimBackend, data: st.DataObject) -> None:
    chan = data.draw(channels(sim, min_parts=2))
    rows = [list(r) for r in chan.alloc.balances]
    a = data.draw(st.integers(0, len(rows) - 1))
    if data.draw(st.booleans()):
        rows[a][0] = data.draw(st.integers(BOUND, 2**300))  # one value too large
    else:
        rows[a][0], rows[a][1] = MAX, MAX  # each fits, their total does not
    new = chan.next(allocation=chan.alloc.with_balances(rows))
    expect(BalanceOverflowError, lambda: update(chan, new), chan, new.version)


@FAST
@given(data=st.data())
def test_locked_overflow_and_negative(sim: SimBackend, data: st.DataObject) -> None:
    chan = data.draw(channels(sim))
    assume(chan.alloc.locked)
    s = chan.alloc.locked[0]
    bad = data.draw(st.sampled_from([-1, BOUND]))
    sub = replace(s, balances=(bad, *s.balances[1:]))
    new = chan.next(allocation=replace(chan.alloc, locked=(sub, *chan.alloc.locked[1:])))
    err_type = NegativeBalanceError if bad < 0 else BalanceOverflowError
    expect(err_type, lambda: update(chan, new, allow_locked_change=True), chan, new.version)


other_asset = st.builds(Asset, st.integers(0, MAX), st.just(b"OTHER-ASSET"))


@FAST
@given(data=st.data(), how=st.sampled_from(["replace", "append", "drop", "reorder"]))
def test_changed_assets(sim: SimBackend, data: st.DataObject, how: str) -> None:
    chan = data.draw(channels(sim, locked=False))
    assets, rows = list(chan.alloc.assets), [list(r) for r in chan.alloc.balances]
    if how == "replace":
        assets[-1] = data.draw(other_asset)
    elif how == "append":
        assets.append(data.draw(other_asset))
        rows.append([0] * chan.n)
    elif how == "drop":
        assume(len(assets) > 1 and sum(rows[-1]) == 0)
        assets.pop()
        rows.pop()
    else:
        assume(len(assets) > 1)
        assets.reverse()
        rows.reverse()
    new = chan.next(allocation=Allocation(assets, rows))
    expect(AssetsChangedError, lambda: update(chan, new), chan, new.version)


@FAST
@given(data=st.data(), how=st.sampled_from(["lock", "unlock", "index_map", "reorder"]))
def test_changed_locked_funds(sim: SimBackend, data: st.DataObject, how: str) -> None:
    chan = data.draw(channels(sim, min_parts=2))
    alloc = chan.alloc
    locked = list(alloc.locked)
    rows = [list(r) for r in alloc.balances]
    if how == "lock":
        # Open a sub-channel from participant 0's balances: totals stay the same.
        sub_id = data.draw(st.binary(min_size=32, max_size=32))
        assume(sub_id != chan.params.id and all(s.id != sub_id for s in locked))
        amounts = tuple(r[0] for r in rows)
        for r in rows:
            r[0] = 0
        locked.append(SubAlloc(sub_id, amounts, (0, 1)))
    elif how == "unlock":
        assume(locked)
        gone = locked.pop(0)
        for a, r in enumerate(rows):
            r[gone.index_map[0]] += gone.balances[a]
    elif how == "index_map":
        assume(locked and len(locked[0].index_map) > 1)
        s = locked[0]
        locked[0] = replace(s, index_map=tuple(reversed(s.index_map)))
    else:
        assume(len(locked) > 1 and locked[0] != locked[1])
        locked.reverse()
    new = chan.next(allocation=Allocation(alloc.assets, rows, locked))
    expect(LockedFundsChangedError, lambda: update(chan, new), chan, new.version)
    # Sub-channel funding and settlement updates check the locked funds themselves.
    update(chan, new, allow_locked_change=True)


@FAST
@given(data=st.data())
def test_update_after_final_state(sim: SimBackend, data: st.DataObject) -> None:
    chan = data.draw(channels(sim))
    final = replace(chan, state=chan.state.finalized())
    new = final.next(is_final=data.draw(st.booleans()))
    expect(FinalStateError, lambda: update(final, new), chan, new.version)


@FAST
@given(data=st.data(), other=st.binary(min_size=0, max_size=40))
def test_state_of_another_channel(sim: SimBackend, data: st.DataObject, other: bytes) -> None:
    chan = data.draw(channels(sim))
    assume(other != chan.params.id)
    new = chan.next(channel_id=other)
    expect(ChannelIDMismatchError, lambda: update(chan, new), chan, new.version)


@FAST
@given(data=st.data(), app=st.one_of(st.none(), st.binary(min_size=1, max_size=64)))
def test_other_app(sim: SimBackend, data: st.DataObject, app: bytes | None) -> None:
    own = AcceptAll(b"\x07" * 20)
    chan = data.draw(channels(sim, app=data.draw(st.sampled_from([None, own.app_id]))))
    assume(app != chan.params.app)
    new = chan.next(app=app)
    expect(
        AppMismatchError,
        lambda: update(chan, new, app=own if chan.params.app else None),
        chan,
        new.version,
    )


@FAST
@given(data=st.data(), which=st.sampled_from(["no-app", "payment", "decode", "too-large"]))
def test_bad_app_data(sim: SimBackend, data: st.DataObject, which: str) -> None:
    apps: dict[str, App | None] = {
        "no-app": None,
        "payment": PaymentApp(b"\x01" * 20),
        "decode": AcceptAll(b"\x02" * 20),
        "too-large": AcceptAll(b"\x03" * 20),
    }
    app = apps[which]
    chan = data.draw(channels(sim, app=app.app_id if app else None))
    if which == "too-large":
        blob = b"\x00" * (limits.MAX_APP_DATA + 1)
    else:
        blob = data.draw(st.binary(min_size=1, max_size=64))
    new = chan.next(data=blob)
    err = expect(InvalidAppDataError, lambda: update(chan, new, app=app), chan, new.version)
    if which == "decode":
        assert isinstance(err.__cause__, ValueError)


@FAST
@given(data=st.data())
def test_wrong_actor(sim: SimBackend, data: st.DataObject) -> None:
    chan = data.draw(channels(sim))
    expected_actor = data.draw(st.integers(0, chan.n - 1))
    actor = data.draw(
        st.one_of(st.integers(-3, chan.n + 3), st.integers(-(2**20), 2**20)).filter(
            lambda x: x != expected_actor
        )
    )
    new = chan.next()
    expect(
        ActorMismatchError,
        lambda: update(chan, new, actor_idx=actor, expected_actor=expected_actor),
        chan,
        new.version,
    )


@FAST
@given(data=st.data())
def test_app_refusal_carries_the_channel(sim: SimBackend, data: st.DataObject) -> None:
    app = Refusing(b"\x05" * 20)
    chan = data.draw(channels(sim, app=app.app_id))
    new = chan.next()
    err = expect(AppTransitionError, lambda: update(chan, new, app=app), chan, new.version)
    assert "refuses everything" in str(err)


crash = st.sampled_from(
    [
        ValueError("bad"),
        KeyError("missing"),
        ZeroDivisionError("division by zero"),
        RuntimeError("boom"),
        TypeError("wrong type"),
        AssertionError("assert"),
        IndexError("out of range"),
        OverflowError("big"),
        RecursionError("deep"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad byte"),
    ]
)


@FAST
@given(data=st.data(), exc=crash)
def test_app_fault(sim: SimBackend, data: st.DataObject, exc: Exception) -> None:
    app = Faulty(b"\x06" * 20, exc)
    chan = data.draw(channels(sim, app=app.app_id))
    new = chan.next()
    err = expect(AppFaultError, lambda: update(chan, new, app=app), chan, new.version)
    assert err.__cause__ is exc
    assert type(exc).__name__ in str(err)
    assert isinstance(err, AppTransitionError)  # a fault is treated as a refusal


def _malform(chan: Chan, how: str, data: st.DataObject) -> Allocation:
    """An allocation with the same totals per asset (where possible) that is malformed."""
    alloc = chan.alloc
    assets, rows, locked = list(alloc.assets), [list(r) for r in alloc.balances], list(alloc.locked)
    fresh_id = b"\xab" * 32
    if how == "no-assets":
        return Allocation((), ())
    if how == "duplicate-asset":
        assets.append(assets[0])
        rows.append([0] * chan.n)
    elif how == "missing-row":
        rows.pop()
    elif how == "extra-row":
        rows.append([0] * chan.n)
    elif how == "short-row":
        r = data.draw(st.integers(0, len(rows) - 1))
        rows[r] = rows[r][:-1]
    elif how == "long-row":
        r = data.draw(st.integers(0, len(rows) - 1))
        rows[r] = [*rows[r], 0]
    elif how == "not-int":
        r = data.draw(st.integers(0, len(rows) - 1))
        rows[r][0] = data.draw(st.sampled_from([True, 1.0, "1", None]))
    elif how == "duplicate-sub-id":
        locked = [*locked, SubAlloc(locked[0].id if locked else fresh_id, (0,) * len(assets), (0,))]
        if len(locked) == 1:
            locked.append(locked[0])
    elif how == "sub-id-is-channel":
        locked.append(SubAlloc(chan.params.id, (0,) * len(assets), (0,)))
    elif how == "sub-id-length":
        locked.append(
            SubAlloc(
                b"\x01" * data.draw(st.integers(0, 64).filter(lambda x: x != 32)),
                (0,) * len(assets),
                (0,),
            )
        )
    elif how == "sub-balances-length":
        locked.append(SubAlloc(fresh_id, (0,) * (len(assets) + 1), (0,)))
    elif how == "index-map-empty":
        locked.append(SubAlloc(fresh_id, (0,) * len(assets), ()))
    elif how == "index-map-duplicate":
        locked.append(SubAlloc(fresh_id, (0,) * len(assets), (0, 0)))
    elif how == "index-map-out-of-range":
        bad = data.draw(st.one_of(st.integers(chan.n, chan.n + 5), st.integers(-5, -1)))
        locked.append(SubAlloc(fresh_id, (0,) * len(assets), (bad,)))
    elif how == "too-many-subs":
        locked = [
            SubAlloc(i.to_bytes(32, "big"), (0,) * len(assets), (0,))
            for i in range(1, limits.MAX_SUBALLOCS + 2)
        ]
    else:  # pragma: no cover
        raise AssertionError(how)
    return Allocation(assets, rows, locked)


MALFORMED = [
    "no-assets",
    "duplicate-asset",
    "missing-row",
    "extra-row",
    "short-row",
    "long-row",
    "not-int",
    "duplicate-sub-id",
    "sub-id-is-channel",
    "sub-id-length",
    "sub-balances-length",
    "index-map-empty",
    "index-map-duplicate",
    "index-map-out-of-range",
    "too-many-subs",
]


@FAST
@given(data=st.data(), how=st.sampled_from(MALFORMED))
def test_malformed_allocation(sim: SimBackend, data: st.DataObject, how: str) -> None:
    chan = data.draw(channels(sim))
    bad = _malform(chan, how, data)
    new = chan.next(allocation=bad)
    # Well-formedness (U6) comes before every value and comparison rule.
    expect(
        InvalidAllocationError,
        lambda: update(chan, new, allow_locked_change=True),
        chan,
        new.version,
    )
    expect(
        InvalidAllocationError,
        lambda: check_allocation(bad, chan.n, channel_id=chan.params.id, version=new.version),
        chan,
        new.version,
    )


def test_allocation_limits(sim: SimBackend) -> None:
    pid = b"\x00" * 32
    many = [Asset(1, i.to_bytes(4, "big")) for i in range(limits.MAX_ASSETS + 1)]
    check_allocation(Allocation(many[:-1], [[1]] * limits.MAX_ASSETS), 1)
    with pytest.raises(InvalidAllocationError):
        check_allocation(Allocation(many, [[1]] * len(many)), 1, channel_id=pid)
    one = [Asset(1, b"ETH")]
    subs = [SubAlloc(i.to_bytes(32, "big"), (0,), (0,)) for i in range(limits.MAX_SUBALLOCS)]
    check_allocation(Allocation(one, [[0]], subs), 1)
    # The largest possible balance fits, one more does not.
    check_allocation(Allocation(one, [[MAX, 0]]), 2)
    with pytest.raises(BalanceOverflowError):
        check_allocation(Allocation(one, [[MAX, 1]]), 2)
    with pytest.raises(BalanceOverflowError):
        check_allocation(Allocation(one, [[MAX]], [SubAlloc(b"\x01" * 32, (1,), (0,))]), 1)


# --- several broken rules: the first in rule order wins ----------------------------------------

RULES: list[tuple[str, type[InvalidUpdateError]]] = [
    ("U2", ChannelIDMismatchError),
    ("U3", FinalStateError),
    ("U4", VersionError),
    ("U5-app", AppMismatchError),
    ("U5-data", InvalidAppDataError),
    ("U6", InvalidAllocationError),
    ("U7", NegativeBalanceError),
    ("U8", AssetsChangedError),
    ("U9", TotalsMismatchError),
    ("U10", LockedFundsChangedError),
    ("U11", ActorMismatchError),
    ("U12", AppTransitionError),
]


@settings(FAST, max_examples=120)
@given(data=st.data(), broken=st.sets(st.sampled_from([r for r, _ in RULES]), min_size=1))
def test_first_broken_rule_wins(sim: SimBackend, data: st.DataObject, broken: set[str]) -> None:
    app_id = b"\x09" * 20
    # Totals stay below 2**256 - 1 so "create one coin" breaks only U9.
    chan = data.draw(channels(sim, app=app_id, max_total=MAX - 1))
    cur = chan.state.finalized() if "U3" in broken else chan.state
    version = cur.version + (2 if "U4" in broken else 1)
    assets = list(cur.allocation.assets)
    rows = [list(r) for r in cur.allocation.balances]
    locked = list(cur.allocation.locked)
    if "U9" in broken:
        rows[0][-1] += 1
    if "U7" in broken:
        rows[0][0] = -1
    if "U6" in broken:
        # Malformed in a later row than the negative balance: shape is checked first.
        rows[-1] = [*rows[-1], 0]
    if "U8" in broken:
        assets[-1] = Asset(0, b"SOMETHING-ELSE")
    if "U10" in broken:
        locked.append(SubAlloc(b"\xee" * 32, (0,) * len(assets), (0,)))
    new = State(
        channel_id=b"\x00" * 31 + b"\x01" if "U2" in broken else chan.params.id,
        version=version,
        allocation=Allocation(assets, rows, locked),
        app=b"\x08" * 20 if "U5-app" in broken else app_id,
        data=b"junk" if "U5-data" in broken else b"",
    )
    app = Refusing(app_id) if "U12" in broken else AcceptAll(app_id)
    actor = 1 if "U11" in broken else 0
    first = next(err for rule, err in RULES if rule in broken)
    expect(
        first,
        lambda: check_update(
            chan.params,
            cur,
            new,
            actor_idx=actor,
            expected_actor=0,
            version_floor=0,
            app=app,
        ),
        chan,
        version,
    )


def test_shape_before_values_in_one_allocation() -> None:
    """A negative balance in row 0 and a short row 1: the shape rule (U6) is reported."""
    assets = [Asset(1, b"A"), Asset(1, b"B")]
    with pytest.raises(InvalidUpdateError) as err:
        check_allocation(Allocation(assets, [[-1, 5], [3]]), 2)
    assert type(err.value) is InvalidAllocationError
    with pytest.raises(InvalidUpdateError) as err:
        sub = SubAlloc(b"\x01" * 32, (-1,), (7,))  # negative locked funds and a bad index map
        check_allocation(Allocation(assets[:1], [[1, 1]], [sub]), 2)
    assert type(err.value) is InvalidAllocationError


# --- initial states ---------------------------------------------------------------------------


@FAST
@given(data=st.data())
def test_initial_state(sim: SimBackend, data: st.DataObject) -> None:
    chan = data.draw(channels(sim, locked=False))
    v0 = replace(chan.state, version=0)
    check_initial(chan.params, v0, None)
    bad = {
        "id": replace(v0, channel_id=b"\x01" * 32),
        "version": replace(v0, version=data.draw(st.integers(1, 2**64))),
        "final": v0.finalized(),
        "app": replace(v0, app=b"\x01" * 20),
        "locked": replace(
            v0,
            allocation=replace(
                v0.allocation,
                locked=(SubAlloc(b"\x02" * 32, (0,) * len(v0.allocation.assets), (0,)),),
            ),
        ),
    }
    for name, state in bad.items():
        assume(state.channel_id != chan.params.id or name != "id")
        with pytest.raises(InvalidStateError) as err:
            check_initial(chan.params, state, None)
        assert type(err.value) is InvalidInitialStateError, name
        assert err.value.rule == "initial-state"
    rows = [list(r) for r in v0.allocation.balances]
    rows[0][0] = -1
    neg = replace(v0, allocation=v0.allocation.with_balances(rows))
    expect(NegativeBalanceError, lambda: check_initial(chan.params, neg, None), chan, 0)


def test_app_refusing_the_initial_state(sim: SimBackend) -> None:
    class Picky(AcceptAll):
        def valid_init(self, params: Params, state: State) -> None:
            raise LookupError("no such game")

    app = Picky(b"\x0a" * 20)
    a, b = Address(b"\x01" * 20), Address(b"\x02" * 20)
    params = make_params(sim, challenge_duration=60, participants=[a, b], nonce=1, app=app.app_id)
    v0 = State(params.id, 0, Allocation([Asset(1, b"ETH")], [[1, 1]]), app=app.app_id)
    check_initial(params, v0, AcceptAll(app.app_id))
    with pytest.raises(InvalidInitialStateError, match="no such game") as err:
        check_initial(params, v0, app)
    assert err.value.channel_id == params.id and err.value.version == 0


# --- phases -----------------------------------------------------------------------------------

P = Phase
# The phase transitions, written out again here so the table in phase.py is checked, not reused.
ALLOWED = {
    (P.INIT_ACTING, P.INIT_SIGNING),
    (P.INIT_SIGNING, P.FUNDING),
    (P.FUNDING, P.ACTING),
    (P.ACTING, P.SIGNING),
    (P.SIGNING, P.ACTING),
    (P.SIGNING, P.FINAL),
    *((f, P.REGISTERING) for f in (P.FUNDING, P.ACTING, P.SIGNING, P.FINAL)),
    *((f, P.REGISTERED) for f in (P.FUNDING, P.ACTING, P.SIGNING, P.FINAL, P.REGISTERING)),
    (P.REGISTERED, P.PROGRESSING),
    (P.PROGRESSED, P.PROGRESSING),
    (P.PROGRESSING, P.REGISTERED),
    (P.PROGRESSING, P.PROGRESSED),
    *((f, P.PROGRESSED) for f in (P.REGISTERED, P.PROGRESSING, P.PROGRESSED)),
    *((f, P.WITHDRAWING) for f in (P.FINAL, P.REGISTERED, P.PROGRESSED)),
    (P.WITHDRAWING, P.WITHDRAWN),
}


@pytest.mark.parametrize("frm", list(Phase), ids=str)
def test_phase_transitions(frm: Phase) -> None:
    cid = b"\x11" * 32
    for to in Phase:
        if (frm, to) in ALLOWED:
            check_transition(frm, to, channel_id=cid)
        else:
            with pytest.raises(PhaseTransitionError) as err:
                check_transition(frm, to, channel_id=cid)
            assert (err.value.frm, err.value.to) == (frm, to)
            assert err.value.channel_id == cid
            assert f"{frm.name} -> {to.name}" in str(err.value)
    assert {(frm, t) for t in ALLOWED_TRANSITIONS[frm]} == {(f, t) for f, t in ALLOWED if f == frm}


def test_phase_wire_values_are_fixed() -> None:
    assert [p.value for p in Phase] == list(range(12))
    assert [p.name for p in Phase][:6] == [
        "INIT_ACTING",
        "INIT_SIGNING",
        "FUNDING",
        "ACTING",
        "SIGNING",
        "FINAL",
    ]
    assert Phase.WITHDRAWN.value == 11 and not ALLOWED_TRANSITIONS[Phase.WITHDRAWN]


# --- params -----------------------------------------------------------------------------------

A, B, C = (Address(bytes([i]) * 20) for i in (1, 2, 3))


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"challenge_duration": 0}, "params-challenge-duration"),
        ({"challenge_duration": -5}, "params-challenge-duration"),
        ({"challenge_duration": 2**32}, "params-challenge-duration"),
        ({"participants": ()}, "params-participants"),
        ({"participants": (A, B, A)}, "params-participants"),
        (
            {"participants": tuple(Address(i.to_bytes(20, "big")) for i in range(1025))},
            "params-participants",
        ),
        ({"nonce": -1}, "params-nonce"),
        ({"nonce": 2**256}, "params-nonce"),
        ({"aux": b"\x00" * 257}, "params-aux"),
        ({"ledger_channel": True, "virtual_channel": True}, "params-flags"),
        ({"app": b""}, "params-app"),
        ({"app": b"\x01" * 65}, "params-app"),
    ],
)
def test_params_limits(changes: dict[str, Any], rule: str) -> None:
    base: dict[str, Any] = {"challenge_duration": 60, "participants": (A, B), "nonce": 0}
    base.update(changes)
    with pytest.raises(InvalidStateError) as err:
        Params(**base)
    assert err.value.rule == rule
    assert rule in str(err.value)


def test_params_at_their_limits(sim: SimBackend) -> None:
    many = tuple(Address(i.to_bytes(20, "big")) for i in range(1, 1025))
    for p in (
        Params(1, (A,), 0),
        Params(2**32 - 1, many, 2**256 - 1, app=b"\x01", aux=b"\x00" * 256),
        Params(60, [A, B], 5, app=b"\x02" * 64, ledger_channel=False, virtual_channel=True),
        Params(60, (A, B), 5, ledger_channel=False),  # a sub-channel: both flags off
    ):
        assert p.with_id(sim).id == sim.channel_id(p)
    assert Params(60, [A, B], 0).participants == (A, B)  # lists are frozen into tuples
    assert Params(60, (A, B, C), 0).index_of(C) == 2


# --- nonces and channel IDs -------------------------------------------------------------------


def test_nonce_is_fips_sha3_big_endian() -> None:
    # SHA3-256("abc") from FIPS 202; Keccak-256("abc") would be 4e03657a...
    want = 0x3A985DA74FE225B2045C172D6BD390BD855F086E3E9D525B46BFE24511431532
    assert nonce_from_shares(b"a", b"bc") == want
    assert nonce_from_shares(b"ab", b"c") == want  # the shares are simply concatenated
    assert nonce_from_shares(b"", b"") == int(
        "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a", 16
    )


@given(p=st.binary(min_size=32, max_size=32), r=st.binary(min_size=32, max_size=32))
def test_nonce_from_random_shares(p: bytes, r: bytes) -> None:
    n = nonce_from_shares(p, r)
    assert n == int.from_bytes(hashlib.sha3_256(p + r).digest(), "big")
    assert 0 <= n < 2**256
    Params(60, (A, B), n)  # always a valid nonce
    if p != r:
        assert nonce_from_shares(r, p) != n  # the order of the shares matters


@FAST
@given(
    aux=st.binary(max_size=256),
    other=st.binary(max_size=256),
    nonce=st.integers(0, MAX),
    d=st.integers(1, 2**32 - 1),
)
def test_sim_channel_id_binds_every_field(
    sim: SimBackend, aux: bytes, other: bytes, nonce: int, d: int
) -> None:
    base = Params(d, (A, B), nonce, aux=aux)
    cid = sim.channel_id(base)
    assert len(cid) == 32
    assert sim.channel_id(Params(d, (A, B), nonce, aux=aux)) == cid  # deterministic
    variants = [
        replace(base, participants=(B, A)),
        replace(base, participants=(A, C)),
        replace(base, nonce=nonce ^ 1),
        replace(base, challenge_duration=d % (2**32 - 1) + 1),
        replace(base, app=b"\x01" * 20),
        replace(base, ledger_channel=False),
        replace(base, ledger_channel=False, virtual_channel=True),
    ]
    if other != aux:
        variants.append(replace(base, aux=other))
    ids = [sim.channel_id(v) for v in variants]
    assert cid not in ids
    assert len(set(ids)) == len(ids)
    # The backend name and a cached ID are not part of the ID.
    assert sim.channel_id(replace(base, backend="elsewhere", id=b"\x00" * 32)) == cid
    assert (
        make_params(sim, challenge_duration=d, participants=[A, B], nonce=nonce, aux=aux).id == cid
    )
