"""The in-memory persister: persistence event sequences and what restore returns."""

from __future__ import annotations

import dataclasses

import pytest

from perun_core.channel import Address, Allocation, Asset, Params, Phase, State, Transaction
from perun_core.errors import InvalidStateError, PerunError, UnknownChannelError
from perun_core.interfaces import ChannelRecord, Persister
from perun_core.persistence import MemoryPersister

ALICE_WALLET = Address(b"\xaa" * 20)
BOB_WALLET = Address(b"\xbb" * 20)
ALICE_WIRE = Address(b"\xa1" * 20)
BOB_WIRE = Address(b"\xb1" * 20)
CAROL_WIRE = Address(b"\xc1" * 20)
ETH = Asset(1, b"ETH")


def params(nonce: int, *, parts: tuple[Address, ...] = (ALICE_WALLET, BOB_WALLET)) -> Params:
    return Params(
        challenge_duration=60,
        participants=parts,
        nonce=nonce,
        id=nonce.to_bytes(32, "big"),
    )


def state(p: Params, version: int, alice: int, bob: int) -> State:
    return State(p.id, version, Allocation((ETH,), ((alice, bob),)))


def sig(who: str, version: int) -> bytes:
    return f"{who}-signs-v{version}".encode()


def opened_record(p: Params, peers: tuple[Address, ...] = (ALICE_WIRE, BOB_WIRE)) -> ChannelRecord:
    """Alice's record right after she created the channel: v0 staged with her signature."""
    v0 = Transaction(state(p, 0, 10, 10), (sig("alice", 0), None))
    return ChannelRecord(params=p, idx=0, peers=peers, phase=Phase.INIT_SIGNING, staging=v0)


async def open_and_pay(store: MemoryPersister, p: Params) -> ChannelRecord:
    """Alice opens a channel with Bob, it gets funded, and she pays Bob 3 (v1)."""
    await store.channel_created(opened_record(p))
    await store.sig_added(p.id, 0, 1, sig("bob", 0))
    v0 = Transaction(state(p, 0, 10, 10), (sig("alice", 0), sig("bob", 0)))
    await store.enabled(p.id, v0, Phase.FUNDING)
    await store.phase_changed(p.id, Phase.ACTING, 0, False)
    v1 = Transaction.unsigned(state(p, 1, 7, 13), 2).with_sig(0, sig("alice", 1))
    await store.staged(p.id, v1, Phase.SIGNING)
    await store.sig_added(p.id, 1, 1, sig("bob", 1))
    await store.enabled(p.id, v1.with_sig(1, sig("bob", 1)), Phase.ACTING)
    rec = await store.restore_channel(p.id)
    assert rec is not None
    return rec


def test_is_a_complete_persister() -> None:
    assert issubclass(MemoryPersister, Persister)
    assert not MemoryPersister.__abstractmethods__


async def test_alice_opens_and_pays_bob_restore_equals_last_record() -> None:
    store = MemoryPersister()
    p = params(1)
    restored = await open_and_pay(store, p)

    expected = ChannelRecord(
        params=p,
        idx=0,
        peers=(ALICE_WIRE, BOB_WIRE),
        phase=Phase.ACTING,
        current=Transaction(state(p, 1, 7, 13), (sig("alice", 1), sig("bob", 1))),
        staging=None,
    )
    assert restored == expected
    assert restored.current is not None and restored.current.fully_signed
    assert await store.restore_peer(BOB_WIRE) == [expected]
    assert await store.active_peers() == [ALICE_WIRE, BOB_WIRE]


async def test_created_record_round_trips_exactly_with_every_field() -> None:
    store = MemoryPersister()
    p = params(2)
    rec = opened_record(p).evolve(parent=b"\x07" * 32, version_floor=4, needs_sync=True)
    await store.channel_created(rec)
    assert await store.restore_channel(p.id) == rec


async def test_bob_rejects_the_update_staging_is_discarded_and_the_floor_rises() -> None:
    store = MemoryPersister()
    p = params(3)
    await open_and_pay(store, p)
    v2 = Transaction.unsigned(state(p, 2, 0, 20), 2).with_sig(0, sig("alice", 2))
    await store.staged(p.id, v2, Phase.SIGNING)
    await store.sig_added(p.id, 2, 0, sig("alice", 2))  # idempotent re-add of her own sig

    staged = await store.restore_channel(p.id)
    assert staged is not None and staged.staging == v2 and staged.phase is Phase.SIGNING

    await store.staged(p.id, None, Phase.ACTING)
    await store.phase_changed(p.id, Phase.ACTING, 2, False)
    rec = await store.restore_channel(p.id)
    assert rec is not None
    assert rec.staging is None
    assert rec.version_floor == 2
    assert rec.current is not None and rec.current.state.version == 1  # v1 still current
    assert rec.current.state.balances == ((7, 13),)


