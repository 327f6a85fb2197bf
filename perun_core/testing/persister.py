"""The persister conformance suite (see docs/protocols.md): every event, every restorer, exactness.

Use it by subclassing :class:`PersisterConformance` in a test module and overriding fixtures:

``persister`` (required)
    an empty :class:`~perun_core.interfaces.Persister`; close it in the fixture's teardown.
``reopen`` (for durable stores)
    an async callable ``reopen(persister) -> Persister`` that closes ``persister`` and opens the
    same store again (a new object over the same files), as a restarted process would. The
    default closes the persister and keeps using the same object, which is right for stores
    whose data outlives ``close()`` in memory (the built-in ``memory`` persister). Persisters
    the fixture hands out must be closed by its teardown.

Example (LevelDB)::

    class TestLevelDB(PersisterConformance):
        @pytest.fixture
        async def persister(self, tmp_path):
            p = LevelDBPersister(tmp_path / "db")
            yield p
            await p.close()

The suite checks the semantics of the reference persister exactly: an event for an unknown
channel raises :class:`~perun_core.errors.UnknownChannelError`; creating a stored channel again,
a signature for a version neither staged nor current, or for a participant index out of range
raise :class:`~perun_core.errors.InvalidStateError` and change nothing; ``restore_peer`` lists
channels in creation order; ``active_peers`` is sorted by address bytes; removal leaves nothing
behind; every record round-trips exactly (hypothesis-generated records with 256-bit balances,
several assets, sub-allocations and missing signatures).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perun_core.channel.allocation import Allocation, SubAlloc
from perun_core.channel.params import Params
from perun_core.channel.phase import Phase
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Address, Asset
from perun_core.errors import (
    InvalidStateError,
    PersistenceError,
    PerunError,
    StoreClosedError,
    StoreCorruptError,
    StoreLockedError,
    UnknownChannelError,
)
from perun_core.interfaces.persister import ChannelRecord, Persister
from perun_core.persistence.kv import KeyValueStore
from perun_core.persistence.kv_persister import KVPersister
from perun_core.plugins import load_plugins

__all__ = [
    "DurableStoreConformance",
    "KeyValueStoreConformance",
    "PersisterConformance",
    "Reopen",
    "assert_same_record",
    "channel_records",
    "transactions_for",
]

Reopen = Callable[[Persister], Awaitable[Persister]]
"""Closes a persister and returns one over the same store."""

U64 = 2**64 - 1
U256 = 2**256 - 1

ALICE = Address(b"\xaa" * 20)
BOB = Address(b"\xbb" * 20)
CAROL = Address(b"\xcc" * 20)
ALICE_WIRE = Address(b"\xa1" * 20)
BOB_WIRE = Address(b"\xb1" * 20)
CAROL_WIRE = Address(b"\xc1" * 20)
ETH = Asset(1, b"ETH")
TOKEN = Asset(1, b"\x42" * 20)

HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    # One persister serves every example and each example cleans up after itself; the mixin
    # runs in several test classes (one per store), which is what differing_executors flags.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.differing_executors,
    ],
)


# --- helpers ----------------------------------------------------------------------------------


def assert_same_record(got: ChannelRecord | None, want: ChannelRecord) -> None:
    """``got`` equals ``want`` in every field, including ``params.id`` (which ``Params``
    leaves out of ``==``)."""
    assert got is not None, f"no record of channel {want.channel_id.hex()}"
    assert got == want
    assert got.channel_id == want.channel_id


def params(nonce: int, parts: tuple[Address, ...] = (ALICE, BOB)) -> Params:
    """Params with ID ``nonce`` (big-endian, 32 bytes)."""
    return Params(
        challenge_duration=60, participants=parts, nonce=nonce, id=nonce.to_bytes(32, "big")
    )


def state(p: Params, version: int, *balances: int) -> State:
    """A one-asset state of ``p`` at ``version`` (balances default to 10 each)."""
    bal = balances or (10,) * p.num_parts
    return State(p.id, version, Allocation((ETH,), (tuple(bal),)))


def sig(who: str, version: int) -> bytes:
    """A recognizable fake signature (persisters store signatures, they do not check them)."""
    return f"{who}-signs-v{version}".encode()


def created(
    p: Params, peers: tuple[Address, ...] = (ALICE_WIRE, BOB_WIRE), idx: int = 0
) -> ChannelRecord:
    """The record right after channel creation: v0 staged with our signature."""
    sigs: list[bytes | None] = [None] * p.num_parts
    sigs[idx] = sig("me", 0)
    v0 = Transaction(state(p, 0), tuple(sigs))
    return ChannelRecord(params=p, idx=idx, peers=peers, phase=Phase.INIT_SIGNING, staging=v0)


async def open_and_pay(store: Persister, p: Params) -> ChannelRecord:
    """Create, fund and make one payment (v1) on a two-party channel; return the record."""
    await store.channel_created(created(p))
    await store.sig_added(p.id, 0, 1, sig("bob", 0))
    v0 = Transaction(state(p, 0), (sig("me", 0), sig("bob", 0)))
    await store.enabled(p.id, v0, Phase.FUNDING)
    await store.phase_changed(p.id, Phase.ACTING, 0, False)
    v1 = Transaction.unsigned(state(p, 1, 7, 13), 2).with_sig(0, sig("me", 1))
    await store.staged(p.id, v1, Phase.SIGNING)
    await store.sig_added(p.id, 1, 1, sig("bob", 1))
    await store.enabled(p.id, v1.with_sig(1, sig("bob", 1)), Phase.ACTING)
    rec = await store.restore_channel(p.id)
    assert rec is not None
    return rec


async def kv_keys(store: Persister) -> list[bytes] | None:
    """Every key of a key-value persister's store (``None`` for other persisters)."""
    if not isinstance(store, KVPersister):
        return None
    return [k async for k, _ in store.store.iterate()]


# --- strategies -------------------------------------------------------------------------------

_ids = st.binary(min_size=32, max_size=32)
_addresses = st.builds(Address, st.binary(min_size=1, max_size=64))
_assets = st.builds(Asset, st.integers(0, U256), st.binary(min_size=1, max_size=64))
# edge values first: zero, one byte, the 64-bit edge and the 256-bit maximum
_balances = st.sampled_from([0, 1, 255, 2**64, U256]) | st.integers(0, U256)
_sigs = st.binary(min_size=1, max_size=96)
_app_ids = st.none() | st.binary(min_size=1, max_size=64)


@st.composite
def _allocations(draw: st.DrawFn, n: int) -> Allocation:
    assets = draw(st.lists(_assets, min_size=1, max_size=3, unique=True))
    rows = tuple(tuple(draw(st.lists(_balances, min_size=n, max_size=n))) for _ in assets)
    locked = draw(
        st.lists(
            st.builds(
                SubAlloc,
                _ids,
                st.lists(_balances, min_size=len(assets), max_size=len(assets)).map(tuple),
                st.permutations(range(n)).map(tuple),
            ),
            max_size=2,
            unique_by=lambda s: s.id,
        )
    )
    return Allocation(tuple(assets), rows, tuple(locked))


