"""Disputes: registering on the ledger, following its events, concluding and withdrawing
(see docs/protocols.md).

The watcher reports every ledger event of a channel here, synchronously and in ledger order.
A registration (ours or the peer's) ends off-chain updates: a pending update is discarded
and its version burned. Settling a registered channel waits for the dispute's timeout, then
concludes with the registered state and withdraws.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from perun_core.channel.limits import MAX_SUBALLOCS
from perun_core.channel.machine import IN_DISPUTE, PRE_DISPUTE
from perun_core.channel.phase import Phase
from perun_core.channel.state import SignedState, State, Transaction
from perun_core.errors import (
    AlreadyConcludedError,
    ChainConnectionError,
    ChainError,
    ChannelRegisteredError,
    NotRegisteredError,
    RefutationClosedError,
    StaleStateError,
    StateMismatchError,
    TimeoutNotElapsedError,
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
    from perun_core.client.channel import Channel
    from perun_core.client.engine import Engine

log = logging.getLogger("perun.dispute")


class DisputeProtocol:
    """The dispute protocol of one client."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.client = engine.client

    # --- ledger events (from the watcher, synchronous) ------------------------------------------

    def on_event(self, ch: Channel, ev: AdjudicatorEvent) -> None:
        """Apply one ledger event to the channel and tell the application."""
        rt, m = ch.rt, ch.machine
        rt.last_event = ev
        self.engine.force.on_event(ch, ev)
        auto = self.client.config.auto_settle
        if isinstance(ev, RegisteredEvent | ProgressedEvent):
            if ev.state is not None:
                rt.registered_state = ev.state
            if m.phase in PRE_DISPUTE:
                self._end_offchain(ch)
                ch.io.write(m.registered())
            if isinstance(ev, ProgressedEvent):
                self.engine.force.on_progressed(ch, ev)
            if auto and m.phase in IN_DISPUTE:
                self.ensure_settle(ch)
        elif isinstance(ev, ConcludedEvent):
            rt.concluded = True
            known = self.outcome_state(ch, ev.version)
            if known is not None:
                rt.registered_state = known
            if m.phase in PRE_DISPUTE and m.phase != Phase.FINAL:
                # The ledger fixed the outcome (e.g. the peer concluded a final state whose
                # acceptance we never received): off-chain work is over, withdraw.
                self._end_offchain(ch)
                ch.io.write(m.registered())
            if auto and m.phase not in (Phase.WITHDRAWING, Phase.WITHDRAWN):
                self.ensure_settle(ch)
        rt.pulse()
        self.engine.emit_event(ch, ev)

    @staticmethod
    def outcome_state(ch: Channel, version: int) -> State | None:
        """The state we know (and signed) at ``version``: current, staged or proposed."""
        known = ch.machine.state_at(version)
        if known is not None:
            return known
        own = ch.rt.own
        if own is not None and own.tx.state.version == version:
            return own.tx.state
        for st in ch.rt.signed_open:
            if st.version == version:
                return st
        return None

    def _end_offchain(self, ch: Channel) -> None:
        """A registration ends off-chain work: pending updates end, their versions burn.

        Our own proposal is kept among the states we signed that may be enforced (the
        ledger may conclude with it).
        """
        m = ch.machine
        cur = m.current_version
        own = ch.rt.own
        if own is not None:
            ch.rt.own = None
            m.burn(own.tx.state.version)
            ch.rt.remember_signed(own.tx.state, cur)
            if not own.future.done():
                own.future.set_exception(
                    ChannelRegisteredError(
                        f"channel 0x{ch.id.hex()[:12]} was registered on the ledger "
                        "while an update was in flight"
                    )
                )
                # The proposer may not be waiting for it any more (it failed or was
                # cancelled meanwhile): the error is its answer, not an unhandled one.
                own.future.exception()
        peer = ch.rt.peer
        if peer is not None:
            peer.aborted = True
            m.burn(peer.msg.state.version)
            ch.rt.peer = None
            peer.decided.set()
            ch.rt.idle.set()
        st = m.staging
        if st is not None and st.sigs[ch.idx] is not None:
            ch.rt.remember_signed(st.state, cur)

    # --- our own ledger operations ---------------------------------------------------------------

    def tree(self, root: Channel) -> list[Channel]:
        """``root`` and every live sub-channel under it, depth-first pre-order."""
        out = [root]
        todo = list(reversed(self.engine.children(root)))
        while todo and len(out) <= MAX_SUBALLOCS:
            ch = todo.pop()
            out.append(ch)
            todo.extend(reversed(self.engine.children(ch)))
        return out

    def sub_states(self, channels: list[Channel], registered: bool) -> dict[bytes, SignedState]:
        """The sub-channels' states for a registration (our newest fully signed ones) or a
        conclusion (what the ledger registered, where known)."""
        out: dict[bytes, SignedState] = {}
        for ch in channels[1:]:
            tx = ch.machine.current
            if registered and ch.rt.registered_state is not None:
                st = ch.rt.registered_state
                if tx is None or tx.state != st:
                    tx = Transaction(st, tuple(None for _ in ch.params.participants))
            if tx is None:
                continue
            if registered and not tx.fully_signed:
                # A conclusion matches each sub-state against the ledger's record, not its
                # signatures: a forced (progressed) state carries its actor's only.
                out[ch.id] = SignedState(ch.params, tx.state, ())
            else:
                out[ch.id] = SignedState.from_tx(ch.params, tx)
        return out

    async def register(self, ch: Channel) -> None:
        """Register the latest fully signed state of ``ch``'s tree (from its root ledger
        channel, with every sub-channel); a no-op for what the ledger already holds."""
        root = self.engine.root_of(ch)
        tree = self.tree(root)
        current = root.machine.current
        if current is None:
            raise ChannelRegisteredError("the channel has no fully signed state to register")
        for c in tree:
            m = c.machine
            if m.phase in PRE_DISPUTE and m.phase != Phase.REGISTERING and m.current is not None:
                self._end_offchain(c)
                await c.io.write(m.registering())
        req = AdjudicatorReq(root.params, current, root.idx)
        try:
            await self.client.adjudicator.register(req, self.sub_states(tree, registered=False))
        except ChainError as e:
            # The peer may have registered the same or a newer state, or concluded already:
            # then the ledger's state decides, and settling proceeds from there.
            if not registration_superseded(e):
                raise
            if isinstance(e, AlreadyConcludedError):
                root.rt.concluded = True
            log.info(
                "register on 0x%s: %s (the ledger decides)",
                root.id.hex()[:12],
                e,
                extra=channel_extra(root),
            )
        for c in tree:
            if c.machine.phase == Phase.REGISTERING:
                await c.io.write(c.machine.registered())

    def ensure_settle(self, ch: Channel) -> asyncio.Future[None]:
        """Start (once) concluding and withdrawing a registered channel; returns its task.

        For a sub-channel that is its root ledger channel's task: concluding the root
        settles the whole tree.
        """
        if ch.parent is not None:
            return self.ensure_settle(self.engine.root_of(ch))
        if ch.rt.settle_task is None or (
            ch.rt.settle_task.done() and ch.rt.settle_task.exception() is not None
        ):
            ch.rt.settle_task = self.engine.spawn(self._settle_registered(ch))
        return ch.rt.settle_task

    async def settle(self, ch: Channel) -> None:
        """Settle through the ledger: register if needed, wait out the dispute, withdraw."""
        ch = self.engine.root_of(ch)
        if ch.machine.phase not in (*IN_DISPUTE, Phase.WITHDRAWING, Phase.WITHDRAWN):
            await self.register(ch)
        await asyncio.shield(self.ensure_settle(ch))

    async def _latest_event(self, ch: Channel) -> AdjudicatorEvent | None:
        """The channel's latest ledger event; asks the ledger when no watcher follows it."""
        if ch.rt.last_event is None and self.client.watcher is None:
            await self._refresh(ch)
        return ch.rt.last_event

    async def latest_event(self, ch: Channel) -> AdjudicatorEvent | None:
        """The channel's latest ledger event; read from the ledger when none came yet (no
        watcher runs, or it trails our own registration)."""
        if ch.rt.last_event is None:
            await self._refresh(ch)
        return ch.rt.last_event

    async def _wait_concludable(self, ch: Channel) -> None:
        """Wait until the latest event's timeout passed; a newer event restarts the wait."""
        while not ch.rt.concluded:
            ev = await self._latest_event(ch)
            if ev is None or await ev.timeout.is_elapsed():
                if await self.engine.force.wait_force_window(ch, ev):
                    continue  # force execution may have moved the ledger on
                if await self.engine.force.wait_sub_force_windows(self.tree(ch)[1:]):
                    continue
                return
            changed = asyncio.ensure_future(ch.rt.changed.wait())
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
        ch.rt.last_event = ev
        if isinstance(ev, RegisteredEvent | ProgressedEvent) and ev.state is not None:
            ch.rt.registered_state = ev.state
        elif isinstance(ev, ConcludedEvent):
            ch.rt.concluded = True
            known = self.outcome_state(ch, ev.version)
            if known is not None:
                ch.rt.registered_state = known

    def _withdraw_req(self, ch: Channel) -> AdjudicatorReq:
        """The withdrawal request: the registered state if known, else our latest one."""
        state = ch.rt.registered_state or (ch.machine.current.state if ch.machine.current else None)
        assert state is not None
        tx = ch.machine.current
        if tx is None or tx.state != state:
            tx = Transaction(state, tuple(None for _ in ch.params.participants))
        return AdjudicatorReq(ch.params, tx, ch.idx, secondary=ch.idx != 0)

    async def _settle_registered(self, ch: Channel) -> None:
        if ch.machine.phase == Phase.WITHDRAWN:
            return
        await self._wait_concludable(ch)
        await ch.io.write(ch.machine.withdrawing())
        for attempt in range(WITHDRAW_ATTEMPTS):
            try:
                # Conclude with the registered state (it may be newer than our current one
                # if the peer registered a state whose acceptance we never received); once
                # concluded, the ledger's outcome is withdrawn whatever state we pass.
                tree = self.tree(ch)
                subs = self.sub_states(tree, registered=True)
                await self.client.adjudicator.withdraw(self._withdraw_req(ch), subs)
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
        # The conclusion paid every sub-channel's outcome through the root: the tree is done.
        for sub in reversed(self.tree(ch)[1:]):
            await self._retire_sub(sub)
        await self.engine.finish_channel(ch)

    async def _retire_sub(self, sub: Channel) -> None:
        """A sub-channel whose root was concluded and withdrawn: record it as withdrawn."""
        m = sub.machine
        if m.phase in PRE_DISPUTE:
            self._end_offchain(sub)
            if m.phase != Phase.FINAL:
                await sub.io.write(m.registered())
        if m.phase != Phase.WITHDRAWING:
            await sub.io.write(m.withdrawing())
        sub.rt.concluded = True
        await self.engine.finish_channel(sub)


WITHDRAW_ATTEMPTS = 20


def registration_superseded(e: ChainError) -> bool:
    """Whether a refused registration means the ledger already holds the same, a newer or
    a concluded state (the ledger then decides; not an error)."""
    return isinstance(e, StaleStateError | RefutationClosedError | AlreadyConcludedError)


def _retryable(e: ChainError) -> bool:
    """Whether a refused conclusion can succeed after reading the ledger again: a newer
    event moved the deadline, or the registered state is not the one we passed."""
    return isinstance(
        e, TimeoutNotElapsedError | StateMismatchError | NotRegisteredError | ChainConnectionError
    )
