"""Off-chain updates: proposer, responder and the collision rule (see docs/protocols.md).

Collision rule (both parties propose at once): each side answers the other's proposal with
``Rej{CONFLICT}`` and burns both versions; the party with the lower participant index then
re-proposes on the unchanged state (up to ``conflict_retries`` times) while the other's
``update()`` raises :class:`UpdateConflictError`. No version is ever signed twice.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from perun_core.channel.limits import FLOOR_SLACK
from perun_core.channel.machine import IN_DISPUTE, Enabled
from perun_core.channel.phase import Phase
from perun_core.channel.state import State, Transaction
from perun_core.channel.validation import check_update
from perun_core.client.deadlines import Deadlines
from perun_core.errors import (
    ChannelClosedError,
    ChannelNotReadyError,
    ChannelRegisteredError,
    InvalidSignatureError,
    InvalidUpdateError,
    MalformedSignatureError,
    PeerRejectedError,
    PerunError,
    RejectCode,
    RequestTimedOutError,
    ResponderUsedError,
    SyncRequiredError,
    UpdateAbortedError,
    UpdateConflictError,
    VersionError,
)
from perun_core.logging import channel_extra
from perun_core.wire.messages import ChannelUpdate, ChannelUpdateAcc, ChannelUpdateRej, Envelope

if TYPE_CHECKING:
    from perun_core.client.channel import Channel, Updater
    from perun_core.client.engine import Engine

log = logging.getLogger("perun.update")

_EAGER_TASKS = sys.version_info >= (3, 12)
"""Whether ``asyncio.Task`` takes ``eager_start`` (Python 3.12+)."""


class UpdateHandler(Protocol):
    """Decides on a peer's update proposal by calling ``responder.accept()`` or ``reject()``.

    May be a plain function or a coroutine function.
    """

    def __call__(
        self, channel: Channel, current: State, proposed: State, responder: UpdateResponder
    ) -> Any: ...


class UpdateResponder:
    """Answers one update proposal from the peer: call exactly one of accept/reject."""

    def __init__(self, protocol: UpdateProtocol, channel: Channel, msg: ChannelUpdate) -> None:
        self._protocol = protocol
        self._channel = channel
        self._msg = msg
        self.used = False  # accept() or reject() was called
        self.task: asyncio.Task[None] | None = None

    @property
    def proposed(self) -> State:
        """The proposed state."""
        return self._msg.state

    @property
    def actor_idx(self) -> int:
        """The proposer's participant index."""
        return self._msg.actor_idx

    def _use(self) -> None:
        if self.used:
            raise ResponderUsedError("this update proposal was already answered")
        self.used = True

    def accept(self) -> asyncio.Task[None]:
        """Sign the proposed state, make it current and send our signature.

        Returns a task: ``await`` it in async handlers; sync handlers may just call this.
        """
        self._use()
        self.task = self._protocol.answer(self._protocol.accept(self._channel, self._msg))
        return self.task

    def reject(self, reason: str = "rejected") -> asyncio.Task[None]:
        """Refuse the proposed state (returns a task).

        Our channel stays unchanged and nothing of ours is signed; the proposer's burned
        version is skipped by both sides.
        """
        self._use()
        self.task = self._protocol.answer(
            self._protocol.reject(self._channel, self._msg, RejectCode.REJECTED, reason)
        )
        return self.task


def accept_incoming_payments(
    channel: Channel, current: State, proposed: State, responder: UpdateResponder
) -> Any:
    """The default update handler: accept what never lowers our balances, reject the rest.

    Accepts a final state with an unchanged allocation too (the peer wants to settle).
    """
    me = channel.idx
    ok = proposed.data == current.data
    if ok:
        old_rows, new_rows = current.allocation.balances, proposed.allocation.balances
        if len(old_rows) != len(new_rows):
            ok = False
        else:
            # A loop: cheaper than all() over a generator (lengths are equal, checked above).
            for old, new in zip(old_rows, new_rows, strict=True):
                if new[me] < old[me]:
                    ok = False
                    break
    if ok:
        return responder.accept()
    return responder.reject("no update handler; only incoming payments are accepted")