@st.composite
def transactions_for(draw: st.DrawFn, p: Params, version: int | None = None) -> Transaction:
    """A transaction of channel ``p`` with random allocation, app data and missing signatures."""
    n = p.num_parts
    st_ = State(
        channel_id=p.id,
        version=draw(st.sampled_from([0, 1, U64]) | st.integers(0, U64))
        if version is None
        else version,
        allocation=draw(_allocations(n)),
        app=p.app,
        data=draw(st.binary(max_size=64)),
        is_final=draw(st.booleans()),
    )
    return Transaction(st_, tuple(draw(st.lists(st.none() | _sigs, min_size=n, max_size=n))))


@st.composite
def _params(draw: st.DrawFn) -> Params:
    ledger = draw(st.booleans())
    return Params(
        challenge_duration=draw(st.integers(1, 2**32 - 1)),
        participants=tuple(draw(st.lists(_addresses, min_size=1, max_size=4, unique=True))),
        nonce=draw(_balances),
        app=draw(_app_ids),
        ledger_channel=ledger,
        virtual_channel=False if ledger else draw(st.booleans()),
        aux=draw(st.binary(max_size=16)),
        backend=draw(st.sampled_from(["sim", "eth", "ünïcode"])),
        id=draw(_ids),
    )


@st.composite
def channel_records(draw: st.DrawFn) -> ChannelRecord:
    """A random, internally consistent :class:`ChannelRecord` (every field drawn)."""
    p = draw(_params())
    return ChannelRecord(
        params=p,
        idx=draw(st.integers(0, p.num_parts - 1)),
        peers=tuple(draw(st.lists(_addresses, min_size=1, max_size=4, unique=True))),
        phase=draw(st.sampled_from(list(Phase))),
        current=draw(st.none() | transactions_for(p)),
        staging=draw(st.none() | transactions_for(p)),
        parent=draw(st.none() | _ids),
        version_floor=draw(st.sampled_from([0, U64]) | st.integers(0, U64)),
        needs_sync=draw(st.booleans()),
    )


# --- the suite --------------------------------------------------------------------------------


