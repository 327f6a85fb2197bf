"""The channel: its state machine record and the operations users call on it.

One :class:`Channel` per channel a client takes part in. Reads (``state``, ``phase``,
``balances``) return immutable snapshots and never wait. Operations (``update``, ``send``,
``settle``) take the channel's operation slot, so one local protocol runs at a time.

Incoming messages are applied by the client's dispatcher *synchronously* (no ``await``
between receiving a message and changing the record), which keeps the record consistent
with the in-order message stream; persistence and sending then run on the channel's
ordered I/O chain (see :meth:`Channel._io`), so writes and sends happen in protocol order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from perun_core.channel.params import Params
from perun_core.channel.phase import Phase, check_transition
from perun_core.channel.state import SignedState, State, Transaction
from perun_core.channel.types import Address
from perun_core.channel.validation import next_version
from perun_core.errors import (
    ChannelClosedError,
    ChannelNotReadyError,
    ChannelRegisteredError,
    ReentrantUpdateError,
    RequestTimedOutError,
    SyncRequiredError,
)
from perun_core.interfaces.persister import ChannelRecord
from perun_core.logging import channel_extra

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from perun_core.client.client import Client
    from perun_core.interfaces.adjudicator import AdjudicatorEvent
    from perun_core.wire.messages import ChannelUpdate, Envelope

log = logging.getLogger("perun.channel")

_Reserved = tuple[
    "asyncio.Future[None] | None", "asyncio.Future[None]", Callable[[], Awaitable[None]]
]
"""A place taken in a channel's I/O chain: (previous tail, the reserved slot, the work)."""

Updater = Callable[[State], State]
"""Maps the current state to the proposed next state (version and ID are set for you)."""


@dataclass(slots=True, eq=False)
class OwnUpdate:
    """Our update proposal in flight."""

    tx: Transaction  # with our signature
    future: asyncio.Future[Transaction]
    conflicted: bool = False  # a collision was detected; do not send / treat as CONFLICT
    sent: bool = False
    timed_out: bool = False  # no answer in time: a sync round decides its fate
    waiting: bool = False  # the proposer awaits ``future`` (its deadline is running)
    expired: bool = False  # the deadline passed: the proposer's wait was cancelled for it
    # The `enabled` write of the accepted state, reserved in the I/O chain by the dispatcher
    # and run by the woken proposer in its own task: (previous tail, reserved slot, write).
    then: _Reserved | None = None


class _Flag:
    """An :class:`asyncio.Event` that builds its waiter queue only when somebody waits.

    A channel holds two of them. Most channels are idle and nobody waits on them, while an
    ``asyncio.Event`` carries a deque (~600 bytes) from birth; with 100,000 channels in one
    client that was most of a channel's memory. Same API and semantics as ``asyncio.Event``.
    """

    __slots__ = ("_event", "_value")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._event: asyncio.Event | None = None  # exists only while unset and awaited

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._value

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        if not self._value:
            self._value = True
            ev, self._event = self._event, None
            if ev is not None:
                ev.set()  # its waiters hold it; we need it no longer

    def clear(self) -> None:
        """Unset the flag."""
        self._value = False

    async def wait(self) -> bool:
        """Wait until the flag is set; returns ``True``."""
        if self._value:
            return True
        ev = self._event
        if ev is None:
            ev = self._event = asyncio.Event()
        return await ev.wait()


@dataclass(slots=True, eq=False)
class PeerUpdate:
    """A valid peer proposal waiting for our decision."""

    msg: ChannelUpdate
    # Lazy: awaited only when an async handler hands the responder on (an asyncio.Event
    # per update was measurable).
    decided: _Flag = field(default_factory=_Flag)
    aborted: bool = False


