"""The channel handle users hold: read-only snapshots and the operations they call.

One :class:`Channel` per channel a client takes part in. Reads (``state``, ``phase``,
``balances``) return immutable snapshots and never wait. Operations (``update``, ``send``,
``settle``) take the channel's operation slot, so one local protocol runs at a time.

The record and its transitions live in :attr:`Channel.machine` (a pure state machine);
what the protocols keep beside it in :attr:`Channel.rt`; the ordered writes and sends in
:attr:`Channel.io`. Incoming messages are applied by the client's dispatcher synchronously
(no ``await`` between receiving a message and changing the record), which keeps the record
consistent with the in-order message stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from perun_core.channel.allocation import as_balances
from perun_core.channel.machine import Machine
from perun_core.channel.params import Params
from perun_core.channel.phase import Phase
from perun_core.channel.state import SignedState, State, Transaction
from perun_core.channel.types import Address
from perun_core.client.ordered_io import OrderedIO
from perun_core.client.runtime import ChannelRuntime
from perun_core.client.subchannel import SubChannelProposal
from perun_core.errors import (
    ChannelClosedError,
    ChannelNotReadyError,
    ReentrantUpdateError,
    RequestTimedOutError,
)
from perun_core.interfaces.persister import ChannelRecord
from perun_core.logging import channel_extra

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from perun_core.client.engine import Engine
    from perun_core.interfaces.adjudicator import AdjudicatorEvent

log = logging.getLogger("perun.channel")

Updater = Callable[[State], State]
"""Maps the current state to the proposed next state (version and ID are set for you)."""


class Channel:
    """A channel between this client and its peer.

    Do not construct directly: channels come from :meth:`Client.propose_channel`, from
    accepting a proposal, or from restore.

    Attributes:
        id: the channel ID.
        params: the channel's parameters.
        idx: our participant index.
        peers: every participant's wire address, by index.
        parent: the parent channel's ID for a sub-channel (``None``: a ledger channel).
        machine: the channel's record and state machine (internal to the client's
            protocols; read it, never change it from application code).
        rt: the protocols' per-channel bookkeeping (internal).
        io: the channel's ordered writes and sends (internal).
    """

    # Slots: a client may hold 100,000 idle channels.
    __slots__ = (
        "__weakref__",
        "_engine",
        "_op_lock",
        "_slot_owner",
        "id",
        "idx",
        "io",
        "machine",
        "params",
        "parent",
        "peers",
        "rt",
    )

    def __init__(self, engine: Engine, record: ChannelRecord) -> None:
        self._engine = engine
        self.machine = Machine(
            record.params,
            record.idx,
            record.peers,
            phase=record.phase,
            current=record.current,
            staging=record.staging,
            version_floor=record.version_floor,
            needs_sync=record.needs_sync,
            listener=self._phase_changed,
        )
        # Immutable for the channel's life: plain attributes, read on every update.
        self.params: Params = record.params
        self.id: bytes = record.params.id
        self.idx: int = record.idx
        self.peers: tuple[Address, ...] = record.peers
        self.parent: bytes | None = record.parent
        self.rt = ChannelRuntime()
        self.io = OrderedIO(record.params.id, engine.client.persister, engine.track)
        self._op_lock: asyncio.Lock | None = None  # created by the first operation
        self._slot_owner: asyncio.Task[Any] | None = None

    def _phase_changed(self, frm: Phase, to: Phase) -> None:
        if log.isEnabledFor(logging.DEBUG):  # hot path: build the log context only if used
            log.debug(
                "channel %s: %s -> %s",
                self.id.hex()[:12],
                frm.name,
                to.name,
                extra=channel_extra(self, phase=to),
            )
        self.rt.pulse()

    # --- read-only snapshots -----------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        """The current phase."""
        return self.machine.phase

    @property
    def state(self) -> State:
        """The current (fully signed) state; before funding, the initial state."""
        m = self.machine
        tx = m.current if m.current is not None else m.staging
        if tx is None:
            raise ChannelClosedError("channel has no state yet")
        return tx.state

    @property
    def transaction(self) -> Transaction | None:
        """The current fully signed transaction, if any."""
        return self.machine.current

    @property
    def version_floor(self) -> int:
        """The highest burned version (see the signing discipline in the protocol docs)."""
        return self.machine.version_floor

    @property
    def next_version(self) -> int:
        """The version the next update will carry (both parties always agree on it)."""
        return self.machine.next_version

    @property
    def synced(self) -> bool:
        """Whether no sync round with the peer is due or running."""
        return not self.machine.needs_sync and self.rt.sync_done.is_set()

    @property
    def protected_version(self) -> int | None:
        """The newest version a remote watchtower acknowledged storing durably (``None``:
        none yet, or no remote watchers): from then on the tower refutes older
        registrations while this client is offline."""
        return self._engine.protected_version(self.id)

    @property
    def peer(self) -> Address:
        """The peer's wire address."""
        return self.peers[self.peer_idx]

    @property
    def peer_idx(self) -> int:
        """The peer's participant index."""
        return 1 - self.idx

    @property
    def balances(self) -> tuple[tuple[int, ...], ...]:
        """``balances[asset][participant]`` of the current state."""
        return self.state.allocation.balances

    def my_balance(self, asset: int = 0) -> int:
        """Our free balance of ``asset`` in the current state."""
        return self.balances[asset][self.idx]

    @property
    def enforceable_states(self) -> tuple[State, ...]:
        """States we signed that are not current but that the peer may still enforce.

        A proposal the peer rejected (or never answered) carries our signature; the peer
        can countersign and register it. It stays enforceable until a newer state is fully
        signed (which refutes it on the ledger). Listed oldest first.
        """
        return self.rt.signed_open

    @property
    def rejected_signed_updates(self) -> int:
        """How many of our signed proposals did not become current (each "may be
        enforced" by the peer until a newer state is fully signed)."""
        return self.rt.signed_rejected

    def record(self) -> ChannelRecord:
        """A snapshot of the machine record (what the persister stores)."""
        phase, current, staging, floor, needs_sync = self.machine.snapshot()
        return ChannelRecord(
            params=self.params,
            idx=self.idx,
            peers=self.peers,
            phase=phase,
            current=current,
            staging=staging,
            version_floor=floor,
            needs_sync=needs_sync,
            parent=self.parent,
        )

    def signed_state(self) -> SignedState:
        """The current state with every signature."""
        cur = self.machine.current
        if cur is None:
            raise ChannelNotReadyError("no fully signed state yet", phase=self.phase)
        return SignedState.from_tx(self.params, cur)

    def __repr__(self) -> str:
        cur = self.machine.current
        v = cur.state.version if cur else "-"
        return f"<Channel 0x{self.id.hex()[:12]} {self.phase.name} v{v}>"

    # --- the user's operations -----------------------------------------------------------------

    def _check_not_reentrant(self) -> asyncio.Task[Any] | None:
        """Fail fast in a task that would wait for itself; returns the current task.

        The task holding the operation slot, or running a handler/callback of this
        channel, would deadlock on the slot.
        """
        task = asyncio.current_task()
        if task is not None and (task is self._slot_owner or task in self.rt.callback_tasks):
            raise ReentrantUpdateError(
                "update() called from inside this channel's own update handler or callback; "
                "schedule it as a task instead (asyncio.create_task)"
            )
        return task

    async def _acquire_slot(self, task: asyncio.Task[Any] | None) -> None:
        """Take the operation slot for ``task`` (the current task)."""
        lock = self._op_lock
        if lock is None:
            lock = self._op_lock = asyncio.Lock()
        if not lock.locked():
            # Uncontended (the common case): acquire() returns without waiting, so the
            # busy timeout (a timer per operation) is not needed.
            await lock.acquire()
            self._slot_owner = task
            return
        timeout = self._engine.client.config.busy_timeout
        try:
            async with asyncio.timeout(timeout):
                await lock.acquire()
            self._slot_owner = task
        except TimeoutError:
            raise RequestTimedOutError(
                f"channel 0x{self.id.hex()[:12]} stayed busy for {timeout}s"
            ) from None

    def _release_slot(self) -> None:
        self._slot_owner = None
        assert self._op_lock is not None
        self._op_lock.release()

    async def update(self, fn: Updater) -> State:
        """Propose an off-chain update and wait until the peer accepts it.

        ``fn`` receives the current state and returns the next one (immutable states: use
        ``state.transfer(...)``, ``state.replace(...)``); its version and channel ID are set
        for you. When both parties propose at once, the lower participant index wins and
        re-proposes transparently; the other side gets :class:`UpdateConflictError`.

        Returns:
            The new current state.

        Raises:
            InvalidUpdateError: ``fn`` produced an invalid state (nothing was signed or sent).
            PeerRejectedError: the peer rejected it (``UpdateConflictError`` on a collision);
                ``err.may_be_enforced`` tells that the peer holds our signature on it.
            RequestTimedOutError: no answer in time; the channel syncs before the next update.
            ReentrantUpdateError: called from this channel's own handler or callback.
        """
        await self._acquire_slot(self._check_not_reentrant())
        try:
            return await self._engine.updates.propose(self, fn)
        finally:
            self._release_slot()

    async def send(self, amount: int, *, asset: int = 0, to: int | Address | None = None) -> State:
        """Pay ``amount`` of ``asset`` to the peer (the payment helper over :meth:`update`).

        Args:
            amount: how much to pay (> 0).
            asset: the asset index.
            to: the receiver (participant index, wallet or wire address); default the peer.
        """
        if amount <= 0:
            raise ValueError("a payment amount must be positive")
        receiver = self._resolve_party(to)
        if receiver == self.idx:
            raise ValueError("cannot pay ourselves")
        me = self.idx
        return await self.update(lambda s: s.transfer(me, receiver, amount, asset))

    def _resolve_party(self, who: int | Address | None) -> int:
        if who is None:
            return self.peer_idx
        if isinstance(who, int):
            if not 0 <= who < self.params.num_parts:
                raise ValueError(f"no participant {who}")
            return who
        if who in self.params.participants:
            return self.params.participants.index(who)
        if who in self.peers:
            return self.peers.index(who)
        raise ValueError(f"{who} is not a party of this channel")

    async def settle(self) -> None:
        """Settle the channel: finalize (if needed), conclude and withdraw.

        On an ACTING channel this proposes the current allocation as final first; a peer's
        final proposal with an unchanged allocation is accepted meanwhile without asking.
        Whatever the peer or the ledger does meanwhile (a collision, a registration, a
        conclusion with a state we signed), this ends with our funds withdrawn; when the
        cooperative way fails it falls back to the dispute on the ledger.
        """
        await self._acquire_slot(self._check_not_reentrant())
        try:
            await self._engine.settlement.settle(self)
        finally:
            self._release_slot()

    async def propose_sub_channel(
        self,
        balances: Sequence[Sequence[int]],
        *,
        app: bytes | None = None,
        data: bytes = b"",
        challenge_duration: int | None = None,
    ) -> Channel:
        """Open a sub-channel funded from this channel's free balances; returns it once funded.

        The sub-channel has this channel's participants in the same order; ``balances`` is
        ``balances[asset][participant]`` in that order. The peer's proposal handler decides
        (``proposal.parent`` is this channel); then this channel is updated to lock the
        funds, which the peer accepts without asking because it is exactly what it agreed to.
        This channel takes no other operation meanwhile.

        Raises:
            InsufficientFundsError: our or the peer's free balance does not cover it.
            PeerRejectedError: the peer rejected the proposal.
            ChannelFundingError: the funding update failed (carries the sub-channel).
            RequestTimedOutError: the peer did not answer in time.
        """
        prop = SubChannelProposal(
            as_balances(balances), app=app, data=data, challenge_duration=challenge_duration
        )
        await self._acquire_slot(self._check_not_reentrant())
        try:
            return await self._engine.subs.propose(self, prop)
        finally:
            self._release_slot()

    async def tree_update(self, fn: Callable[[Channel], Awaitable[None]]) -> None:
        """Run ``fn(self)`` holding this channel's operation slot (the sub-channel protocol
        uses it to fund and settle sub-channels; internal)."""
        await self._acquire_slot(self._check_not_reentrant())
        try:
            await fn(self)
        finally:
            self._release_slot()

    def watch(self, handler: Callable[[Channel, AdjudicatorEvent], Any] | None = None) -> None:
        """Attach a handler for this channel's ledger events (``handler(channel, event)``).

        The watchtower itself runs for every channel from funding on (unless the client was
        configured with ``watch=False``); this only subscribes the application to its
        events. Idempotent for the same handler.
        """
        if handler is not None and handler not in self.rt.event_handlers:
            self.rt.event_handlers = (*self.rt.event_handlers, handler)

    async def events(self) -> AsyncIterator[AdjudicatorEvent]:
        """An async stream of this channel's ledger events (registered, progressed, concluded).

        The last event of a withdrawn channel (its conclusion) is delivered too.
        """
        q: asyncio.Queue[AdjudicatorEvent] = asyncio.Queue()
        self.rt.event_queues = (*self.rt.event_queues, q)
        try:
            while True:
                yield await q.get()
        finally:
            self.rt.event_queues = tuple(x for x in self.rt.event_queues if x is not q)

    @property
    def last_event(self) -> AdjudicatorEvent | None:
        """The most recent ledger event of this channel, if any."""
        return self.rt.last_event

    async def register(self) -> None:
        """Register the latest fully signed state on the ledger (starts a dispute).

        Off-chain updates end; use :meth:`settle` afterwards to conclude and withdraw.
        """
        await self._acquire_slot(self._check_not_reentrant())
        try:
            await self._engine.disputes.register(self)
        finally:
            self._release_slot()

    async def force_update(self, fn: Updater) -> State:
        """Force an app channel's next state on the ledger, signed by us alone.

        Works on a registered app channel once the refutation window is over, and within
        a force-execution window (either party may force again in it). ``fn`` receives the
        state the ledger holds (registered or last forced) and returns the next one; its
        version (the ledger's + 1) and channel ID are set for you. It is checked against
        every update rule, the app's included, and against the app's on-chain rule at the
        ledger's time before anything is signed or sent. The channel then holds the forced
        state (phase PROGRESSED); :meth:`settle` concludes with the last forced state once
        its force-execution window has ended.

        Returns:
            The forced state (the channel's current state, unless the peer forced again).

        Raises:
            NoAppError: the channel has no app.
            ChannelNotReadyError: the channel is not registered (REGISTERED or PROGRESSED).
            TimeoutNotElapsedError: the refutation window is still open; wait for the
                registration's timeout (:attr:`last_event`) and try again.
            ForceExecutionClosedError: the force-execution window is over, or the channel
                is concluded.
            InvalidUpdateError: ``fn`` produced an invalid state or the app refused it
                (``AppTransitionError``); nothing was signed or sent, the channel is unchanged.
            ChainError: the ledger refused the transaction (e.g. the peer forced first); the
                channel returns to its previous phase.
        """
        await self._acquire_slot(self._check_not_reentrant())
        try:
            return await self._engine.force.force_update(self, fn)
        finally:
            self._release_slot()

    async def wait_phase(self, *phases: Phase, timeout: float | None = None) -> Phase:  # noqa: ASYNC109 - every wait has a deadline; this one takes it as an argument
        """Wait until the channel is in one of ``phases``; returns that phase."""
        async with asyncio.timeout(timeout):
            while self.machine.phase not in phases:
                await self.rt.changed.wait()
        return self.machine.phase


__all__ = ["Channel", "Updater"]