class PersisterConformance:
    """Tests every :class:`~perun_core.interfaces.Persister` must pass (see module docs)."""

    @pytest.fixture
    async def persister(self) -> AsyncIterator[Persister]:
        """An empty persister; override it."""
        raise NotImplementedError("override the `persister` fixture")
        yield  # pragma: no cover

    @pytest.fixture
    def reopen(self) -> Reopen:
        """Close and reopen; by default the same object (data outlives ``close()``)."""

        async def same(p: Persister) -> Persister:
            await p.close()
            return p

        return same

    # --- basics -------------------------------------------------------------------------

    def test_is_a_complete_persister(self, persister: Persister) -> None:
        assert isinstance(persister, Persister)
        assert not getattr(type(persister), "__abstractmethods__", None)

    async def test_an_empty_store_restores_nothing(self, persister: Persister) -> None:
        assert await persister.active_peers() == []
        assert await persister.restore_peer(BOB_WIRE) == []
        assert await persister.restore_channel(b"\x01" * 32) is None

    async def test_created_record_round_trips_with_every_field(self, persister: Persister) -> None:
        p = params(2)
        current = Transaction(state(p, 3, 5, 15), (sig("me", 3), sig("bob", 3)))
        rec = created(p).evolve(
            parent=b"\x07" * 32, version_floor=4, needs_sync=True, current=current
        )
        await persister.channel_created(rec)
        assert_same_record(await persister.restore_channel(p.id), rec)
        got = await persister.restore_peer(BOB_WIRE)
        assert len(got) == 1
        assert_same_record(got[0], rec)

    async def test_open_and_pay_restores_the_last_record(self, persister: Persister) -> None:
        p = params(1)
        restored = await open_and_pay(persister, p)
        expected = ChannelRecord(
            params=p,
            idx=0,
            peers=(ALICE_WIRE, BOB_WIRE),
            phase=Phase.ACTING,
            current=Transaction(state(p, 1, 7, 13), (sig("me", 1), sig("bob", 1))),
        )
        assert_same_record(restored, expected)
        assert restored.current is not None and restored.current.fully_signed
        assert await persister.restore_peer(BOB_WIRE) == [expected]
        assert await persister.active_peers() == [ALICE_WIRE, BOB_WIRE]

    # --- staging ------------------------------------------------------------------------

    async def test_staged_then_discarded_keeps_current_and_raises_the_floor(
        self, persister: Persister
    ) -> None:
        p = params(3)
        await open_and_pay(persister, p)
        v2 = Transaction.unsigned(state(p, 2, 0, 20), 2).with_sig(0, sig("me", 2))
        await persister.staged(p.id, v2, Phase.SIGNING)
        await persister.sig_added(p.id, 2, 0, sig("me", 2))  # re-adding our own is idempotent

        rec = await persister.restore_channel(p.id)
        assert rec is not None and rec.staging == v2 and rec.phase is Phase.SIGNING
        assert rec.current is not None and rec.current.state.version == 1

        await persister.staged(p.id, None, Phase.ACTING)
        await persister.phase_changed(p.id, Phase.ACTING, 2, False)
        rec = await persister.restore_channel(p.id)
        assert rec is not None
        assert rec.staging is None and rec.version_floor == 2 and rec.phase is Phase.ACTING
        assert rec.current is not None and rec.current.state.balances == ((7, 13),)

    async def test_staging_replaces_the_previous_staging(self, persister: Persister) -> None:
        p = params(15)
        await open_and_pay(persister, p)
        a = Transaction.unsigned(state(p, 2, 1, 19), 2).with_sig(0, sig("me", 2))
        b = Transaction.unsigned(state(p, 3, 2, 18), 2).with_sig(1, sig("bob", 3))
        await persister.staged(p.id, a, Phase.SIGNING)
        await persister.staged(p.id, b, Phase.SIGNING)
        rec = await persister.restore_channel(p.id)
        assert rec is not None and rec.staging == b
        # the replaced version is gone: its signatures have nowhere to go
        with pytest.raises(InvalidStateError):
            await persister.sig_added(p.id, 2, 1, sig("bob", 2))
        await persister.sig_added(p.id, 3, 0, sig("me", 3))
        rec = await persister.restore_channel(p.id)
        assert rec is not None and rec.staging is not None
        assert rec.staging.sigs == (sig("me", 3), sig("bob", 3))

    async def test_enabled_clears_staging_and_sets_the_phase(self, persister: Persister) -> None:
        p = params(16)
        await open_and_pay(persister, p)
        v2 = Transaction(state(p, 2, 0, 20), (sig("me", 2), sig("bob", 2)))
        await persister.staged(p.id, Transaction(v2.state, (sig("me", 2), None)), Phase.SIGNING)
        await persister.enabled(p.id, v2, Phase.FINAL)
        rec = await persister.restore_channel(p.id)
        assert rec is not None
        assert (rec.current, rec.staging, rec.phase) == (v2, None, Phase.FINAL)

    # --- signatures ---------------------------------------------------------------------

    async def test_signatures_go_to_the_transaction_of_their_version(
        self, persister: Persister
    ) -> None:
        p = params(17)
        await persister.channel_created(created(p))
        half_v0 = Transaction(state(p, 0), (sig("me", 0), None))
        await persister.enabled(p.id, half_v0, Phase.INIT_SIGNING)
        v1 = Transaction.unsigned(state(p, 1, 9, 11), 2)
        await persister.staged(p.id, v1, Phase.SIGNING)
        await persister.sig_added(p.id, 0, 1, sig("bob", 0))  # late signature: on current
        await persister.sig_added(p.id, 1, 0, sig("me", 1))  # on staging
        rec = await persister.restore_channel(p.id)
        assert rec is not None and rec.current is not None and rec.staging is not None
        assert rec.current.sigs == (sig("me", 0), sig("bob", 0))
        assert rec.staging.sigs == (sig("me", 1), None)

    async def test_staging_wins_when_staging_and_current_share_a_version(
        self, persister: Persister
    ) -> None:
        p = params(18)
        await persister.channel_created(created(p))
        cur = Transaction(state(p, 0), (sig("me", 0), None))
        await persister.enabled(p.id, cur, Phase.INIT_SIGNING)
        await persister.staged(p.id, Transaction.unsigned(state(p, 0), 2), Phase.INIT_SIGNING)
        await persister.sig_added(p.id, 0, 1, sig("bob", 0))
        rec = await persister.restore_channel(p.id)
        assert rec is not None and rec.staging is not None
        assert rec.staging.sigs == (None, sig("bob", 0))
        assert rec.current == cur

    async def test_signature_for_a_version_neither_staged_nor_current_is_refused(
        self, persister: Persister
    ) -> None:
        p = params(12)
        rec = await open_and_pay(persister, p)
        with pytest.raises(InvalidStateError, match="neither staged nor current") as info:
            await persister.sig_added(p.id, 5, 1, sig("bob", 5))
        assert info.value.version == 5 and info.value.channel_id == p.id
        assert_same_record(await persister.restore_channel(p.id), rec)

    @pytest.mark.parametrize("idx", [2, 7, -1])
    async def test_signature_for_a_participant_index_out_of_range_is_refused(
        self, persister: Persister, idx: int
    ) -> None:
        p = params(13)
        rec = created(p)
        await persister.channel_created(rec)
        with pytest.raises(InvalidStateError, match="2 participants"):
            await persister.sig_added(p.id, 0, idx, b"s")
        assert_same_record(await persister.restore_channel(p.id), rec)

    # --- phases -------------------------------------------------------------------------

    async def test_dispute_phases_floor_and_sync_flag_are_stored(
        self, persister: Persister
    ) -> None:
        p = params(5)
        rec = await open_and_pay(persister, p)
        await persister.phase_changed(p.id, Phase.REGISTERING, 1, True)
        got = await persister.restore_channel(p.id)
        assert_same_record(
            got, rec.evolve(phase=Phase.REGISTERING, version_floor=1, needs_sync=True)
        )
        await persister.phase_changed(p.id, Phase.REGISTERED, U64, False)
        got = await persister.restore_channel(p.id)
        assert_same_record(got, rec.evolve(phase=Phase.REGISTERED, version_floor=U64))

    # --- errors -------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "event", ["staged", "sig_added", "enabled", "phase_changed", "channel_removed"]
    )
    async def test_event_for_an_unknown_channel_is_a_clear_error(
        self, persister: Persister, event: str
    ) -> None:
        p = params(11)
        other = params(99)
        await persister.channel_created(created(other))
        tx = Transaction.unsigned(state(p, 0), 2)
        calls = {
            "staged": lambda: persister.staged(p.id, tx, Phase.SIGNING),
            "sig_added": lambda: persister.sig_added(p.id, 0, 0, b"s"),
            "enabled": lambda: persister.enabled(p.id, tx, Phase.ACTING),
            "phase_changed": lambda: persister.phase_changed(p.id, Phase.ACTING, 0, False),
            "channel_removed": lambda: persister.channel_removed(p.id),
        }
        with pytest.raises(UnknownChannelError) as info:
            await calls[event]()
        assert isinstance(info.value, PerunError)
        assert event in str(info.value) and "channel_created" in str(info.value)
        assert await persister.restore_channel(p.id) is None
        assert [r.channel_id for r in await persister.restore_peer(BOB_WIRE)] == [other.id]

    async def test_creating_a_stored_channel_twice_is_refused(self, persister: Persister) -> None:
        p = params(14)
        rec = await open_and_pay(persister, p)
        with pytest.raises(InvalidStateError, match="already stored"):
            await persister.channel_created(created(p, peers=(ALICE_WIRE, CAROL_WIRE)))
        assert_same_record(await persister.restore_channel(p.id), rec)
        assert await persister.restore_peer(CAROL_WIRE) == []
        assert await persister.active_peers() == [ALICE_WIRE, BOB_WIRE]

    async def test_events_for_a_removed_channel_are_refused(self, persister: Persister) -> None:
        p = params(19)
        await open_and_pay(persister, p)
        await persister.channel_removed(p.id)
        with pytest.raises(UnknownChannelError):
            await persister.phase_changed(p.id, Phase.ACTING, 0, False)
        with pytest.raises(UnknownChannelError):
            await persister.channel_removed(p.id)
        # ... and the ID can be used again (a new channel with the same ID)
        await persister.channel_created(created(p))
        assert_same_record(await persister.restore_channel(p.id), created(p))

    # --- removal and the peer index -----------------------------------------------------

    async def test_removal_leaves_nothing_behind(self, persister: Persister) -> None:
        before = await kv_keys(persister)
        p1, p2 = params(6), params(7)
        await open_and_pay(persister, p1)
        v2 = Transaction.unsigned(state(p1, 2, 3, 17), 2)
        await persister.staged(p1.id, v2, Phase.SIGNING)  # a staged tx is removed too
        await persister.channel_created(created(p2, peers=(ALICE_WIRE, CAROL_WIRE)))

        await persister.channel_removed(p1.id)
        assert await persister.restore_channel(p1.id) is None
        assert await persister.restore_peer(BOB_WIRE) == []
        assert await persister.active_peers() == [ALICE_WIRE, CAROL_WIRE]
        assert [r.channel_id for r in await persister.restore_peer(ALICE_WIRE)] == [p2.id]

        await persister.channel_removed(p2.id)
        assert await persister.active_peers() == []
        assert await persister.restore_peer(ALICE_WIRE) == []
        after = await kv_keys(persister)
        if after is not None:
            # only store-wide bookkeeping may remain: no key of either channel
            assert before is not None
            leftovers = [k for k in after if k not in before]
            assert all(p1.id not in k and p2.id not in k for k in after), leftovers
            assert len(leftovers) <= 2, leftovers

    async def test_restore_peer_lists_channels_in_creation_order(
        self, persister: Persister
    ) -> None:
        ids = []
        for nonce in (30, 10, 20, 25):
            p = params(nonce)
            ids.append(p.id)
            await persister.channel_created(created(p))
        await persister.channel_removed(ids.pop(1))
        p = params(5)
        await persister.channel_created(created(p))
        ids.append(p.id)
        assert [r.channel_id for r in await persister.restore_peer(BOB_WIRE)] == ids
        assert await persister.restore_peer(CAROL_WIRE) == []

    async def test_peers_of_different_lengths_and_shared_prefixes_stay_apart(
        self, persister: Persister
    ) -> None:
        short, long_, longer = Address(b"\x01"), Address(b"\x01\x00"), Address(b"\x01\x00\xff")
        high = Address(b"\xff" * 64)
        p1, p2, p3 = params(41), params(42), params(43, (ALICE, BOB, CAROL))
        await persister.channel_created(created(p1, peers=(short, long_)))
        await persister.channel_created(created(p2, peers=(longer, high)))
        await persister.channel_created(created(p3, peers=(high, short, ALICE_WIRE)))
        assert await persister.active_peers() == sorted([short, long_, longer, high, ALICE_WIRE])
        assert [r.channel_id for r in await persister.restore_peer(short)] == [p1.id, p3.id]
        assert [r.channel_id for r in await persister.restore_peer(long_)] == [p1.id]
        assert [r.channel_id for r in await persister.restore_peer(longer)] == [p2.id]
        assert [r.channel_id for r in await persister.restore_peer(high)] == [p2.id, p3.id]
        assert await persister.restore_peer(Address(b"\x01\x00\x00")) == []
        await persister.channel_removed(p1.id)
        assert await persister.active_peers() == sorted([short, longer, high, ALICE_WIRE])

    async def test_records_handed_out_never_change(self, persister: Persister) -> None:
        p = params(8)
        await persister.channel_created(created(p))
        before = await persister.restore_channel(p.id)
        assert before is not None
        await persister.phase_changed(p.id, Phase.FUNDING, 3, True)
        await persister.sig_added(p.id, 0, 1, sig("bob", 0))
        assert before.phase is Phase.INIT_SIGNING and before.version_floor == 0
        assert before.staging is not None and before.staging.sigs == (sig("me", 0), None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            before.phase = Phase.ACTING  # type: ignore[misc]

    # --- concurrency and durability -----------------------------------------------------

    async def test_concurrent_events_on_different_channels_do_not_interfere(
        self, persister: Persister
    ) -> None:
        n_channels, n_updates = 24, 12
        peers = [Address(bytes([0x10 + i % 3]) * 20) for i in range(n_channels)]

        async def life(i: int) -> ChannelRecord:
            p = params(1000 + i)
            rec = created(p, peers=(ALICE_WIRE, peers[i]))
            await persister.channel_created(rec)
            v0 = Transaction(state(p, 0), (sig("me", 0), sig("bob", 0)))
            await persister.sig_added(p.id, 0, 1, sig("bob", 0))
            await persister.enabled(p.id, v0, Phase.ACTING)
            for v in range(1, n_updates + 1):
                tx = Transaction.unsigned(state(p, v, 10 - v % 10, 10 + v % 10), 2)
                await persister.staged(p.id, tx.with_sig(0, sig("me", v)), Phase.SIGNING)
                await asyncio.sleep(0)  # let the other channels interleave
                await persister.sig_added(p.id, v, 1, sig(f"peer{i}", v))
                done = tx.with_sig(0, sig("me", v)).with_sig(1, sig(f"peer{i}", v))
                await persister.enabled(p.id, done, Phase.ACTING)
                await persister.phase_changed(p.id, Phase.ACTING, v, i % 2 == 0)
            if i % 4 == 3:
                await persister.channel_removed(p.id)
            return rec.evolve(
                phase=Phase.ACTING,
                current=done,
                staging=None,
                version_floor=n_updates,
                needs_sync=i % 2 == 0,
            )

        expected = await asyncio.gather(*(life(i) for i in range(n_channels)))
        for i, want in enumerate(expected):
            got = await persister.restore_channel(want.channel_id)
            if i % 4 == 3:
                assert got is None
            else:
                assert_same_record(got, want)
        for peer in set(peers):
            got_ids = [r.channel_id for r in await persister.restore_peer(peer)]
            want_ids = [
                r.channel_id for i, r in enumerate(expected) if peers[i] == peer and i % 4 != 3
            ]
            assert sorted(got_ids) == sorted(want_ids)

    async def test_everything_survives_a_reopen(self, persister: Persister, reopen: Reopen) -> None:
        p1, p2, p3 = params(51), params(52), params(53)
        r1 = await open_and_pay(persister, p1)
        await persister.channel_created(created(p2, peers=(ALICE_WIRE, CAROL_WIRE)))
        v2 = Transaction.unsigned(state(p1, 2, 1, 19), 2).with_sig(0, sig("me", 2))
        await persister.staged(p1.id, v2, Phase.SIGNING)
        r1 = r1.evolve(staging=v2, phase=Phase.SIGNING)
        r2 = await persister.restore_channel(p2.id)
        await persister.channel_created(created(p3))
        await persister.channel_removed(p3.id)

        again = await reopen(persister)
        assert_same_record(await again.restore_channel(p1.id), r1)
        assert r2 is not None
        assert_same_record(await again.restore_channel(p2.id), r2)
        assert await again.restore_channel(p3.id) is None
        assert await again.active_peers() == [ALICE_WIRE, BOB_WIRE, CAROL_WIRE]

        # the reopened store carries on: a signature for the staged tx, and creation order
        await again.sig_added(p1.id, 2, 1, sig("bob", 2))
        p4 = params(4)  # a smaller ID than the others: order is by creation, not by ID
        await again.channel_created(created(p4))
        assert [r.channel_id for r in await again.restore_peer(ALICE_WIRE)] == [
            p1.id,
            p2.id,
            p4.id,
        ]
        third = await reopen(again)
        got = await third.restore_channel(p1.id)
        assert got is not None and got.staging == v2.with_sig(1, sig("bob", 2))
        assert [r.channel_id for r in await third.restore_peer(ALICE_WIRE)] == [
            p1.id,
            p2.id,
            p4.id,
        ]

    # --- exactness (hypothesis) ---------------------------------------------------------

    @HYPOTHESIS
    @given(rec=channel_records())
    async def test_any_record_round_trips_exactly(
        self, persister: Persister, rec: ChannelRecord
    ) -> None:
        if await persister.restore_channel(rec.channel_id) is not None:
            await persister.channel_removed(rec.channel_id)
        await persister.channel_created(rec)
        try:
            assert_same_record(await persister.restore_channel(rec.channel_id), rec)
            for peer in rec.peers:
                assert rec.channel_id in [r.channel_id for r in await persister.restore_peer(peer)]
                assert peer in await persister.active_peers()
        finally:
            await persister.channel_removed(rec.channel_id)
        assert await persister.restore_channel(rec.channel_id) is None

    @HYPOTHESIS
    @given(data=st.data())
    async def test_any_transaction_round_trips_through_every_event(
        self, persister: Persister, data: st.DataObject
    ) -> None:
        rec = data.draw(channel_records())
        if await persister.restore_channel(rec.channel_id) is not None:
            await persister.channel_removed(rec.channel_id)
        await persister.channel_created(rec.evolve(current=None, staging=None))
        try:
            staging = data.draw(transactions_for(rec.params))
            await persister.staged(rec.channel_id, staging, Phase.SIGNING)
            idx = data.draw(st.integers(0, rec.params.num_parts - 1))
            s = data.draw(_sigs)
            await persister.sig_added(rec.channel_id, staging.state.version, idx, s)
            staging = staging.with_sig(idx, s)
            got = await persister.restore_channel(rec.channel_id)
            assert got is not None and got.staging == staging and got.current is None

            current = data.draw(transactions_for(rec.params))
            await persister.enabled(rec.channel_id, current, Phase.ACTING)
            got = await persister.restore_channel(rec.channel_id)
            assert got is not None and (got.current, got.staging) == (current, None)
            assert got.phase is Phase.ACTING
        finally:
            await persister.channel_removed(rec.channel_id)


# --- the key-value layer ----------------------------------------------------------------------


class KeyValueStoreConformance:
    """Tests every :class:`~perun_core.persistence.kv.KeyValueStore` must pass.

    Fixtures to override: ``kv`` (an empty store; close it in teardown) and, for stores whose
    data outlives the object, ``kv_reopen`` (an async callable that closes the store and opens
    it again; the default keeps using the same object).
    """

    @pytest.fixture
    async def kv(self) -> AsyncIterator[KeyValueStore]:
        """An empty store; override it."""
        raise NotImplementedError("override the `kv` fixture")
        yield  # pragma: no cover

    @pytest.fixture
    def kv_reopen(self) -> Callable[[KeyValueStore], Awaitable[KeyValueStore]]:
        """Close and reopen; by default the same object (data outlives ``close()``)."""

        async def same(store: KeyValueStore) -> KeyValueStore:
            await store.close()
            return store

        return same

    KEYS = (b"", b"\x00", b"\x00\x00", b"a", b"a\x00", b"a\xff", b"a\xff\xff", b"ab", b"b", b"\xff")

    @staticmethod
    async def _all(store: KeyValueStore, prefix: bytes = b"", **kw: Any) -> list[bytes]:
        return [k async for k, _ in store.iterate(prefix, **kw)]

    async def test_get_put_overwrite_delete(self, kv: KeyValueStore) -> None:
        assert await kv.get(b"k") is None
        await kv.write_batch({b"k": b"1"})
        assert await kv.get(b"k") == b"1"
        await kv.write_batch([(b"k", b"2"), (b"k", b"3")])  # pairs apply in order
        assert await kv.get(b"k") == b"3"
        await kv.write_batch({}, [b"k", b"missing"])  # deleting a missing key is fine
        assert await kv.get(b"k") is None
        await kv.write_batch({b"e": b""})  # empty values are values
        assert await kv.get(b"e") == b""

    async def test_a_key_deleted_and_put_in_one_batch_ends_up_put(self, kv: KeyValueStore) -> None:
        await kv.write_batch({b"k": b"old"})
        await kv.write_batch({b"k": b"new"}, [b"k"])
        assert await kv.get(b"k") == b"new"

    async def test_iteration_is_in_unsigned_byte_order_with_prefix_range_and_limit(
        self, kv: KeyValueStore
    ) -> None:
        keys = [k for k in self.KEYS if k]
        await kv.write_batch({k: b"v" + k for k in reversed(keys)})
        assert await self._all(kv) == sorted(keys)
        assert [v async for _, v in kv.iterate(b"a")] == [
            b"v" + k for k in sorted(keys) if k[:1] == b"a"
        ]
        assert await self._all(kv, b"a\xff") == [b"a\xff", b"a\xff\xff"]
        assert await self._all(kv, b"\xff") == [b"\xff"]
        assert await self._all(kv, b"\x00") == [b"\x00", b"\x00\x00"]
        assert await self._all(kv, b"c") == []
        # unsigned byte order: b"ab" sorts before b"a\xff"
        assert await self._all(kv, start=b"a\x00", end=b"b") == [
            b"a\x00",
            b"ab",
            b"a\xff",
            b"a\xff\xff",
        ]
        assert await self._all(kv, b"a", start=b"a\xff\x00") == [b"a\xff\xff"]
        assert await self._all(kv, b"a", end=b"a\xff") == [b"a", b"a\x00", b"ab"]
        assert await self._all(kv, limit=3) == sorted(keys)[:3]
        assert await self._all(kv, b"a", limit=0) == []

    async def test_iteration_over_many_keys_pages_without_gaps(self, kv: KeyValueStore) -> None:
        keys = [i.to_bytes(2, "big") + b"\xff" for i in range(1300)]
        for chunk in range(0, len(keys), 500):
            await kv.write_batch({k: k for k in keys[chunk : chunk + 500]})
        assert await self._all(kv) == keys
        assert await self._all(kv, limit=1025) == keys[:1025]
        assert await self._all(kv, start=keys[700]) == keys[700:]

    async def test_a_bad_batch_changes_nothing(self, kv: KeyValueStore) -> None:
        await kv.write_batch({b"a": b"1"})
        with pytest.raises((TypeError, PerunError)):
            bad: dict[bytes, Any] = {b"b": b"2", b"c": "not bytes"}
            await kv.write_batch(bad, [b"a"])
        assert await kv.get(b"a") == b"1"
        assert await kv.get(b"b") is None

    async def test_concurrent_batches_all_land(self, kv: KeyValueStore) -> None:
        async def writer(i: int) -> None:
            for j in range(20):
                await kv.write_batch({b"w%03d-%02d" % (i, j): b"x", b"last%03d" % i: b"%d" % j})

        await asyncio.gather(*(writer(i) for i in range(30)))
        assert len(await self._all(kv, b"w")) == 600
        assert [v async for _, v in kv.iterate(b"last")] == [b"19"] * 30

    async def test_data_survives_a_reopen(
        self,
        kv: KeyValueStore,
        kv_reopen: Callable[[KeyValueStore], Awaitable[KeyValueStore]],
    ) -> None:
        await kv.write_batch({b"a": b"1", b"b": b"2", b"c": b"3"})
        await kv.write_batch({b"b": b"22"}, [b"c"])
        again = await kv_reopen(kv)
        assert [kv_ async for kv_ in again.iterate()] == [(b"a", b"1"), (b"b", b"22")]


# --- durable on-disk stores -------------------------------------------------------------------

_LOCK_HOLDER = """
import json, sys
from perun_core.plugins import load_plugins
name, path, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
p = load_plugins(only=[name]).persister(name)(path=path, **options)
print("ready", flush=True)
sys.stdin.readline()
"""

_KILL_VICTIM = """
import asyncio, json, sys
from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.plugins import load_plugins
from perun_core.testing.persister import created, params, sig, state

name, path, first, options = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])

def ack(line):
    # one write per line; the parent counts only complete lines
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()

async def main():
    p = load_plugins(only=[name]).persister(name)(path=path, **options)
    main_ch = params(7)
    rec = await p.restore_channel(main_ch.id)
    if rec is None:
        await p.channel_created(created(main_ch))
        v = 0
    else:
        v = rec.current.state.version if rec.current else 0
    n = first
    while True:
        v += 1
        tx = Transaction.unsigned(state(main_ch, v, v % 20, 20 - v % 20), 2)
        await p.staged(main_ch.id, tx.with_sig(0, sig("me", v)), Phase.SIGNING)
        await p.sig_added(main_ch.id, v, 1, sig("bob", v))
        done = tx.with_sig(0, sig("me", v)).with_sig(1, sig("bob", v))
        await p.enabled(main_ch.id, done, Phase.ACTING)
        ack(f"enabled {v}")
        if v % 5 == 0:
            n += 1
            await p.channel_created(created(params(10_000 + n)))
            ack(f"created {n}")

asyncio.run(main())
"""

_FULL_DISK_VICTIM = """
import asyncio, json, os, resource, signal, sys
from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.errors import PersistenceError, StoreFailedError
from perun_core.plugins import load_plugins
from perun_core.testing.persister import created, params, sig, state

name, path, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
# Past the file-size limit a write fails with EFBIG (as on a full disk) instead of a signal.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

def say(*words):
    print(*words, flush=True)

async def update(p, ch, v):
    tx = Transaction.unsigned(state(ch, v, v % 20, 20 - v % 20), 2)
    await p.staged(ch.id, tx.with_sig(0, sig("me", v)), Phase.SIGNING)
    await p.sig_added(ch.id, v, 1, sig("bob", v))
    done = tx.with_sig(0, sig("me", v)).with_sig(1, sig("bob", v))
    await p.enabled(ch.id, done, Phase.ACTING)

async def main():
    p = load_plugins(only=[name]).persister(name)(path=path, **options)
    ch = params(7)
    await p.channel_created(created(ch))
    biggest = max(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (biggest + 48 * 1024, hard))
    v = 0
    while True:
        try:
            await update(p, ch, v + 1)
        except PersistenceError as e:
            say("failed", type(e).__name__)
            break
        v += 1
        say("acked", v)
        if v > 10_000:
            say("never failed")
            return
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # the space is back
    ok = refused = 0
    for i in range(200):
        try:
            await update(p, ch, v + 2 + i)
            ok += 1
        except StoreFailedError:
            refused += 1
    say("after", ok, refused)
    await p.close()
    say("closed")

asyncio.run(main())
"""

_WRITE_THEN_WAIT = """
import asyncio, json, sys
from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.plugins import load_plugins
from perun_core.testing.persister import created, params, sig, state

name, path, options, updates = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])

async def main():
    p = load_plugins(only=[name]).persister(name)(path=path, **options)
    ch = params(7)
    await p.channel_created(created(ch))
    for v in range(1, updates + 1):
        tx = Transaction.unsigned(state(ch, v, v % 20, 20 - v % 20), 2).with_sig(0, sig("me", v))
        await p.staged(ch.id, tx, Phase.SIGNING)
        await p.sig_added(ch.id, v, 1, sig("bob", v))
        await p.enabled(ch.id, tx.with_sig(1, sig("bob", v)), Phase.ACTING)
    print("done", flush=True)
    sys.stdin.readline()  # until killed

asyncio.run(main())
"""


_KILLED_STORES: dict[tuple[str, str, str], str] = {}  # see DurableStoreConformance


def write_then_kill(name: str, path: str, options: dict[str, Any], updates: int) -> None:
    """In a child process, open the persister ``name`` at ``path``, create channel
    ``params(7)`` and make ``updates`` payments on it (three events each: ``staged``,
    ``sig_added``, ``enabled``), then kill the process with SIGKILL: the records are only in
    the store's write-ahead log."""
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITE_THEN_WAIT, name, path, json.dumps(options), str(updates)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "done", "the writer died"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)


