"""Restore: rebuild every persisted channel when a client starts (see docs/protocols.md).

Each channel comes back in its phase; half-done steps are finished or rolled back:

========================  ==========================================================
phase at restart          action
========================  ==========================================================
INIT_ACTING               dropped (nothing was signed)
INIT_SIGNING              kept; sync with the peer completes v0 (then funding) or drops it
FUNDING                   funding resumes (idempotent)
ACTING / FINAL            kept; sync on the next connection
SIGNING                   a fully signed staged state is enabled; otherwise sync decides
REGISTERING and later     the watcher replays the latest ledger event; settling resumes
PROGRESSING               the replayed event tells whether our force update landed
WITHDRAWING               withdrawal runs again (idempotent)
========================  ==========================================================
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TypeVar

from perun_core.channel.limits import MAX_TREE_DEPTH
from perun_core.channel.phase import Phase
from perun_core.logging import channel_extra

if TYPE_CHECKING:
    from perun_core.channel.state import Transaction
    from perun_core.client.channel import Channel
    from perun_core.client.engine import Engine
    from perun_core.interfaces.persister import ChannelRecord

log = logging.getLogger("perun.restore")

_T = TypeVar("_T")


class _Shared:
    """One object for equal immutable values of the restored records.

    Each decoded record brings its own copies of values most channels share: the
    participants' and peers' addresses (the same few peers), the app ID, the asset list,
    and the channel ID again in every state. With 100,000 channels those copies were a
    third of a restored channel's memory. Swapping a field of a frozen value for an *equal*
    object changes nothing observable, so it is done in place (``object.__setattr__``),
    without re-running the constructors' checks.
    """

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[object, object] = {}

    def one(self, value: _T) -> _T:
        """The first object seen that equals ``value``."""
        got: _T = self._seen.setdefault(value, value)  # type: ignore[assignment]
        return got

    def record(self, rec: ChannelRecord) -> None:
        """Share what ``rec`` has in common with earlier records (in place)."""
        params = rec.params
        _swap(params, "participants", self.one(tuple(self.one(a) for a in params.participants)))
        if params.app is not None:
            _swap(params, "app", self.one(params.app))
        _swap(rec, "peers", self.one(tuple(self.one(a) for a in rec.peers)))
        self._tx(rec.current, params.id, params.app)
        self._tx(rec.staging, params.id, params.app)

    def _tx(self, tx: Transaction | None, cid: bytes, app: bytes | None) -> None:
        if tx is None:
            return
        st = tx.state
        if st.channel_id == cid:
            _swap(st, "channel_id", cid)
        if st.app is not None and st.app == app:
            _swap(st, "app", app)
        alloc = st.allocation
        _swap(alloc, "assets", self.one(tuple(self.one(a) for a in alloc.assets)))


def _swap(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


async def restore_channels(engine: Engine) -> int:
    """Load every stored channel into the client of ``engine``; returns how many."""
    client = engine.client
    persister = client.persister
    restored = 0
    shared = _Shared()
    for peer in await persister.active_peers():
        if peer == client.address:
            continue  # every record also lists us; restore each channel once, by its peer
        for rec in _parents_first(await persister.restore_peer(peer)):
            if rec.channel_id in engine.channels:
                continue
            if rec.phase == Phase.INIT_ACTING or rec.phase == Phase.WITHDRAWN:
                await persister.channel_removed(rec.channel_id)
                continue
            shared.record(rec)
            ch = engine.add_channel(rec)
            restored += 1
            await _resume(engine, ch, rec)
    return restored


def _parents_first(records: list[ChannelRecord]) -> list[ChannelRecord]:
    """``records`` ordered so that every sub-channel comes after its parent."""
    by_id = {r.channel_id: r for r in records}

    def depth(r: ChannelRecord) -> int:
        d = 0
        while r.parent is not None and r.parent in by_id and d <= MAX_TREE_DEPTH:
            r, d = by_id[r.parent], d + 1
        return d

    return sorted(records, key=depth)


def _resume_phase(engine: Engine, ch: Channel, phase: Phase) -> None:
    """Start what a channel restored in ``phase`` still needs."""
    sub = ch.parent is not None
    if phase == Phase.FUNDING:
        engine.spawn(engine.subs.resume_funding(ch) if sub else engine.proposals.resume_funding(ch))
    elif phase == Phase.INIT_SIGNING:
        ch.machine.set_needs_sync(True)
    elif phase == Phase.REGISTERING:
        engine.spawn(engine.disputes.settle(ch))
    elif phase == Phase.FINAL and sub and ch.idx == 0:
        engine.subs.ensure_fold(ch)  # a final sub-channel goes back into its parent
    elif phase == Phase.WITHDRAWING:
        # Through the channel's operation slot: a settle() the user calls meanwhile
        # waits for this one instead of withdrawing and removing the record twice.
        engine.spawn(ch.settle())


async def _resume(engine: Engine, ch: Channel, rec: ChannelRecord) -> None:
    """Take up a restored channel where it stood: finish a crashed signing step, watch it,
    schedule its sync and whatever its phase still needs, and announce it."""
    if rec.phase == Phase.SIGNING:
        # A fully signed staged state is enabled (we crashed between signing and
        # enabling); otherwise it stays our pending view and sync decides.
        await ch.io.write_now((ch.machine.recover_signing(),))
        if ch.machine.current is not None and ch.machine.current is rec.staging:
            engine.publish_to_watcher(ch, ch.machine.current)
    if rec.current is not None and rec.current.fully_signed:
        engine.publish_to_watcher(ch, rec.current)
    elif rec.current is not None:
        engine.force.watch(ch)  # a force-executed state: watched, never refuted with
    if ch.machine.phase in (Phase.ACTING, Phase.FINAL, Phase.INIT_SIGNING):
        engine.sync.expect(ch)  # the peer may hold newer signatures
    _resume_phase(engine, ch, rec.phase)
    if ch.machine.phase not in (Phase.FUNDING, Phase.INIT_SIGNING):
        engine.announce(ch)  # funding channels are announced once funded
    log.info(
        "restored channel 0x%s in %s",
        ch.id.hex()[:12],
        ch.machine.phase.name,
        extra=channel_extra(ch),
    )
