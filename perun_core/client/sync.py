"""Channel sync: after a reconnect, a timeout or a restart both parties exchange their view
of a channel and continue from the highest fully signed version (see docs/protocols.md).

Each side sends one ``ChannelSync`` per round (and answers one it receives first). On the
peer's message: a newer fully signed state that carries our own valid signature is adopted;
a staged state of ours that was not adopted is discarded and its version burned; the version
floor becomes the maximum of both floors and every pending version, so both sides compute
the same next version.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from perun_core.channel.limits import FLOOR_SLACK
from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.errors import ChannelDivergedError, PerunError, SyncError
from perun_core.logging import channel_extra
from perun_core.wire.messages import ChannelSync, Envelope

if TYPE_CHECKING:
    from perun_core.client.channel import Channel
    from perun_core.client.engine import Engine

log = logging.getLogger("perun.sync")

SYNCABLE = frozenset(
    {
        Phase.INIT_SIGNING,
        Phase.FUNDING,
        Phase.ACTING,
        Phase.SIGNING,
        Phase.FINAL,
        Phase.REGISTERED,
        Phase.PROGRESSED,
    }
)


class SyncProtocol:
    """The sync protocol of one client."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.client = engine.client
        engine.route(ChannelSync, self._route)

    def _route(self, env: Envelope, msg: ChannelSync) -> None:
        engine = self.engine
        ch = engine.peer_channel(env, msg.channel_id)
        if ch is not None:
            self.on_sync(ch, msg)
        elif not msg.reply and msg.channel_id not in engine.channels:
            # Unknown to us: say so, so the peer drops a half-created channel (whose view
            # has only its staged v0, no current state). Answers are never answered.
            unknown = ChannelSync(msg.channel_id, 0, None, None, 0, True)
            engine.spawn(engine.send(env.sender, unknown))

    def message(self, ch: Channel, *, reply: bool = False) -> ChannelSync:
        """Our view of the channel (a request, or with ``reply`` the answer to one)."""
        own = ch.rt.own
        m = ch.machine
        pending = own.tx if own is not None else None
        staging = m.staging
        if pending is None and staging is not None and staging.sigs[ch.idx] is not None:
            pending = staging
        return ChannelSync(ch.id, int(m.phase), m.current, pending, m.version_floor, reply)

    async def start(self, ch: Channel, *, resend: bool = False) -> bool:
        """Request the peer's view (one request per round); ``False`` if it could not be sent.

        ``resend`` sends the request of a running round again (after a reconnect the first
        one may have been lost with the old connection); a duplicate answer is harmless,
        because answers are never answered.
        """
        if ch.machine.phase not in SYNCABLE or (ch.rt.sync_sent and not resend):
            return True
        ch.rt.sync_sent = True
        ch.rt.sync_done.clear()
        ch.io.write(ch.machine.set_needs_sync(True))
        msg = self.message(ch)
        try:
            await ch.io.run(lambda: self.engine.send(ch.peer, msg))
        except Exception as e:  # noqa: BLE001 - whatever the bus raises, the next connection retries the sync
            # The peer is unreachable now; the next connection starts the round again.
            ch.rt.sync_sent = False
            log.info("sync of 0x%s not sent: %s", ch.id.hex()[:12], e)
            return False
        return True

    async def start_many(self, channels: list[Channel]) -> None:
        """:meth:`start` for channels of one peer, one after the other (after a restart).

        One task per peer instead of one per channel: after restoring 100,000 channels the
        per-channel tasks (and the task sets they grew) were a good part of the memory. The
        first message that cannot be sent ends the loop; the next connection to the peer
        starts the round again for every channel (:meth:`sync_peer`).
        """
        for ch in channels:
            if not await self.start(ch):
                return

    def expect(self, ch: Channel) -> None:
        """Mark a channel as needing a sync round before the next update (after restore)."""
        ch.machine.set_needs_sync(True)
        ch.rt.sync_done.clear()

    async def sync_peer(self, peer: object) -> None:
        """Start one sync round for every channel shared with ``peer`` (after a connect)."""
        for ch in list(self.engine.channels.values()):
            if ch.peer == peer and ch.machine.phase in SYNCABLE:
                await self.start(ch, resend=True)

    def on_sync(self, ch: Channel, msg: ChannelSync) -> None:
        """The peer's view arrived (dispatcher, synchronous).

        A request is answered exactly once, with our view as it was before applying theirs
        (it carries our pending proposal, which the peer must burn as well). An answer is
        never answered, and one that arrives without a round of ours running is dropped:
        so a round is two messages per side at most, and no pair of clients (nor a hostile
        peer) can make sync loop.
        """
        if msg.reply and not ch.rt.sync_sent:
            log.debug("unsolicited sync answer for 0x%s dropped", ch.id.hex()[:12])
            return
        if not msg.reply:
            ours = self.message(ch, reply=True)
            ch.io.run(lambda: self.engine.send(ch.peer, ours))
        try:
            self._apply(ch, msg)
        except PerunError as e:
            log.warning(
                "sync of channel 0x%s failed: %s", ch.id.hex()[:12], e, extra=channel_extra(ch)
            )
            self.engine.report_error(e)
        finally:
            if msg.reply:
                ch.rt.sync_sent = False
            if not ch.rt.sync_sent:
                ch.rt.sync_done.set()
            ch.rt.pulse()

    def _apply(self, ch: Channel, msg: ChannelSync) -> None:
        engine = self.engine
        theirs = msg.current
        mine = ch.machine.current
        discarded = -1
        m = ch.machine
        floor_before, needs_before = m.version_floor, m.needs_sync
        if theirs is None:
            if ch.machine.phase == Phase.INIT_SIGNING and not ch.rt.removed:
                # The peer never created the channel: nothing was signed by both, nothing funded.
                # Marked removed at once: a second "unknown" answer (one per sync round we
                # sent) must not remove the record twice.
                ch.rt.removed = True
                log.info(
                    "channel 0x%s unknown to the peer; dropping it",
                    ch.id.hex()[:12],
                    extra=channel_extra(ch),
                )
                engine.spawn(engine.drop_channel(ch))
                return
            if msg.pending is None:
                # The peer does not know the channel (it lost its record, or withdrew it):
                # nothing can be agreed off-chain any more; the ledger settles it.
                return
            # The peer holds only its staged initial state (it is still INIT_SIGNING and
            # adopts our fully signed one from our view): this round is complete.
        elif theirs.state.channel_id != ch.id:
            raise SyncError("sync message for another channel")
        elif mine is None or theirs.state.version > mine.state.version:
            self._check_adoptable(ch, theirs)
            self._adopt(ch, msg, theirs)
        elif theirs.state.version == mine.state.version and theirs.state != mine.state:
            # Only a state that really carries every signature (ours included) proves a
            # divergence; an unsigned claim is refused and changes nothing.
            self._check_adoptable(ch, theirs)
            ch.rt.frozen = True
            raise ChannelDivergedError(
                f"channel 0x{ch.id.hex()[:12]}: both parties hold different states at "
                f"version {mine.state.version}; settle through the ledger"
            )
        discarded = self._discard_pending(ch, msg, adopted=-1)
        m.burn(max(discarded, self._proven_floor(ch, msg)))
        m.set_needs_sync(False)
        if m.version_floor != floor_before or needs_before:
            ch.io.write(m.phase_record())

    def _adopt(self, ch: Channel, msg: ChannelSync, theirs: Transaction) -> None:
        """Make the peer's newer, fully signed state current (it carries our signature)."""
        engine = self.engine
        mine = ch.machine.current
        old = mine.state if mine is not None else None
        own = ch.rt.own
        completed = None
        if own is not None and own.tx.state == theirs.state:
            # Our own proposal, accepted by the peer (its answer was lost): adopt, not
            # discard, and complete the waiting update() with it, which then tells the
            # user (once the adoption is persisted) instead of timing out.
            ch.rt.own = None
            if not own.future.done() and not own.timed_out:
                completed = own.future
        self._discard_pending(ch, msg, adopted=theirs.state.version)
        was_init = ch.machine.phase == Phase.INIT_SIGNING
        ch.io.write(*ch.machine.adopt(theirs))
        engine.publish_to_watcher(ch, theirs)
        if was_init and ch.rt.v0_sig is not None and not ch.rt.v0_sig.done():
            sig0 = theirs.sigs[0]
            assert sig0 is not None
            ch.rt.v0_sig.set_result(sig0)
        elif was_init:
            engine.spawn(engine.proposals.resume_funding(ch))
        if completed is not None:
            completed.set_result(theirs)
        elif old is not None:
            engine.notify_update(ch, old, theirs.state)

    def _proven_floor(self, ch: Channel, msg: ChannelSync) -> int:
        """The highest version the peer's view proves burned, or -1.

        The floor only moves on proof: the peer's pending state counts if it carries a
        valid signature (ours or the peer's) on this channel. The peer's own
        ``version_floor`` is only believed up to :data:`FLOOR_SLACK` above the newest
        version both sides hold, so a hostile view cannot push the floor out of reach
        (a floor of 2**64-1 would end every update and settlement).
        """
        cur = max(ch.machine.current_version, 0)
        bound = max(cur, ch.machine.version_floor) + FLOOR_SLACK
        proven = -1
        pending = msg.pending
        if pending is not None and pending.state.channel_id == ch.id:
            v = pending.state.version
            if v <= bound and self._signed_by_a_party(ch, pending):
                proven = v
        claimed = msg.version_floor
        if claimed <= max(cur, proven) + FLOOR_SLACK:
            proven = max(proven, claimed)
        return proven

    def _signed_by_a_party(self, ch: Channel, tx: Transaction) -> bool:
        backend = self.client.backend
        for addr, sig in zip(ch.params.participants, tx.sigs, strict=False):
            if sig is None:
                continue
            try:
                if backend.verify_state(addr, tx.state, sig):
                    return True
            except PerunError:
                continue
        return False

    def _check_adoptable(self, ch: Channel, tx: Transaction) -> None:
        if not tx.fully_signed:
            raise SyncError("the peer's current state is not fully signed")
        backend = self.client.backend
        for i, (addr, sig) in enumerate(zip(ch.params.participants, tx.sigs, strict=True)):
            assert sig is not None
            if not backend.verify_state(addr, tx.state, sig):
                who = "our own" if i == ch.idx else "the peer's"
                raise SyncError(f"{who} signature on the peer's state v{tx.state.version} fails")

    def _discard_pending(self, ch: Channel, msg: ChannelSync, adopted: int) -> int:
        """Drop what the peer's view shows to be dead; return the highest burned version.

        An own proposal still waiting for its answer (sent after the peer's view was taken)
        is kept: the peer answers it next. A peer proposal we are deciding on is kept while
        the peer still lists it as pending. Everything else staged is discarded.
        """
        burned = -1
        own = ch.rt.own
        peer_cur = msg.current.state.version if msg.current is not None else -1
        if own is not None:
            v = own.tx.state.version
            if v == adopted:
                ch.rt.own = None  # the peer holds it fully signed: adopted, not discarded
                if not own.future.done():
                    own.future.set_exception(SyncError("the update was completed by sync"))
            elif own.future.done() or own.timed_out or peer_cur >= v:
                ch.rt.own = None
                burned = v
                ch.rt.remember_signed(own.tx.state, ch.machine.current_version)
                # A timed-out update() has raised already; nobody awaits its future.
                if not own.future.done() and not own.timed_out:
                    own.future.set_exception(SyncError("the update was discarded by sync"))
        peer = ch.rt.peer
        if peer is not None and (msg.pending is None or msg.pending.state != peer.msg.state):
            peer.aborted = True
            burned = max(burned, peer.msg.state.version)
            ch.rt.peer = None
            peer.decided.set()
            ch.rt.idle.set()
        if ch.rt.own is None and ch.rt.peer is None:
            dropped, _ = ch.machine.discard()  # written with the round's floor
            if dropped != adopted:
                burned = max(burned, dropped)
        return burned
