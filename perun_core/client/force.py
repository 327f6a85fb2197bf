"""Force execution: moving an app channel's state on the ledger alone (see docs/protocols.md).

Once a dispute's refutation window is over, either party of an app channel may advance the
registered state by one version with a transaction only it signs; the ledger runs the app's
rule on it (``progress``) and starts a force-execution window of one challenge duration, in
which either party may advance it again. The channel concludes with the last progressed
state once that window has ended.

Our own force update is checked here against every update rule, with the app's on-chain
rule at the ledger's time in place of its off-chain one, before anything is signed: a
transition the ledger would refuse costs no transaction. Its state is staged (phase
PROGRESSING) and persisted before the signature leaves the process. The ledger's Progressed
event, ours or the peer's, makes the forced state the channel's current state (phase
PROGRESSED); a failed transaction returns the channel to the phase it came from. A client
restarted in PROGRESSING follows the ledger's next event.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from perun_core.channel.app import App
from perun_core.channel.phase import Phase
from perun_core.channel.state import State, Transaction
from perun_core.channel.validation import check_update
from perun_core.errors import (
    ChainError,
    ChannelNotReadyError,
    ForceExecutionClosedError,
    NoAppError,
    NotSupportedError,
    TimeoutNotElapsedError,
    UnknownAppError,
)
from perun_core.interfaces.adjudicator import (
    AdjudicatorEvent,
    AdjudicatorReq,
    ConcludedEvent,
    ProgressedEvent,
    RegisteredEvent,
)
from perun_core.logging import channel_extra

if TYPE_CHECKING:
    from collections.abc import Callable

    from perun_core.client.channel import Channel
    from perun_core.client.engine import Engine

log = logging.getLogger("perun.force")

POLL_MIN, POLL_MAX = 0.05, 0.5
"""Seconds between two reads of the ledger clock while a conclusion waits for the end of the
force-execution phase (no ledger event marks it)."""


class ForceProtocol:
    """Force execution for the app channels of one client."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.client = engine.client
        self._inflight: set[bytes] = set()  # channels whose progress transaction is out

    # --- our force update ------------------------------------------------------------------------

    async def force_update(self, ch: Channel, fn: Callable[[State], State]) -> State:
        """Force ``fn(ledger state)`` on the ledger (the caller holds the operation slot)."""
        m = ch.machine
        app = self._app(ch)
        if m.in_phase(Phase.WITHDRAWING, Phase.WITHDRAWN):
            raise ForceExecutionClosedError(
                f"channel 0x{ch.id.hex()[:12]} is concluding", operation="force_update"
            )
        if not m.in_phase(Phase.REGISTERED, Phase.PROGRESSED):
            raise ChannelNotReadyError(
                f"a force update needs a registered channel (REGISTERED or PROGRESSED), "
                f"the channel is {m.phase.name}",
                phase=m.phase,
                channel_id=ch.id,
            )
        ev = await self.engine.disputes.latest_event(ch)
        base = self._ledger_state(ch, ev)
        now = await self._check_window(ch, ev)
        nxt = fn(base).replace(channel_id=ch.id, version=base.version + 1)
        check_update(
            ch.params,
            base,
            nxt,
            actor_idx=ch.idx,
            expected_actor=ch.idx,
            version_floor=0,
            app=app,
            progress_at=now,  # the ledger runs the app's on-chain rule at its time
        )
        # Stage and persist before our signature leaves the process: after a crash the
        # record shows the transaction that may be on its way to the ledger.
        sig = self.client.backend.sign_state(self.client.account, nxt)
        tx = Transaction.unsigned(nxt, ch.params.num_parts).with_sig(ch.idx, sig)
        cur = m.current
        old = cur if cur is not None and cur.state == base else None
        req = AdjudicatorReq(
            ch.params, old or Transaction.unsigned(base, ch.params.num_parts), ch.idx
        )
        self._inflight.add(ch.id)
        try:
            await ch.io.write(m.progressing(tx))
            await self.client.adjudicator.progress(req, nxt, sig)
        except BaseException as e:
            self._inflight.discard(ch.id)
            if m.in_phase(Phase.PROGRESSING):
                # Refused or not sent: the ledger still holds the old state. (Should the
                # transaction land after all, its event is adopted from there.)
                done = ch.io.write(m.progress_failed())
                if isinstance(e, ChainError):
                    await done
            if isinstance(e, ChainError):
                log.info(
                    "force update of 0x%s to v%d refused: %s",
                    ch.id.hex()[:12],
                    nxt.version,
                    e,
                    extra=channel_extra(ch),
                )
            raise
        self._inflight.discard(ch.id)
        await self._await_event(ch, nxt.version)
        if m.in_phase(Phase.PROGRESSING):
            # The ledger accepted it but its event has not come through (no watcher, or a
            # slow one): adopt it now; the event, when it comes, changes nothing.
            ch.rt.registered_state = nxt
            self._adopt(ch, tx)
        await ch.io.run(_settled)  # the adoption is written before we return
        return nxt

    async def _await_event(self, ch: Channel, version: int) -> None:
        """Wait (bounded) until the watcher reported the ledger event of ``version``."""
        if self.client.watcher is None:
            return
        rt = ch.rt
        try:
            async with asyncio.timeout(self.client.config.sync_timeout):
                while rt.last_event is None or rt.last_event.version < version:
                    if rt.concluded:
                        return
                    await rt.changed.wait()
        except TimeoutError:
            pass

    def _app(self, ch: Channel) -> App:
        if ch.params.app is None:
            raise NoAppError(
                "a channel without app cannot be force-updated; settle() concludes it with "
                "its registered state",
                channel_id=ch.id,
            )
        app = self.engine.app_of(ch.params)
        if app is None:
            raise UnknownAppError(f"app 0x{ch.params.app.hex()} of the channel is not installed")
        return app

    def _ledger_state(self, ch: Channel, ev: AdjudicatorEvent | None) -> State:
        """The state the ledger holds (registered or progressed): the base of the update."""
        if ev is None or isinstance(ev, ConcludedEvent) or ch.rt.concluded:
            if ev is None:
                raise ChannelNotReadyError(
                    "no dispute of the channel is known on the ledger",
                    phase=ch.machine.phase,
                    channel_id=ch.id,
                )
            raise ForceExecutionClosedError("the channel is concluded", operation="force_update")
        st = ch.rt.registered_state
        if st is None or st.version < ev.version:
            cur = ch.machine.current
            st = cur.state if cur is not None and cur.state.version == ev.version else None
        if st is None:
            raise ChannelNotReadyError(
                f"the ledger's state v{ev.version} of the channel is not known here",
                phase=ch.machine.phase,
                channel_id=ch.id,
            )
        return st

    async def _check_window(self, ch: Channel, ev: AdjudicatorEvent | None) -> int:
        """Raise unless forcing is open now; returns the ledger time to check the app with.

        Open: after a registration's refutation window, or within a force-execution window.
        """
        assert ev is not None
        elapsed = await ev.timeout.is_elapsed()
        deadline = ev.timeout.deadline
        if isinstance(ev, RegisteredEvent) and not elapsed:
            raise TimeoutNotElapsedError(
                f"the refutation window of channel 0x{ch.id.hex()[:12]} runs until ledger "
                f"time {deadline}; force updates start after it",
                operation="force_update",
            )
        if isinstance(ev, ProgressedEvent) and elapsed:
            raise ForceExecutionClosedError(
                f"the force-execution window of channel 0x{ch.id.hex()[:12]} ended at ledger "
                f"time {deadline}",
                operation="force_update",
            )
        try:
            return await self.client.backend.ledger_time()
        except NotSupportedError:
            # No clock to read: the window's bounds are known bounds of the ledger's time.
            if isinstance(ev, RegisteredEvent):
                return deadline
            return deadline - ch.params.challenge_duration

    # --- ledger events (from DisputeProtocol.on_event, synchronous) ------------------------------

    def on_event(self, ch: Channel, ev: AdjudicatorEvent) -> None:
        """Settle a PROGRESSING channel that no progress call of ours drives (a restart):
        the ledger's latest event decides whether our transaction landed."""
        m = ch.machine
        if not m.in_phase(Phase.PROGRESSING) or ch.id in self._inflight:
            return
        if isinstance(ev, ProgressedEvent):
            return  # adopted by on_progressed
        st = m.staging
        if isinstance(ev, ConcludedEvent) and st is not None and st.state.version == ev.version:
            self._adopt(ch, st)  # it landed, and the channel concluded with it
            return
        ch.io.write(m.progress_failed())

    def on_progressed(self, ch: Channel, ev: ProgressedEvent) -> None:
        """A Progressed event (ours or the peer's): its state becomes current."""
        m = ch.machine
        if ev.state is None:
            ch.io.write(m.progressed())  # a ledger that does not report the state
            return
        st = m.staging
        tx = (
            st
            if st is not None and st.state == ev.state
            else Transaction.unsigned(ev.state, ch.params.num_parts)
        )
        self._adopt(ch, tx)

    def _adopt(self, ch: Channel, tx: Transaction) -> None:
        cur = ch.machine.current
        enabled = ch.machine.adopt_progressed(tx)
        if enabled is None:
            return
        ch.rt.pulse()
        old = cur.state if cur is not None else None

        async def write_then_tell() -> None:
            # The forced state is durable before the application learns of it.
            await ch.io.write_now((enabled,))
            if old is not None and old != tx.state:
                self.engine.notify_update(ch, old, tx.state)

        ch.io.run(write_then_tell)

    # --- concluding ------------------------------------------------------------------------------

    async def wait_force_window(self, ch: Channel, ev: AdjudicatorEvent | None) -> bool:
        """Hold a conclusion back while force execution may still change the outcome.

        Called once the latest event's timeout has passed. An app channel's registration
        concludes only one more challenge duration later (the ledger keeps that room for
        force updates); our own progress transaction in flight is awaited too. Returns
        whether it waited (the caller then reads the latest event again).
        """
        rt = ch.rt
        if ch.machine.in_phase(Phase.PROGRESSING):
            await rt.changed.wait()
            return True
        if ch.params.app is None or not isinstance(ev, RegisteredEvent) or rt.concluded:
            return False
        target = ev.timeout.deadline + ch.params.challenge_duration
        backend = self.client.backend
        try:
            now = await backend.ledger_time()
        except NotSupportedError:
            return False  # the ledger refuses an early conclusion; settling retries
        if now >= target:
            return False
        changed = asyncio.ensure_future(rt.changed.wait())
        try:
            while now < target and not changed.done():
                pause = min(POLL_MAX, max(POLL_MIN, (target - now) / 8))
                await asyncio.wait({changed}, timeout=pause)
                now = await backend.ledger_time()
        finally:
            changed.cancel()
        return True

    async def wait_sub_force_windows(self, subs: list[Channel]) -> bool:
        """Hold the conclusion of a root back while an app sub-channel's force execution is
        open; returns whether it waited (the caller then looks at the ledger again).

        The ledger concludes a tree once the root's timeout has passed; it does not wait for
        the sub-channels' force-execution windows. An honest client leaves them their room:
        a registered app sub-channel gets one more challenge duration after its refutation
        window, a progressed one the rest of its force-execution window.
        """
        for sub in subs:
            if sub.params.app is None or sub.rt.concluded:
                continue
            # Registered with the root: read from the ledger if no event came through yet.
            ev = await self.engine.disputes.latest_event(sub)
            if ev is None or sub.rt.concluded:
                continue
            held = sub.rt.registered_state
            if held is not None and held.is_final:
                continue  # nothing can be forced after a final state
            if isinstance(ev, ProgressedEvent) and not await ev.timeout.is_elapsed():
                changed = asyncio.ensure_future(sub.rt.changed.wait())
                elapsed = asyncio.ensure_future(ev.timeout.wait())
                try:
                    await asyncio.wait({changed, elapsed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                    elapsed.cancel()
                return True
            if await self.wait_force_window(sub, ev):
                return True
        return False

    def watch(self, ch: Channel) -> None:
        """Watch a restored channel whose current state is a progressed one (it carries one
        signature only: it is never handed on as a state to refute with)."""
        watcher = self.client.watcher
        cur = ch.machine.current
        if watcher is not None and cur is not None and ch.params.ledger_channel:
            watcher.start_watching(ch.params, ch.idx, cur)


async def _settled() -> None:
    """An empty I/O step: awaiting it waits for every earlier write of the channel."""


__all__ = ["ForceProtocol"]