async def test_late_signature_for_the_current_version_lands_on_current() -> None:
    store = MemoryPersister()
    p = params(4)
    await store.channel_created(opened_record(p))
    half = Transaction(state(p, 0, 10, 10), (sig("alice", 0), None))
    await store.enabled(p.id, half, Phase.INIT_SIGNING)
    await store.sig_added(p.id, 0, 1, sig("bob", 0))
    rec = await store.restore_channel(p.id)
    assert rec is not None and rec.current is not None
    assert rec.current.sigs == (sig("alice", 0), sig("bob", 0))


async def test_dispute_phases_and_sync_flag_are_stored() -> None:
    store = MemoryPersister()
    p = params(5)
    await open_and_pay(store, p)
    await store.phase_changed(p.id, Phase.REGISTERING, 1, True)
    await store.phase_changed(p.id, Phase.REGISTERED, 1, False)
    rec = await store.restore_channel(p.id)
    assert rec is not None
    assert (rec.phase, rec.version_floor, rec.needs_sync) == (Phase.REGISTERED, 1, False)


async def test_withdrawn_channel_leaves_nothing_behind() -> None:
    store = MemoryPersister()
    p1, p2 = params(6), params(7)
    await open_and_pay(store, p1)
    await store.channel_created(opened_record(p2, peers=(ALICE_WIRE, CAROL_WIRE)))
    assert len(store) == 2

    await store.channel_removed(p1.id)
    assert await store.restore_channel(p1.id) is None
    assert await store.restore_peer(BOB_WIRE) == []
    # Bob shares nothing with us any more; Alice and Carol still share channel 2
    assert await store.active_peers() == [ALICE_WIRE, CAROL_WIRE]
    assert [r.channel_id for r in await store.restore_peer(ALICE_WIRE)] == [p2.id]

    await store.channel_removed(p2.id)
    assert await store.active_peers() == []
    assert len(store) == 0


async def test_restore_peer_lists_channels_in_creation_order() -> None:
    store = MemoryPersister()
    ids = []
    for nonce in (30, 10, 20):
        p = params(nonce)
        ids.append(p.id)
        await store.channel_created(opened_record(p))
    assert [r.channel_id for r in await store.restore_peer(BOB_WIRE)] == ids
    assert await store.restore_peer(CAROL_WIRE) == []


async def test_records_handed_out_never_change() -> None:
    store = MemoryPersister()
    p = params(8)
    await store.channel_created(opened_record(p))
    before = await store.restore_channel(p.id)
    assert before is not None
    await store.phase_changed(p.id, Phase.FUNDING, 3, True)
    assert before.phase is Phase.INIT_SIGNING and before.version_floor == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.phase = Phase.ACTING  # type: ignore[misc]


async def test_store_survives_close_for_restore_after_a_crash() -> None:
    store = MemoryPersister()
    p = params(9)
    rec = await open_and_pay(store, p)
    await store.close()
    assert await store.restore_channel(p.id) == rec


@pytest.mark.parametrize(
    "event",
    ["staged", "sig_added", "enabled", "phase_changed", "channel_removed"],
)
async def test_event_for_an_unknown_channel_is_a_clear_perun_error(event: str) -> None:
    store = MemoryPersister()
    p = params(11)
    tx = Transaction.unsigned(state(p, 0, 1, 1), 2)
    calls = {
        "staged": lambda: store.staged(p.id, tx, Phase.SIGNING),
        "sig_added": lambda: store.sig_added(p.id, 0, 0, b"s"),
        "enabled": lambda: store.enabled(p.id, tx, Phase.ACTING),
        "phase_changed": lambda: store.phase_changed(p.id, Phase.ACTING, 0, False),
        "channel_removed": lambda: store.channel_removed(p.id),
    }
    with pytest.raises(UnknownChannelError) as info:
        await calls[event]()
    assert isinstance(info.value, PerunError)
    assert event in str(info.value) and "channel_created" in str(info.value)
    assert len(store) == 0


async def test_signature_for_a_version_neither_staged_nor_current_is_refused() -> None:
    store = MemoryPersister()
    p = params(12)
    rec = await open_and_pay(store, p)
    with pytest.raises(InvalidStateError, match="neither staged nor current") as info:
        await store.sig_added(p.id, 5, 1, sig("bob", 5))
    assert info.value.version == 5 and info.value.channel_id == p.id
    assert await store.restore_channel(p.id) == rec  # unchanged


async def test_signature_for_a_participant_index_out_of_range_is_refused() -> None:
    store = MemoryPersister()
    p = params(13)
    await store.channel_created(opened_record(p))
    with pytest.raises(InvalidStateError, match="2 participants"):
        await store.sig_added(p.id, 0, 2, b"s")


async def test_creating_a_stored_channel_twice_is_refused() -> None:
    store = MemoryPersister()
    p = params(14)
    rec = await open_and_pay(store, p)
    with pytest.raises(InvalidStateError, match="already stored"):
        await store.channel_created(opened_record(p))
    assert await store.restore_channel(p.id) == rec