class DurableStoreConformance:
    """Tests of on-disk persisters: locking, corruption, surviving ``kill -9``, failing closed
    after a failed write, and (for LevelDB-format logs) damaged and torn log records.

    Fixtures to override: ``persister_name`` (the name the plugin registers; the tests open
    stores through the plugin registry, in this process and in child processes) and
    ``corrupt_store`` (a function that damages the files of a closed store at a path so that
    opening it must fail). ``store_options`` (default ``{}``) is passed to every open.
    ``wal_files`` (default ``None``: those tests skip) lists a store's write-ahead logs, for
    stores whose logs have LevelDB's record format.
    """

    @pytest.fixture
    def persister_name(self) -> str:
        """The registered persister name; override it."""
        raise NotImplementedError("override the `persister_name` fixture")

    @pytest.fixture
    def corrupt_store(self) -> Callable[[str], None]:
        """Damage a closed store's files; override it."""
        raise NotImplementedError("override the `corrupt_store` fixture")

    @pytest.fixture
    def store_options(self) -> dict[str, Any]:
        """Extra options for every open."""
        return {}

    @pytest.fixture
    def wal_files(self) -> Callable[[str], list[str]] | None:
        """For stores that keep a LevelDB-format write-ahead log (LevelDB, RocksDB): a
        function listing a store directory's log files
        (:func:`perun_core.persistence.kv_wal.log_files`). ``None`` (the default) skips the
        log damage tests."""
        return None

    @pytest.fixture
    def open_store(
        self, persister_name: str, store_options: dict[str, Any]
    ) -> Callable[..., Persister]:
        factory = load_plugins(only=[persister_name]).persister(persister_name)

        def open_(path: object, **kw: Any) -> Persister:
            return factory(path=path, **{**store_options, **kw})

        return open_

    async def test_a_second_handle_in_this_process_is_refused_as_locked(
        self, open_store: Callable[..., Persister], tmp_path: Path
    ) -> None:
        path = str(tmp_path / "db")
        first = open_store(path)
        try:
            with pytest.raises(StoreLockedError) as info:
                open_store(path)
            assert info.value.path == path and path in str(info.value)
            assert "already open" in str(info.value)
        finally:
            await first.close()
        second = open_store(path)  # the lock is released by close()
        await second.close()

    async def test_a_store_open_in_another_process_is_refused_as_locked(
        self,
        open_store: Callable[..., Persister],
        persister_name: str,
        store_options: dict[str, Any],
        tmp_path: Path,
    ) -> None:
        path = str(tmp_path / "db")
        first = open_store(path)
        await first.channel_created(created(params(1)))
        await first.close()
        holder = subprocess.Popen(  # noqa: ASYNC220 - starting the lock holder is brief; it is then awaited without blocking
            [sys.executable, "-c", _LOCK_HOLDER, persister_name, path, json.dumps(store_options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
            with pytest.raises(StoreLockedError, match="already open") as info:
                open_store(path)
            assert info.value.path == path
        finally:
            holder.kill()
            holder.wait(timeout=30)
        again = open_store(path)  # the lock died with the process; the data is intact
        try:
            assert_same_record(await again.restore_channel(params(1).id), created(params(1)))
        finally:
            await again.close()

    async def test_damaged_files_are_refused_as_corrupt(
        self,
        open_store: Callable[..., Persister],
        corrupt_store: Callable[[str], None],
        tmp_path: Path,
    ) -> None:
        path = str(tmp_path / "db")
        store = open_store(path)
        for i in range(1, 30):
            await store.channel_created(created(params(i)))
        await store.close()
        corrupt_store(path)
        with pytest.raises(StoreCorruptError) as info:
            open_store(path)
        assert info.value.path == path and path in str(info.value)

    async def test_an_unreadable_record_is_reported_as_corrupt(
        self, open_store: Callable[..., Persister], tmp_path: Path
    ) -> None:

        store = open_store(str(tmp_path / "db"))
        try:
            if not isinstance(store, KVPersister):
                pytest.skip("not a key-value persister")
            p = params(3)
            await store.channel_created(created(p))
            await store.store.write_batch({b"c" + p.id + b"s": b"\x01garbage"})
            with pytest.raises(StoreCorruptError, match="cannot be read"):
                await store.restore_channel(p.id)
            with pytest.raises(StoreCorruptError):
                await store.restore_peer(BOB_WIRE)
        finally:
            await store.close()

    async def test_a_store_of_another_schema_is_refused(
        self, open_store: Callable[..., Persister], tmp_path: Path
    ) -> None:

        path = str(tmp_path / "db")
        store = open_store(path)
        if not isinstance(store, KVPersister):
            await store.close()
            pytest.skip("not a key-value persister")
        await store.store.write_batch({b"v": b"perun-kv/99"})
        await store.close()
        store = open_store(path)
        try:
            with pytest.raises(StoreCorruptError, match="schema"):
                await store.channel_created(created(params(1)))
        finally:
            await store.close()
        store = open_store(path)
        try:
            with pytest.raises(StoreCorruptError, match="schema"):
                await store.active_peers()
        finally:
            await store.close()

    async def test_use_after_close_is_a_clear_error(
        self, open_store: Callable[..., Persister], tmp_path: Path
    ) -> None:
        store = open_store(str(tmp_path / "db"))
        await store.close()
        await store.close()  # idempotent
        with pytest.raises(StoreClosedError, match="closed"):
            await store.restore_channel(b"\x01" * 32)
        with pytest.raises(StoreClosedError):
            await store.channel_created(created(params(1)))

    async def test_a_bad_path_is_a_persistence_error(
        self, open_store: Callable[..., Persister], tmp_path: Path
    ) -> None:
        file = tmp_path / "a-file"
        file.write_bytes(b"not a database")
        with pytest.raises(PersistenceError) as info:
            open_store(str(file))
        assert str(file) in str(info.value)
        with pytest.raises(PersistenceError, match=r"does not exist|not exist|No such"):
            open_store(str(tmp_path / "missing"), create=False)

    async def test_after_a_failed_write_the_store_refuses_until_reopened(
        self,
        open_store: Callable[..., Persister],
        persister_name: str,
        store_options: dict[str, Any],
        tmp_path: Path,
    ) -> None:
        """A child process writes until a write fails (its file-size limit stands in for a
        full disk); once the limit is lifted, every further call is refused with
        ``StoreFailedError``; after a reopen every acknowledged write is there."""
        path = str(tmp_path / "db")
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                _FULL_DISK_VICTIM,
                persister_name,
                path,
                json.dumps(store_options),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = child.stdout.split("\n")
        assert child.returncode == 0, child.stdout[-2000:] + child.stderr[-2000:]
        acked = [int(x.split()[1]) for x in lines if x.startswith("acked ")]
        failed = [x for x in lines if x.startswith("failed ")]
        assert acked and failed, child.stdout[-2000:]
        assert failed[0].split()[1] != "StoreFailedError"  # the first failure is the engine's
        assert "after 0 200" in lines, f"writes after the failure: {lines[-4:]}"
        store = open_store(path)
        try:
            rec = await store.restore_channel(params(7).id)
            assert rec is not None and rec.current is not None and rec.current.fully_signed
            # the failed update may or may not have made it; nothing after it did
            assert acked[-1] <= rec.current.state.version <= acked[-1] + 1
            if rec.staging is not None:
                assert rec.staging.state.version == rec.current.state.version + 1
            # and the store takes writes again
            await store.phase_changed(params(7).id, Phase.ACTING, 0, False)
        finally:
            await store.close()

    @staticmethod
    def _killed_store_log(
        wal_files: Callable[[str], list[str]] | None,
        persister_name: str,
        store_options: dict[str, Any],
        path: str,
        factory: pytest.TempPathFactory,
    ) -> str:
        """A copy at ``path`` of a store whose writer was killed after 40 payments (made once
        per store and options, in the session's temporary directory); its log's path."""
        if wal_files is None:
            pytest.skip("the store keeps no LevelDB-format write-ahead log")
        key = (
            persister_name,
            json.dumps(store_options, sort_keys=True),
            str(factory.getbasetemp()),
        )
        if key not in _KILLED_STORES:
            pristine = str(factory.mktemp("killed-store") / "db")
            write_then_kill(persister_name, pristine, store_options, 40)
            _KILLED_STORES[key] = pristine
        shutil.copytree(_KILLED_STORES[key], path)
        with contextlib.suppress(FileNotFoundError):
            (Path(path) / "LOCK").unlink()  # the killed writer's; the lock died with it
        logs = [f for f in wal_files(path) if Path(f).stat().st_size > 0]
        assert len(logs) == 1, (
            f"expected one log with the records in {sorted(Path(path).iterdir())}"
        )
        return logs[0]

    async def test_the_write_ahead_log_has_the_format_the_tail_check_reads(
        self,
        wal_files: Callable[[str], list[str]] | None,
        persister_name: str,
        store_options: dict[str, Any],
        tmp_path: Path,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> None:
        """Every record of a real log carries the checksum ``kv_wal`` computes: the check of
        the log's tail (see the next tests) reads this engine version's format right."""
        from perun_core.persistence.kv_wal import crc32c, find_log_damage, log_records

        log = self._killed_store_log(
            wal_files, persister_name, store_options, str(tmp_path / "db"), tmp_path_factory
        )
        data = Path(log).read_bytes()
        recs = log_records(log)
        assert len(recs) >= 121  # one record per event (the channel and 40 updates)
        for r in recs:
            stored = int.from_bytes(data[r.offset : r.offset + 4], "little")
            covered = data[r.offset + 6 : r.offset + r.header + r.length]
            crc = crc32c(covered)
            masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
            assert masked == stored, f"record at {r.offset} (type {r.type})"
        assert recs[-1].offset + recs[-1].header + recs[-1].length == len(data)
        assert find_log_damage(log) is None

    @pytest.mark.parametrize(
        "where", ["first payload", "first length", "middle payload", "middle type", "last length"]
    )
    async def test_a_damaged_log_record_is_refused_not_dropped(
        self,
        open_store: Callable[..., Persister],
        wal_files: Callable[[str], list[str]] | None,
        persister_name: str,
        store_options: dict[str, Any],
        tmp_path: Path,
        tmp_path_factory: pytest.TempPathFactory,
        where: str,
    ) -> None:
        """One damaged byte in a record of a killed store's log makes the open fail with
        ``StoreCorruptError``: the store never restores an older state (or an empty store)
        as if nothing had happened."""
        from perun_core.persistence.kv_wal import log_records

        path = str(tmp_path / "db")
        log = self._killed_store_log(
            wal_files, persister_name, store_options, path, tmp_path_factory
        )
        recs = log_records(log)
        rec = {"first": recs[0], "middle": recs[len(recs) // 2], "last": recs[-1]}[where.split()[0]]
        # a length byte: the high one, so the record seems to run past the end of the file;
        # the type byte: FULL (1) becomes 11, a recycled log's type (RocksDB looped forever)
        kind = where.split()[1]
        offset = rec.offset + {"length": 5, "type": 6, "payload": rec.header + 3}[kind]
        mask = 0x0A if kind == "type" else 0xA5
        with open(log, "r+b") as f:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ mask]))
        with pytest.raises(StoreCorruptError) as info:
            store = open_store(path)
            try:  # an open that succeeds must not restore anything older
                await store.restore_channel(params(7).id)
            finally:
                await store.close()
        assert info.value.path == path

    async def test_a_torn_last_record_loses_only_the_write_that_never_returned(
        self,
        open_store: Callable[..., Persister],
        wal_files: Callable[[str], list[str]] | None,
        persister_name: str,
        store_options: dict[str, Any],
        tmp_path: Path,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> None:
        """A log cut inside its last record (the write a power loss interrupted) opens; every
        earlier record is there."""
        path = str(tmp_path / "db")
        log = self._killed_store_log(
            wal_files, persister_name, store_options, path, tmp_path_factory
        )
        size = Path(log).stat().st_size
        with open(log, "r+b") as f:
            f.truncate(size - 9)
        store = open_store(path)
        try:
            rec = await store.restore_channel(params(7).id)
            # the last write, enabled(v40), is lost; v40 stays staged with both signatures
            assert rec is not None and rec.current is not None and rec.staging is not None
            assert rec.current.state.version == 39 and rec.staging.state.version == 40
            assert rec.staging.fully_signed and rec.phase == Phase.SIGNING
        finally:
            await store.close()

    @pytest.mark.parametrize("where", ["type", "length"])
    async def test_a_damaged_manifest_record_is_refused(
        self,
        open_store: Callable[..., Persister],
        wal_files: Callable[[str], list[str]] | None,
        tmp_path: Path,
        where: str,
    ) -> None:
        """The manifest has the log's format: a record whose type byte became a recycled
        log's (RocksDB looped forever replaying it) or whose length runs past the end of the
        file is refused with ``StoreCorruptError``."""
        from perun_core.persistence.kv_wal import live_manifest, log_records

        if wal_files is None:
            pytest.skip("the store keeps no LevelDB-format logs")
        path = str(tmp_path / "db")
        store = open_store(path)
        await open_and_pay(store, params(7))
        await store.close()
        manifest = live_manifest(path)
        assert manifest is not None, sorted(Path(path).iterdir())
        rec = log_records(manifest)[-1]
        # type FULL (1) -> 5; the length's high byte, so the record runs past the end
        offset, mask = (rec.offset + 6, 0x04) if where == "type" else (rec.offset + 5, 0xA5)
        with open(manifest, "r+b") as f:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ mask]))
        with pytest.raises(StoreCorruptError) as info:
            again = open_store(path)
            await again.close()
        assert info.value.path == path and "MANIFEST" in str(info.value)

    async def test_every_acknowledged_write_survives_kill_9(
        self,
        open_store: Callable[..., Persister],
        persister_name: str,
        store_options: dict[str, Any],
        tmp_path: Path,
    ) -> None:
        """A child process writes as fast as it can; SIGKILL at a random moment loses nothing
        it reported as written (three rounds on the same store)."""
        path = str(tmp_path / "db")
        rng = random.Random(4)
        acked = {"enabled": 0, "created": 0}
        n = 0

        def note(line: str) -> None:
            fields = line.split()
            if line.endswith("\n") and len(fields) == 2 and fields[0] in acked:
                acked[fields[0]] = int(fields[1])  # a torn last line was never acknowledged

        for _round in range(3):
            child = subprocess.Popen(  # noqa: ASYNC220 - starting the child is brief; it is then awaited without blocking
                [
                    sys.executable,
                    "-c",
                    _KILL_VICTIM,
                    persister_name,
                    path,
                    str(n),
                    json.dumps(store_options),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert child.stdout is not None
                for _ in range(rng.randrange(50, 400)):
                    line = child.stdout.readline()
                    assert line, "the writer died before it was killed"
                    note(line)
                child.send_signal(signal.SIGKILL)
                for line in child.stdout:  # acknowledgements already in the pipe count too
                    note(line)
            finally:
                child.kill()
                child.wait(timeout=30)
            store = open_store(path)
            try:
                rec = await store.restore_channel(params(7).id)
                assert rec is not None and rec.current is not None
                assert rec.current.fully_signed
                assert rec.current.state.version >= acked["enabled"]
                if rec.staging is not None:  # killed mid-update: the next version is staged
                    assert rec.staging.state.version == rec.current.state.version + 1
                for i in range(1, acked["created"] + 1):
                    assert await store.restore_channel(params(10_000 + i).id) is not None
                n = len(await store.restore_peer(BOB_WIRE)) - 1
            finally:
                await store.close()
