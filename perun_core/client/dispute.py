"""Disputes: registering on the ledger, following its events, concluding and withdrawing
(PROTOCOL.md §5.5).

The watcher reports every ledger event of a channel here, synchronously and in ledger order.
A registration (ours or the peer's) ends off-chain updates: a pending update is discarded
and its version burned. Settling a registered channel waits for the dispute's timeout, then
concludes with the registered state and withdraws.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from perun_core.channel.phase import Phase
from perun_core.channel.state import State, Transaction
from perun_core.errors import ChainError, ChannelRegisteredError
from perun_core.interfaces.adjudicator import (
    AdjudicatorEvent,
    AdjudicatorReq,
    ConcludedEvent,
    ProgressedEvent,
    RegisteredEvent,
)
from perun_core.logging import channel_extra

if TYPE_CHECKING:
    from perun_core.client.channel import Channel
    from perun_core.client.client import Client

log = logging.getLogger("perun.dispute")

_DISPUTE_PHASES = (Phase.REGISTERED, Phase.PROGRESSING, Phase.PROGRESSED)
_PRE_DISPUTE = (Phase.FUNDING, Phase.ACTING, Phase.SIGNING, Phase.FINAL, Phase.REGISTERING)


class DisputeProtocol:
    """The dispute protocol of one client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    # --- ledger events (from the watcher, synchronous) ------------------------------------------

    def on_event(self, ch: Channel, ev: AdjudicatorEvent) -> None:
        """Apply one ledger event to the channel and tell the application."""
        ch._last_event = ev
        if isinstance(ev, RegisteredEvent | ProgressedEvent):
            if ev.state is not None:
                ch._registered_state = ev.state
            if ch._phase in _PRE_DISPUTE:
                self._end_offchain(ch)
                ch._set_phase(Phase.REGISTERED)
                ch._persist_phase()
            if isinstance(ev, ProgressedEvent) and ch._phase in (
                Phase.REGISTERED,
                Phase.PROGRESSING,
                Phase.PROGRESSED,
            ):
                ch._set_phase(Phase.PROGRESSED)
                ch._persist_phase()
            if self.client.config.auto_settle and ch._phase in _DISPUTE_PHASES:
                self.ensure_settle(ch)
        elif isinstance(ev, ConcludedEvent):
            ch._concluded = True
            adopted = self._outcome_state(ch, ev.version)
            if adopted is not None:
                ch._registered_state = adopted
            if ch._phase in _PRE_DISPUTE:
                # The ledger fixed the outcome (e.g. the peer concluded a final state whose
                # acceptance we never received): off-chain work is over, withdraw.
                self._end_offchain(ch)
                ch._set_phase(Phase.REGISTERED)
                ch._persist_phase()
            if self.client.config.auto_settle and ch._phase not in (
                Phase.WITHDRAWING,
                Phase.WITHDRAWN,
            ):
                self.ensure_settle(ch)
        ch._pulse()
        ch._emit_event(ev)

    @staticmethod
    def _outcome_state(ch: Channel, version: int) -> State | None:
        """The state we know (and signed) at ``version``: current, staged or proposed."""
        candidates: list[State] = []
        if ch._current is not None:
            candidates.append(ch._current.state)
        if ch._staging is not None:
            candidates.append(ch._staging.state)
        if ch._own is not None:
            candidates.append(ch._own.tx.state)
        candidates.extend(ch._signed_open)
        for st in candidates:
            if st.version == version:
                return st
        return None

    def _end_offchain(self, ch: Channel) -> None:
        """A registration ends off-chain work: discard what is pending, burn its version."""
        own = ch._own
        if own is not None:
            ch._own = None
            ch._burn(own.tx.state.version)
            ch._remember_signed(own.tx.state)
            if not own.future.done():
                own.future.set_exception(
                    ChannelRegisteredError(
                        f"channel 0x{ch.id.hex()[:12]} was registered on the ledger "
                        "while an update was in flight"
                    )
                )
        peer = ch._peer
        if peer is not None:
            peer.aborted = True
            ch._burn(peer.msg.state.version)
            ch._peer = None
            peer.decided.set()
            ch._idle.set()
        ch._staging = None
        # The staged update is gone; through the state machine like every phase change.
        if ch._phase == Phase.SIGNING:
            ch._set_phase(Phase.ACTING)

    # --- our own ledger operations ---------------------------------------------------------------

    async def register(self, ch: Channel) -> None:
        """Register the channel's latest fully signed state (no-op if it is already there)."""
        if ch._current is None:
            raise ChannelRegisteredError("the channel has no fully signed state to register")
        if ch._phase in _PRE_DISPUTE and ch._phase != Phase.REGISTERING:
            self._end_offchain(ch)
            ch._set_phase(Phase.REGISTERING)
            await ch._persist_phase()
        req = AdjudicatorReq(ch.params, ch._current, ch.idx)
        try:
            await self.client.adjudicator.register(req)
        except ChainError as e:
            # The peer may have registered the same or a newer state, or concluded already:
            # then the ledger's state decides, and settling proceeds from there.
            if "concluded" in e.reason:
                ch._concluded = True
            elif "invalid version" not in e.reason and "incorrect phase" not in e.reason:
                raise
            log.info(
                "register on 0x%s: %s (the ledger decides)",
                ch.id.hex()[:12],
                e,
                extra=channel_extra(ch),
            )
        if ch._phase == Phase.REGISTERING:
            ch._set_phase(Phase.REGISTERED)
            await ch._persist_phase()

    def ensure_settle(self, ch: Channel) -> asyncio.Future[None]:
        """Start (once) concluding and withdrawing a registered channel; returns its task."""
        if ch._settle_task is None or (
            ch._settle_task.done() and ch._settle_task.exception() is not None
        ):
            ch._settle_task = self.client._spawn(self._settle_registered(ch))
        return ch._settle_task

    async def settle(self, ch: Channel) -> None:
        """Settle through the ledger: register if needed, wait out the dispute, withdraw."""
        if ch._phase not in (*_DISPUTE_PHASES, Phase.WITHDRAWING, Phase.WITHDRAWN):
            await self.register(ch)
        await asyncio.shield(self.ensure_settle(ch))

    async def _latest_event(self, ch: Channel) -> AdjudicatorEvent | None:
        """The channel's latest ledger event; asks the ledger when no watcher follows it."""
        if ch._last_event is None and self.client.watcher is None:
            sub = await self.client.adjudicator.subscribe(ch.params)
            try:
                ev = await asyncio.wait_for(sub.next(), self.client.config.sync_timeout)
            except TimeoutError:
                ev = None
            finally:
                await sub.close()
            if ev is not None:
                ch._last_event = ev
                if isinstance(ev, RegisteredEvent | ProgressedEvent) and ev.state is not None:
                    ch._registered_state = ev.state
                ch._concluded = ch._concluded or isinstance(ev, ConcludedEvent)
        return ch._last_event

    async def _wait_concludable(self, ch: Channel) -> None:
        """Wait until the latest event's timeout passed; a newer event restarts the wait."""
        while not ch._concluded:
            ev = await self._latest_event(ch)
            if ev is None or await ev.timeout.is_elapsed():
                return
            changed = asyncio.ensure_future(ch._changed.wait())
            elapsed = asyncio.ensure_future(ev.timeout.wait())
            try:
                await asyncio.wait({changed, elapsed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
                elapsed.cancel()

    async def _refresh(self, ch: Channel) -> None:
        """Read the channel's latest ledger event directly (the watcher may trail it)."""
        sub = await self.client.adjudicator.subscribe(ch.params)
        try:
            ev = await asyncio.wait_for(sub.next(), self.client.config.sync_timeout)
        except TimeoutError:
            ev = None
        finally:
            await sub.close()
        if ev is None:
            return
        ch._last_event = ev
        if isinstance(ev, RegisteredEvent | ProgressedEvent) and ev.state is not None:
            ch._registered_state = ev.state
        elif isinstance(ev, ConcludedEvent):
            ch._concluded = True
            known = self._outcome_state(ch, ev.version)
            if known is not None:
                ch._registered_state = known

    def _withdraw_req(self, ch: Channel) -> AdjudicatorReq:
        """The withdrawal request: the registered state if known, else our latest one."""
        state = ch._registered_state or (ch._current.state if ch._current else None)
        assert state is not None
        tx = ch._current
        if tx is None or tx.state != state:
            tx = Transaction(state, tuple(None for _ in ch.params.participants))
        return AdjudicatorReq(ch.params, tx, ch.idx, secondary=ch.idx != 0)

    async def _settle_registered(self, ch: Channel) -> None:
        if ch._phase == Phase.WITHDRAWN:
            return
        await self._wait_concludable(ch)
        if ch._phase != Phase.WITHDRAWING:
            ch._set_phase(Phase.WITHDRAWING)
            await ch._persist_phase()
        for attempt in range(WITHDRAW_ATTEMPTS):
            try:
                # Conclude with the registered state (it may be newer than our current one
                # if the peer registered a state whose acceptance we never received); once
                # concluded, the ledger's outcome is withdrawn whatever state we pass.
                await self.client.adjudicator.withdraw(self._withdraw_req(ch), {})
                break
            except ChainError as e:
                # A newer event (a refutation, the peer's registration or conclusion) may
                # have moved the deadline or the registered state before our watcher saw
                # it: read the ledger again, wait if needed, and retry.
                if attempt == WITHDRAW_ATTEMPTS - 1 or not _retryable(e):
                    raise
                log.info(
                    "withdraw on 0x%s: %s (reading the ledger again)",
                    ch.id.hex()[:12],
                    e,
                    extra=channel_extra(ch),
                )
                await self._refresh(ch)
                await self._wait_concludable(ch)
                await asyncio.sleep(0.01 * (attempt + 1))
        await self.client._finish_channel(ch)


WITHDRAW_ATTEMPTS = 20


def _retryable(e: ChainError) -> bool:
    """Whether a refused conclusion can succeed after reading the ledger again."""
    reason = e.reason
    return any(
        r in reason
        for r in (
            "timeout not passed",
            "another state",
            "state mismatch",
            "not registered",
            "invalid channel state",
        )
    )