class Channel:
    """A channel between this client and one peer.

    Do not construct directly: channels come from :meth:`Client.propose_channel`, from
    accepting a proposal, or from restore.
    """

    # Slots: a client may hold 100,000 idle channels; a per-instance dict of ~35 attributes
    # was a kilobyte of each.
    __slots__ = (
        "__weakref__",
        "_callback_tasks",
        "_changed_ev",
        "_client",
        "_closed",
        "_concluded",
        "_current",
        "_event_handlers",
        "_event_queues",
        "_frozen",
        "_funding_queue",
        "_idle_flag",
        "_io_tail",
        "_last_event",
        "_needs_sync",
        "_op_lock",
        "_own",
        "_peer",
        "_phase",
        "_registered_state",
        "_removed",
        "_settle_task",
        "_settling",
        "_signed_open",
        "_signed_rejected",
        "_slot_owner",
        "_staging",
        "_sync_done",
        "_sync_sent",
        "_v0_sig",
        "_version_floor",
        "idx",
        "params",
        "peers",
    )

    def __init__(self, client: Client, record: ChannelRecord) -> None:
        self._client = client
        self.params: Params = record.params
        self.idx: int = record.idx
        self.peers: tuple[Address, ...] = record.peers
        self._phase: Phase = record.phase
        self._current: Transaction | None = record.current
        self._staging: Transaction | None = record.staging
        self._version_floor: int = record.version_floor
        self._needs_sync: bool = record.needs_sync
        self._op_lock: asyncio.Lock | None = None  # created by the first operation
        self._io_tail: asyncio.Future[None] | None = None
        self._own: OwnUpdate | None = None
        self._peer: PeerUpdate | None = None
        self._idle_flag: _Flag | None = None  # see _idle; None: set, nobody waits
        # pulsed on every enabled state / phase change; created when first awaited
        self._changed_ev: asyncio.Event | None = None
        self._funding_queue: tuple[Envelope, ...] = ()
        self._v0_sig: asyncio.Future[bytes] | None = None
        self._settling = False
        self._closed = False
        self._sync_sent = False  # our ChannelSync of the current round is out
        self._sync_done = _Flag(True)  # clear while a sync round runs
        self._frozen = False  # diverged: only the ledger can settle it
        self._removed = False  # the record is deleted (withdrawn or dropped)
        self._slot_owner: asyncio.Task[Any] | None = None
        # dispute bookkeeping (set by the watcher's events)
        self._last_event: AdjudicatorEvent | None = None
        self._registered_state: State | None = None
        self._concluded = False
        self._settle_task: asyncio.Future[None] | None = None
        # States we signed above the current version that the peer may countersign and
        # register (rejected or unanswered proposals): kept until a newer state is current.
        self._signed_open: tuple[State, ...] = ()
        self._signed_rejected = 0
        # Tuples, replaced on change: usually empty, and the empty tuple costs an idle channel
        # nothing (an empty set is 216 bytes, a list 56).
        self._event_queues: tuple[asyncio.Queue[AdjudicatorEvent], ...] = ()
        self._event_handlers: tuple[Callable[[Channel, AdjudicatorEvent], Any], ...] = ()
        self._callback_tasks: tuple[asyncio.Task[Any], ...] = ()

    @property
    def _idle(self) -> _Flag:
        """Set while no peer decision is pending (created on first use: most channels
        never see a proposal while restored and idle)."""
        flag = self._idle_flag
        if flag is None:
            flag = self._idle_flag = _Flag(True)
        return flag

    # --- read-only snapshots -----------------------------------------------------------------

    @property
    def id(self) -> bytes:
        """The channel ID."""
        return self.params.id

    @property
    def phase(self) -> Phase:
        """The current phase."""
        return self._phase

    @property
    def state(self) -> State:
        """The current (fully signed) state; before funding, the initial state."""
        tx = self._current if self._current is not None else self._staging
        if tx is None:
            raise ChannelClosedError("channel has no state yet")
        return tx.state

    def _is_phase(self, phase: Phase) -> bool:
        # A method (not an inline comparison) because the phase changes across awaits.
        return self._phase == phase

    @property
    def transaction(self) -> Transaction | None:
        """The current fully signed transaction, if any."""
        return self._current

    @property
    def version_floor(self) -> int:
        """The highest burned version (PROTOCOL.md §5.3.4)."""
        return self._version_floor

    @property
    def next_version(self) -> int:
        """The version the next update will carry (both parties always agree on it)."""
        tx = self._current
        return next_version(tx.state.version if tx else 0, self._version_floor)

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

    def record(self) -> ChannelRecord:
        """A snapshot of the machine record (what the persister stores)."""
        return ChannelRecord(
            params=self.params,
            idx=self.idx,
            peers=self.peers,
            phase=self._phase,
            current=self._current,
            staging=self._staging,
            version_floor=self._version_floor,
            needs_sync=self._needs_sync,
        )

    def signed_state(self) -> SignedState:
        """The current state with every signature."""
        if self._current is None:
            raise ChannelNotReadyError("no fully signed state yet", phase=self._phase)
        return SignedState.from_tx(self.params, self._current)

    def __repr__(self) -> str:
        v = self._current.state.version if self._current else "-"
        return f"<Channel 0x{self.id.hex()[:12]} {self._phase.name} v{v}>"

    # --- record mutation (synchronous) -------------------------------------------------------

    def _set_phase(self, to: Phase) -> None:
        if to != self._phase:
            check_transition(self._phase, to, channel_id=self.id)
            if log.isEnabledFor(logging.DEBUG):  # hot path: build the log context only if used
                log.debug(
                    "channel %s: %s -> %s",
                    self.id.hex()[:12],
                    self._phase.name,
                    to.name,
                    extra=channel_extra(self, phase=to),
                )
            self._phase = to
            self._pulse()

    @property
    def _changed(self) -> asyncio.Event:
        """The event the next :meth:`_pulse` sets (created on first use: most are never
        awaited, and an event per pulse cost an allocation twice per update)."""
        ev = self._changed_ev
        if ev is None:
            ev = self._changed_ev = asyncio.Event()
        return ev

    def _pulse(self) -> None:
        ev, self._changed_ev = self._changed_ev, None
        if ev is not None:
            ev.set()

    def _enable(self, tx: Transaction) -> None:
        """Make a fully signed transaction current (synchronously) and tell the watcher."""
        self._current = tx
        self._staging = None
        self._forget_signed_below(tx.state.version)
        self._set_phase(Phase.FINAL if tx.state.is_final else Phase.ACTING)
        self._client._publish_to_watcher(self, tx)

    @property
    def enforceable_states(self) -> tuple[State, ...]:
        """States we signed that are not current but that the peer may still enforce.

        A proposal the peer rejected (or never answered) carries our signature; the peer
        can countersign and register it. It stays enforceable until a newer state is fully
        signed (which refutes it on the ledger). Listed oldest first.
        """
        return self._signed_open

    @property
    def rejected_signed_updates(self) -> int:
        """How many of our signed proposals the peer rejected (each "may be enforced")."""
        return self._signed_rejected

    def _remember_signed(self, state: State) -> None:
        cur = self._current
        if cur is None or state.version > cur.state.version:
            self._signed_open = (*self._signed_open, state)
            self._signed_rejected += 1

    def _forget_signed_below(self, version: int) -> None:
        if self._signed_open:
            self._signed_open = tuple(s for s in self._signed_open if s.version > version)

    def _burn(self, version: int) -> None:
        if version > self._version_floor:
            self._version_floor = version

    def _next_version(self) -> int:
        assert self._current is not None
        return next_version(self._current.state.version, self._version_floor)

    # --- ordered I/O ---------------------------------------------------------------------------

    def _io(self, work: Callable[[], Awaitable[None]]) -> asyncio.Future[None]:
        """Run ``work`` after every earlier I/O of this channel (writes and sends in order)."""
        prev = self._io_tail

        async def run() -> None:
            if prev is not None:
                # An earlier failure is reported by its own caller; order is what matters here.
                with _suppress():
                    await prev
            await work()
            if self._io_tail is fut:
                # Done and nothing queued behind it: drop it, so an idle channel holds no
                # finished task (a failed one stays, for whoever awaits the tail).
                self._io_tail = None

        fut = asyncio.ensure_future(run())
        self._io_tail = fut
        self._client._track(fut)
        return fut

    async def _io_now(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` as this channel's next I/O in the calling task.

        Same order as :meth:`_io`, for a caller that awaits the I/O anyway: when nothing is
        queued (the usual case) it runs here, behind a plain future that later I/O queues
        behind, instead of in a task of its own (a task per update and side was a good part
        of the hot path). A failure goes to the caller only.
        """
        if self._io_tail is not None:
            await self._io(work)
            return
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._io_tail = slot
        try:
            await work()
        finally:
            if self._io_tail is slot:
                self._io_tail = None
            slot.set_result(None)

    def _io_reserve(self) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
        """Take the next place in the I/O chain now, to fill it later with :meth:`_io_fill`."""
        prev = self._io_tail
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._io_tail = slot
        return prev, slot

    async def _io_fill(
        self,
        prev: asyncio.Future[None] | None,
        slot: asyncio.Future[None],
        work: Callable[[], Awaitable[None]],
    ) -> None:
        """Run ``work`` in the place :meth:`_io_reserve` took (after ``prev``), in this task."""
        try:
            if prev is not None:
                try:
                    await prev
                except asyncio.CancelledError:
                    if not prev.cancelled():
                        raise  # we were cancelled, not the earlier I/O
                except Exception:
                    pass  # reported by its own caller; order is what matters here
            await work()
        finally:
            if self._io_tail is slot:
                self._io_tail = None
            if not slot.done():
                slot.set_result(None)

    def _persist_phase(self) -> asyncio.Future[None]:
        p, floor, ns = self._phase, self._version_floor, self._needs_sync

        async def write() -> None:
            if not self._removed:  # a late event after withdrawal has nothing to update
                await self._client.persister.phase_changed(self.id, p, floor, ns)

        return self._io(write)

    # --- the user's operations -----------------------------------------------------------------

    def _check_not_reentrant(self) -> asyncio.Task[Any] | None:
        """Fail fast in a task that would wait for itself; returns the current task.

        The task holding the operation slot, or running a handler/callback of this
        channel, would deadlock on the slot.
        """
        task = asyncio.current_task()
        if task is not None and (task is self._slot_owner or task in self._callback_tasks):
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
        if not lock.locked() and not lock._waiters:
            # Uncontended (the common case): acquire() returns without waiting, so the
            # busy timeout (a timer per operation) is not needed.
            await lock.acquire()
            self._slot_owner = task
            return
        try:
            async with asyncio.timeout(self._client.config.busy_timeout):
                await lock.acquire()
            self._slot_owner = task
        except TimeoutError:
            raise RequestTimedOutError(
                f"channel 0x{self.id.hex()[:12]} stayed busy for "
                f"{self._client.config.busy_timeout}s"
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
            PeerRejectedError: the peer rejected it (``UpdateConflictError`` on a collision).
            RequestTimedOutError: no answer in time; the channel syncs before the next update.
            ReentrantUpdateError: called from this channel's own handler or callback.
        """
        await self._acquire_slot(self._check_not_reentrant())
        try:
            return await self._client._updates.propose(self, fn)
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
        """Settle the channel cooperatively: finalize (if needed), conclude and withdraw.

        On an ACTING channel this proposes the current allocation as final first; a peer's
        final proposal with an unchanged allocation is accepted meanwhile without asking.
        """
        await self._acquire_slot(self._check_not_reentrant())
        try:
            await self._client._settlement.settle(self)
        finally:
            self._release_slot()

    def watch(self, handler: Callable[[Channel, AdjudicatorEvent], Any] | None = None) -> None:
        """Attach a handler for this channel's ledger events (``handler(channel, event)``).

        The watchtower itself runs for every channel from funding on (unless the client was
        configured with ``watch=False``); this only subscribes the application to its
        events. Idempotent for the same handler.
        """
        if handler is not None and handler not in self._event_handlers:
            self._event_handlers = (*self._event_handlers, handler)

    async def events(self) -> AsyncIterator[AdjudicatorEvent]:
        """An async stream of this channel's ledger events (registered, progressed, concluded)."""
        q: asyncio.Queue[AdjudicatorEvent] = asyncio.Queue()
        self._event_queues = (*self._event_queues, q)
        try:
            while True:
                yield await q.get()
        finally:
            self._event_queues = tuple(x for x in self._event_queues if x is not q)

    def _emit_event(self, ev: AdjudicatorEvent) -> None:
        for q in self._event_queues:
            q.put_nowait(ev)
        for h in self._event_handlers:
            self._client._spawn(self._await_user(h, self, ev))

    @property
    def last_event(self) -> AdjudicatorEvent | None:
        """The most recent ledger event of this channel, if any."""
        return self._last_event

    async def register(self) -> None:
        """Register the latest fully signed state on the ledger (starts a dispute).

        Off-chain updates end; use :meth:`settle` afterwards to conclude and withdraw.
        """
        await self._acquire_slot(self._check_not_reentrant())
        try:
            await self._client._disputes.register(self)
        finally:
            self._release_slot()

    async def wait_phase(self, *phases: Phase, timeout: float | None = None) -> Phase:
        """Wait until the channel is in one of ``phases``; returns that phase."""
        async with asyncio.timeout(timeout):
            while self._phase not in phases:
                await self._changed.wait()
        return self._phase

    # --- helpers for the protocol modules -------------------------------------------------------

    def _check_updatable(self) -> None:
        if self._closed:
            raise ChannelClosedError(f"channel 0x{self.id.hex()[:12]} is closed")
        if self._needs_sync or self._frozen:
            raise SyncRequiredError(
                f"channel 0x{self.id.hex()[:12]} must sync with its peer first "
                "(an earlier update timed out)"
            )
        if self._phase in (
            Phase.REGISTERING,
            Phase.REGISTERED,
            Phase.PROGRESSING,
            Phase.PROGRESSED,
        ):
            raise ChannelRegisteredError(f"channel 0x{self.id.hex()[:12]} is in dispute")
        if self._phase != Phase.ACTING:
            raise ChannelNotReadyError(
                f"updates need phase ACTING, the channel is {self._phase.name}",
                phase=self._phase,
                channel_id=self.id,
            )

    def _call_user(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a user callback, marking the current task so re-entrant updates fail fast."""
        task = asyncio.current_task()
        if task is None:
            return fn(*args)
        self._callback_tasks = (*self._callback_tasks, task)
        try:
            return fn(*args)
        finally:
            self._unmark_callback(task)

    async def _await_user(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a sync or async user callback in the current task, marked as a callback."""
        task = asyncio.current_task()
        assert task is not None
        self._callback_tasks = (*self._callback_tasks, task)
        try:
            res = fn(*args)
            if asyncio.iscoroutine(res) or isinstance(res, asyncio.Future):
                res = await res
            return res
        finally:
            self._unmark_callback(task)

    def _unmark_callback(self, task: asyncio.Task[Any]) -> None:
        marked = self._callback_tasks
        self._callback_tasks = (
            () if marked == (task,) else tuple(t for t in marked if t is not task)
        )


class _suppress:
    """``contextlib.suppress(Exception)`` without the import cost in the hot path."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: object, ev: object, tb: object) -> bool:
        return et is not None and isinstance(ev, Exception)


__all__ = ["Channel", "OwnUpdate", "PeerUpdate", "Updater"]