class UpdateProtocol:
    """The update protocol of one client."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.client = engine.client
        # One timer for every proposer's wait for an answer (all have the same timeout).
        self.deadlines = Deadlines(self.client.config.update_timeout, self._expire)
        engine.route(ChannelUpdate, self._route_update)
        engine.route(ChannelUpdateAcc, self._route_acc)
        engine.route(ChannelUpdateRej, self._route_rej)

    # --- routing -------------------------------------------------------------------------------

    def _route_update(self, env: Envelope, msg: ChannelUpdate) -> None:
        ch = self.engine.peer_channel(env, msg.state.channel_id)
        if ch is None:
            if msg.state.channel_id not in self.engine.channels:
                self.engine.reply_unknown(env, msg.state.channel_id, msg.state.version)
            return
        self.on_update(ch, env, msg)

    def _route_acc(self, env: Envelope, msg: ChannelUpdateAcc) -> None:
        ch = self.engine.peer_channel(env, msg.channel_id)
        if ch is None:
            return
        if msg.version == 0 and ch.rt.v0_sig is not None:
            self.engine.proposals.on_v0_sig(ch, msg)
        else:
            self.on_acc(ch, msg)

    def _route_rej(self, env: Envelope, msg: ChannelUpdateRej) -> None:
        ch = self.engine.peer_channel(env, msg.channel_id)
        if ch is not None:
            self.on_rej(ch, msg)

    # --- proposer ------------------------------------------------------------------------------

    async def propose(self, ch: Channel, fn: Updater, *, tree_change: bool = False) -> State:
        """Run the proposer side (the caller holds the channel's operation slot).

        ``tree_change``: the update funds or settles a sub-channel (the sub-channel protocol
        computed it exactly); its locked funds may change and the app rule does not apply.
        """
        cfg = self.client.config
        attempt = 0
        while True:
            # A peer proposal awaiting our decision blocks new local updates; wait it out.
            if not ch.rt.idle.is_set():
                try:
                    async with asyncio.timeout(cfg.update_timeout * 2):
                        await ch.rt.idle.wait()
                except TimeoutError:
                    raise RequestTimedOutError("a peer proposal stayed undecided") from None
            if not ch.rt.sync_done.is_set():
                # A sync round (reconnect, restart, earlier timeout) decides first.
                try:
                    async with asyncio.timeout(cfg.sync_timeout):
                        await ch.rt.sync_done.wait()
                except TimeoutError:
                    pass  # _propose_once raises SyncRequiredError
            try:
                return await self._propose_once(ch, fn, tree_change)
            except UpdateConflictError:
                attempt += 1
                if ch.idx > ch.peer_idx or attempt > cfg.conflict_retries:
                    raise
                log.debug(
                    "channel %s: collision, re-proposing (%d)",
                    ch.id.hex()[:12],
                    attempt,
                    extra=channel_extra(ch),
                )
            except PeerRejectedError as e:
                if e.code != RejectCode.SYNC_REQUIRED:
                    raise
                # The peer is in a sync round (e.g. it reconnected just now): take part in
                # it, then propose again on the state it leaves.
                attempt += 1
                if attempt > cfg.conflict_retries:
                    raise
                await self.engine.sync.start(ch)

    async def _propose_once(self, ch: Channel, fn: Updater, tree_change: bool = False) -> State:
        check_updatable(ch)
        m = ch.machine
        assert m.current is not None
        cur = m.current.state
        nxt = fn(cur)
        if not isinstance(nxt, State):
            raise TypeError("the updater must return a State (states are immutable)")
        if type(nxt) is State:  # a direct constructor call is 3x cheaper than replace()
            nxt = State(ch.id, m.next_version, nxt.allocation, nxt.app, nxt.data, nxt.is_final)
        else:
            nxt = replace(nxt, channel_id=ch.id, version=m.next_version)
        check_update(
            ch.params,
            cur,
            nxt,
            actor_idx=ch.idx,
            expected_actor=ch.idx,
            version_floor=ch.machine.version_floor,
            app=self.engine.app_of(ch.params),
            allow_locked_change=tree_change,
        )
        backend = self.client.backend
        sig = backend.sign_state(self.client.account, nxt)
        sigs: list[bytes | None] = [None] * ch.params.num_parts
        sigs[ch.idx] = sig
        tx = Transaction(nxt, tuple(sigs))
        loop = asyncio.get_running_loop()
        own = _Own(tx, loop.create_future())
        ch.rt.own = own  # from here on a peer proposal is a collision
        staged = m.stage(tx)
        io = ch.io

        async def persist_and_send() -> None:
            await io.write_now((staged,))
            if own.conflicted:
                # The peer's proposal crossed ours before we sent: the version is burned on
                # both sides already, no need to put our signature on the wire.
                return
            await self.engine.send(ch.peer, ChannelUpdate(nxt, ch.idx, sig))
            own.sent = True

        try:
            await ch.io.run_now(persist_and_send)
        except Exception:
            self._discard_own(ch, own)
            raise
        if own.conflicted and not own.future.done():
            self._resolve_conflict(ch, own)
        done = await self._await_answer(ch, own)
        # The dispatcher enabled the state and left its write to us (or to the I/O chain):
        # wait until it is persisted, then tell the user.
        then = own.then
        if then is not None:
            own.then = None
            await ch.io.fill(*then)
        elif ch.io.tail is not None:
            await ch.io.tail
        self.engine.notify_update(ch, cur, done.state)
        return done.state

    async def _await_answer(self, ch: Channel, own: _Own) -> Transaction:
        """Wait for the peer's answer to ``own`` within the update timeout.

        The wait is on ``own.future`` itself, timed by the protocol's shared
        :class:`Deadlines` (no timer, shield or context manager per update). A cancellation
        (the caller's or the deadline's) cancels the future; it is then replaced by a fresh
        pending one, which leaves ``own`` exactly as an unanswered proposal: a late answer
        still enables the state, and otherwise sync decides.
        """
        fut = own.future
        if fut.done():
            return fut.result()
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        own.waiting = True
        self.deadlines.add(own, task)
        try:
            return await fut
        except asyncio.CancelledError:
            expired = own.expired and task.uncancel() <= cancelling
            if fut.cancelled():
                # Unanswered: keep the proposal open for a late answer or the sync round.
                own.future = asyncio.get_running_loop().create_future()
                # Nobody awaits it any more: a later outcome (say, a registration) must not
                # be logged as an exception never retrieved.
                own.future.add_done_callback(_observe)
                self._give_up(ch, own)
            self._write_then(ch, own)
            if not expired:
                raise  # the caller gave up (e.g. wait_for): the proposal is still out there
            raise RequestTimedOutError(
                f"peer did not answer update v{own.tx.state.version} of channel "
                f"0x{ch.id.hex()[:12]} within {self.client.config.update_timeout}s; "
                "the channel will sync"
            ) from None
        finally:
            own.waiting = False
            self.deadlines.discard(own)

    @staticmethod
    def _expire(own: _Own, task: asyncio.Task[Any]) -> None:
        if own.waiting and not own.future.done():
            own.expired = True
            task.cancel()

    def _write_then(self, ch: Channel, own: _Own) -> None:
        """The proposer will not run the `enabled` write it was handed: run it in a task."""
        then = own.then
        if then is not None:
            own.then = None
            self.engine.spawn(ch.io.fill(*then))

    def close(self) -> None:
        """Stop the deadline timer (the client is closing)."""
        self.deadlines.close()

    def _give_up(self, ch: Channel, own: _Own) -> None:
        """Stop waiting for an answer: mark the proposal unresolved and start a sync round."""
        own.timed_out = True
        ch.io.write(ch.machine.set_needs_sync(True))
        self.engine.spawn(self.engine.sync.start(ch))

    def _discard_own(self, ch: Channel, own: _Own) -> None:
        if ch.rt.own is own:
            ch.rt.own = None
            _, changed = ch.machine.discard()
            ch.io.write(changed)

    def _resolve_conflict(self, ch: Channel, own: _Own) -> None:
        self._discard_own(ch, own)
        if not own.future.done():
            own.future.set_exception(
                UpdateConflictError(
                    "both parties proposed an update at once",
                    RejectCode.CONFLICT,
                    what="update",
                )
            )

    def on_acc(self, ch: Channel, msg: ChannelUpdateAcc) -> None:
        """The peer accepted our proposal (called synchronously by the dispatcher)."""
        own = ch.rt.own
        if own is None or own.tx.state.version != msg.version:
            log.debug(
                "unexpected update acceptance v%d for 0x%s",
                msg.version,
                ch.id.hex()[:12],
                extra=channel_extra(ch),
            )
            return
        state = own.tx.state
        err: MalformedSignatureError | None = None
        try:
            ok = self.client.backend.verify_state(
                ch.params.participants[ch.peer_idx], state, msg.sig
            )
        except MalformedSignatureError as e:
            ok, err = False, e
        if not ok:
            # The peer may hold the state fully signed (a buggy or hostile peer): the update
            # ends here as unresolved, and a sync round decides whether it is adopted or
            # discarded (never left in SIGNING).
            if not own.future.done():
                own.future.set_exception(
                    InvalidSignatureError(
                        "the peer's acceptance carries an invalid signature"
                        + (f": {err}" if err else "")
                        + "; the channel syncs with the peer",
                        channel_id=ch.id,
                        version=state.version,
                    )
                )
            if not own.timed_out:
                self._give_up(ch, own)
            return
        m = ch.machine
        ch.rt.own = None
        was_sync = m.needs_sync
        synced = m.set_needs_sync(False)
        enabled = m.complete(own.tx.with_sig(ch.peer_idx, msg.sig))
        tx = enabled.current
        self.engine.publish_to_watcher(ch, tx)
        write = ch.io.writer(enabled, synced)

        fut = own.future
        if own.waiting and not fut.done():
            # The proposer wakes up next and writes in its own task, in this place of the
            # I/O chain (a task here per update cost more than the write).
            own.then = (*ch.io.reserve(), write)
        else:
            ch.io.run(write)
        if not fut.done():
            fut.set_result(tx)
        elif fut.cancelled():
            pass  # the proposer's wait was just cancelled; it hands over to sync
        elif fut.exception() is not None or was_sync:
            # A late acceptance after a timeout still enables the state (see docs/protocols.md).
            self.engine.notify_update(ch, None, tx.state)

    def on_rej(self, ch: Channel, msg: ChannelUpdateRej) -> None:
        """The peer rejected our proposal (called synchronously by the dispatcher)."""
        own = ch.rt.own
        if own is None or own.tx.state.version != msg.version:
            log.debug(
                "unexpected update rejection v%d for 0x%s",
                msg.version,
                ch.id.hex()[:12],
                extra=channel_extra(ch),
            )
            return
        if msg.reject_code == RejectCode.CONFLICT:
            self._resolve_conflict(ch, own)
            return
        self._discard_own(ch, own)
        ch.rt.remember_signed(own.tx.state, ch.machine.current_version)
        if not own.future.done():
            own.future.set_exception(
                PeerRejectedError(msg.reason, msg.reject_code, what="update", signed=own.tx.state)
            )

    # --- responder -----------------------------------------------------------------------------

    def _deferred_or_refused(self, ch: Channel, env: Envelope, version: int) -> bool:
        """Whether a peer proposal cannot be considered now: queued while the channel is
        funding, or refused for a collision, a pending proposal or a needed sync (the
        answers are sent here)."""
        if ch.machine.phase in (Phase.INIT_SIGNING, Phase.FUNDING):
            if len(ch.rt.funding_queue) < self.client.config.funding_queue:
                ch.rt.funding_queue = (*ch.rt.funding_queue, env)
            else:
                self.send_rej(ch, version, RejectCode.NOT_READY, "funding queue full")
            return True
        own = ch.rt.own
        if own is not None and not own.future.done():
            # Collision: both sent before receiving. Burn both versions, refuse the peer's.
            # Our own proposal fails at once (the peer's CONFLICT answer to it is then
            # ignored); if it is not on the wire yet, it never will be.
            ch.io.write(ch.machine.burn(max(own.tx.state.version, version)))
            own.conflicted = True
            self._resolve_conflict(ch, own)
            self.send_rej(ch, version, RejectCode.CONFLICT, "concurrent update")
            return True
        if ch.rt.peer is not None:
            self.send_rej(ch, version, RejectCode.CONFLICT, "a proposal is pending")
            return True
        if ch.machine.needs_sync or not ch.rt.sync_done.is_set():
            self.send_rej(ch, version, RejectCode.SYNC_REQUIRED, "sync required")
            if not ch.rt.sync_sent:
                self.engine.spawn(self.engine.sync.start(ch))
            return True
        return False

    def on_update(self, ch: Channel, env: Envelope, msg: ChannelUpdate) -> None:
        """A peer proposal arrived (called synchronously by the dispatcher, in order)."""
        st = msg.state
        if self._deferred_or_refused(ch, env, st.version):
            return
        expected = False
        try:
            check_updatable(ch)
            assert ch.machine.current is not None
            cur = ch.machine.current.state
            # A change of locked funds is valid only as the exact funding or settlement of a
            # sub-channel we know; that one is accepted without asking the user.
            expected = st.allocation.locked != cur.allocation.locked and self.engine.subs.expected(
                ch, cur, st
            )
            check_update(
                ch.params,
                cur,
                st,
                actor_idx=msg.actor_idx,
                expected_actor=ch.peer_idx,
                version_floor=ch.machine.version_floor,
                app=self.engine.app_of(ch.params),
                allow_locked_change=expected,
            )
            self.engine.verify_peer_sig(ch, st, msg.sig)
        except (ChannelNotReadyError, ChannelRegisteredError) as e:
            self.send_rej(ch, st.version, RejectCode.NOT_READY, str(e))
            return
        except VersionError as e:
            if e.expected < e.got <= e.expected + FLOOR_SLACK:
                # The proposer burned versions we do not know of (its answer to an earlier
                # proposal was lost, say): a sync round tells both sides the same floor,
                # then the proposer tries again.
                self.send_rej(ch, st.version, RejectCode.SYNC_REQUIRED, str(e))
                if not ch.rt.sync_sent:
                    self.engine.spawn(self.engine.sync.start(ch))
                return
            log.info("refused invalid update from %s: %s", env.sender, e, extra=channel_extra(ch))
            self.send_rej(ch, st.version, RejectCode.INVALID, str(e))
            self.engine.notify_invalid(ch, e)
            return
        except InvalidUpdateError as e:
            log.info("refused invalid update from %s: %s", env.sender, e, extra=channel_extra(ch))
            self.send_rej(ch, st.version, RejectCode.INVALID, str(e))
            self.engine.notify_invalid(ch, e)
            return
        except Exception as e:  # noqa: BLE001 - a malformed signature or anything unexpected: refuse, live on
            log.info("refused update from %s: %s", env.sender, e, extra=channel_extra(ch))
            self.send_rej(ch, st.version, RejectCode.INVALID, f"{type(e).__name__}: {e}")
            if isinstance(e, PerunError):
                self.engine.notify_invalid(ch, e)
            return
        # Valid: the proposer's signature on this version exists now, so burn it either way.
        # Not written: nothing of ours is signed yet (a crash forgets the proposal, and the
        # proposer's sync view carries it again). Its version burns if it is discarded.
        ch.machine.stage(
            Transaction(
                st,
                tuple(msg.sig if i == msg.actor_idx else None for i in range(ch.params.num_parts)),
            )
        )
        pending = _Peer(msg)
        ch.rt.peer = pending
        ch.rt.idle.clear()
        if expected:
            UpdateResponder(self, ch, msg).accept()
            return
        self._decide_now(ch, msg, pending)

    def _decide_now(self, ch: Channel, msg: ChannelUpdate, pending: _Peer) -> None:
        """Ask the update handler, in the dispatcher (no task of its own).

        A plain handler decides right here: its ``accept()`` starts the one task of this
        update (sign, persist, send). An async handler, or one that hands the responder on,
        gets a task that waits for the decision within the update timeout.
        """
        responder = UpdateResponder(self, ch, msg)
        cur = ch.machine.current.state if ch.machine.current is not None else msg.state
        if (
            ch.rt.settling
            and msg.state.is_final
            and (msg.state.allocation == cur.allocation and msg.state.data == cur.data)
        ):
            responder.accept()
            return
        handler = self.engine.update_handler or accept_incoming_payments
        try:
            res = self.engine.call_user(ch, handler, ch, cur, msg.state, responder)
        except Exception as e:
            log.exception("update handler failed", extra=channel_extra(ch))
            if not responder.used:
                responder.used = True
                self.engine.spawn(self.reject(ch, msg, RejectCode.REJECTED, f"handler failed: {e}"))
            return
        if res is None or res is responder.task:
            # A plain handler: decided (accept()/reject() started the answer), or it handed
            # the responder on.
            if not responder.used:
                self.engine.spawn(self._decide(ch, msg, pending, responder, None))
            return
        if asyncio.iscoroutine(res) or isinstance(res, asyncio.Future):
            self.engine.spawn(self._decide(ch, msg, pending, responder, res))
        elif not responder.used:
            self.engine.spawn(self._decide(ch, msg, pending, responder, None))

    async def _decide(
        self,
        ch: Channel,
        msg: ChannelUpdate,
        pending: _Peer,
        responder: UpdateResponder,
        res: Any,
    ) -> None:
        """Wait for an async handler (``res``) or a handed-on responder, then its answer."""
        try:
            async with asyncio.timeout(self.client.config.update_timeout):
                if res is not None:
                    task = asyncio.current_task()
                    assert task is not None
                    ch.rt.callback_tasks = (*ch.rt.callback_tasks, task)
                    try:
                        await res
                    finally:
                        ch.rt.unmark_callback(task)
                if not responder.used:
                    # An async handler may hand the responder to other code; wait.
                    await pending.decided.wait()
                if responder.task is not None:
                    await asyncio.wait((responder.task,))  # its failure is logged by _answer
        except TimeoutError:
            if not responder.used:
                responder.used = True
                await self.reject(ch, msg, RejectCode.TIMEOUT, "no decision in time")
            elif responder.task is not None and not responder.task.done():
                # accept()/reject() itself stalled (persistence or send); let it finish.
                await asyncio.wait((responder.task,))
        except UpdateAbortedError:
            pass
        except Exception as e:
            log.exception("update handler failed", extra=channel_extra(ch))
            if not responder.used:
                responder.used = True
                await self.reject(ch, msg, RejectCode.REJECTED, f"handler failed: {e}")

    def answer(self, coro: Any) -> asyncio.Task[None]:
        """Run an accept/reject as a tracked task whose failure is logged (not raised)."""
        # One done callback for the bookkeeping and the log (this runs once per update).
        loop = asyncio.get_running_loop()
        task: asyncio.Task[None]
        if _EAGER_TASKS:
            # Python 3.12+: the answer runs at once, up to its first wait (with the memory
            # persister: signed, persisted and sent before the dispatcher returns), instead
            # of one event-loop turn later.
            task = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
        else:
            task = loop.create_task(coro)
        self.engine.tasks.add(task)
        task.add_done_callback(self.answer_done)
        return task

    def answer_done(self, task: asyncio.Task[None]) -> None:
        self.engine.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, UpdateAbortedError):
            log.error("answering an update proposal failed: %s", exc, exc_info=exc)

    async def accept(self, ch: Channel, msg: ChannelUpdate) -> None:
        """Sign the peer's pending proposal, persist it, make it current, answer."""
        pending = ch.rt.peer
        if pending is None or pending.msg is not msg or pending.aborted:
            raise UpdateAbortedError("the proposal is no longer pending (sync or dispute)")
        m = ch.machine
        old = m.current.state if m.current is not None else None
        sig = self.client.backend.sign_state(self.client.account, msg.state)
        staged = m.staging
        assert staged is not None
        tx = staged.with_sig(ch.idx, sig)
        phase = Phase.FINAL if tx.state.is_final else Phase.ACTING
        version = msg.state.version
        io = ch.io
        written = False

        async def persist_and_send() -> None:
            # Durable first: our signature and the new state leave the process (and become
            # current) only once the write succeeded.
            nonlocal written
            await io.write_now((Enabled(tx, phase),))
            written = True
            if ch.rt.peer is pending and not pending.aborted:
                m.complete(tx)
                self.engine.publish_to_watcher(ch, tx)
                self._finish_peer(ch, pending)
                await self.engine.send(ch.peer, ChannelUpdateAcc(ch.id, version, sig))

        try:
            await io.run_now(persist_and_send)
        except Exception:
            if not written:
                self._refuse_unpersisted(ch, pending, version)
            raise
        if m.current is not tx:
            raise UpdateAbortedError("the proposal was aborted (sync or dispute) while persisting")
        self.engine.notify_update(ch, old, tx.state)

    def _refuse_unpersisted(self, ch: Channel, pending: _Peer, version: int) -> None:
        """Our write of an accepted state failed: nothing left the process; refuse it.

        The version is burned (we signed it locally) and the refusal tells the peer to burn
        it too; the channel syncs before its next update, so a lost refusal is caught up.
        """
        m = ch.machine
        if ch.rt.peer is pending:
            m.discard()
            self._finish_peer(ch, pending)
        m.burn(version)
        m.set_needs_sync(True)
        ch.io.write(m.phase_record())
        self.send_rej(ch, version, RejectCode.REJECTED, "the responder could not persist it")

    async def reject(self, ch: Channel, msg: ChannelUpdate, code: int, reason: str) -> None:
        """Refuse the peer's pending proposal (the proposer's version is burned)."""
        pending = ch.rt.peer
        if pending is None or pending.msg is not msg:
            raise UpdateAbortedError("the proposal is no longer pending")
        _, changed = ch.machine.discard()
        fut = self.send_rej(ch, msg.state.version, code, reason)
        ch.io.write(changed)
        self._finish_peer(ch, pending)
        await fut

    def _finish_peer(self, ch: Channel, pending: _Peer) -> None:
        if ch.rt.peer is pending:
            ch.rt.peer = None
        pending.decided.set()
        ch.rt.idle.set()

    def send_rej(self, ch: Channel, version: int, code: int, reason: str) -> asyncio.Future[None]:
        msg = ChannelUpdateRej(ch.id, version, code, reason[:1000])
        return ch.io.run(lambda: self.engine.send(ch.peer, msg))


def check_updatable(ch: Channel) -> None:
    """Raise unless a new update may start on ``ch`` (rule U1)."""
    rt = ch.rt
    m = ch.machine
    if rt.closed:
        raise ChannelClosedError(f"channel 0x{ch.id.hex()[:12]} is closed")
    if m.needs_sync or rt.frozen:
        raise SyncRequiredError(
            f"channel 0x{ch.id.hex()[:12]} must sync with its peer first "
            "(an earlier update did not resolve)"
        )
    phase = m.phase
    if phase in IN_DISPUTE or phase == Phase.REGISTERING:
        raise ChannelRegisteredError(f"channel 0x{ch.id.hex()[:12]} is in dispute")
    if phase != Phase.ACTING:
        raise ChannelNotReadyError(
            f"updates need phase ACTING, the channel is {phase.name}",
            phase=phase,
            channel_id=ch.id,
        )


# Local aliases keep the hot path free of attribute lookups on the runtime module.
from perun_core.client.runtime import OwnUpdate as _Own  # noqa: E402
from perun_core.client.runtime import PeerUpdate as _Peer  # noqa: E402


def _observe(fut: asyncio.Future[Any]) -> None:
    """Mark the outcome of a future nobody awaits as seen."""
    if not fut.cancelled():
        fut.exception()
