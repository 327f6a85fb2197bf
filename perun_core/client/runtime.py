"""What the client's protocols keep per channel beside its record (not user API).

The record itself (phase, states, version floor, sync flag) lives in the channel's
:class:`~perun_core.channel.machine.Machine`; this holds the rest: the update in flight on
each side, sync round flags, the funding queue, what the ledger showed, and the channel's
event subscribers. Protocol modules read and write it as ``channel.rt``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from perun_core.channel.state import State, Transaction

if TYPE_CHECKING:
    from perun_core.interfaces.adjudicator import AdjudicatorEvent
    from perun_core.wire.messages import ChannelUpdate, Envelope

log = logging.getLogger("perun.channel")

Reserved = tuple["asyncio.Future[None] | None", "asyncio.Future[None]", Callable[[], Any]]
"""A place taken in a channel's I/O chain: (previous tail, the reserved slot, the work)."""


class Flag:
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
class OwnUpdate:
    """Our update proposal in flight."""

    tx: Transaction  # with our signature
    future: asyncio.Future[Transaction]
    conflicted: bool = False  # a collision was detected; do not send / treat as CONFLICT
    sent: bool = False
    timed_out: bool = False  # unresolved (no or a bad answer): a sync round decides its fate
    waiting: bool = False  # the proposer awaits ``future`` (its deadline is running)
    expired: bool = False  # the deadline passed: the proposer's wait was cancelled for it
    # The `enabled` write of the accepted state, reserved in the I/O chain by the dispatcher
    # and run by the woken proposer in its own task: (previous tail, reserved slot, write).
    then: Reserved | None = None


@dataclass(slots=True, eq=False)
class PeerUpdate:
    """A valid peer proposal waiting for our decision."""

    msg: ChannelUpdate
    # Lazy: awaited only when an async handler hands the responder on (an asyncio.Event
    # per update was measurable).
    decided: Flag = field(default_factory=Flag)
    aborted: bool = False


class ChannelRuntime:
    """Per-channel protocol state that is not part of the persisted record."""

    # Slots: a client may hold 100,000 idle channels.
    __slots__ = (
        "callback_tasks",
        "changed_ev",
        "closed",
        "concluded",
        "event_handlers",
        "event_queues",
        "frozen",
        "funding_queue",
        "idle_flag",
        "last_event",
        "own",
        "peer",
        "registered_state",
        "removed",
        "settle_task",
        "settling",
        "signed_open",
        "signed_rejected",
        "sync_done",
        "sync_sent",
        "v0_sig",
    )

    def __init__(self) -> None:
        self.own: OwnUpdate | None = None
        self.peer: PeerUpdate | None = None
        self.idle_flag: Flag | None = None  # see idle; None: set, nobody waits
        # pulsed on every enabled state / phase change; created when first awaited
        self.changed_ev: asyncio.Event | None = None
        self.funding_queue: tuple[Envelope, ...] = ()
        self.v0_sig: asyncio.Future[bytes] | None = None
        self.settling = False  # our settle() runs: a peer's final proposal is accepted
        self.closed = False
        self.sync_sent = False  # our sync request of the current round is out
        self.sync_done = Flag(True)  # clear while a sync round of ours runs
        self.frozen = False  # diverged: only the ledger can settle it
        self.removed = False  # the record is deleted (withdrawn or dropped)
        # dispute bookkeeping (set by the watcher's events)
        self.last_event: AdjudicatorEvent | None = None
        self.registered_state: State | None = None
        self.concluded = False
        self.settle_task: asyncio.Future[None] | None = None
        # States we signed above the current version that the peer may countersign and
        # register (rejected or unanswered proposals): kept until a newer state is current.
        self.signed_open: tuple[State, ...] = ()
        self.signed_rejected = 0
        # Tuples, replaced on change: usually empty, and the empty tuple costs an idle channel
        # nothing (an empty set is 216 bytes, a list 56).
        self.event_queues: tuple[asyncio.Queue[AdjudicatorEvent], ...] = ()
        self.event_handlers: tuple[Callable[..., Any], ...] = ()
        self.callback_tasks: tuple[asyncio.Task[Any], ...] = ()

    @property
    def idle(self) -> Flag:
        """Set while no peer decision is pending (created on first use)."""
        flag = self.idle_flag
        if flag is None:
            flag = self.idle_flag = Flag(True)
        return flag

    @property
    def changed(self) -> asyncio.Event:
        """The event the next :meth:`pulse` sets (created on first use: most are never
        awaited, and an event per pulse cost an allocation twice per update)."""
        ev = self.changed_ev
        if ev is None:
            ev = self.changed_ev = asyncio.Event()
        return ev

    def pulse(self) -> None:
        """Wake everybody waiting for a change of this channel."""
        ev, self.changed_ev = self.changed_ev, None
        if ev is not None:
            ev.set()

    def remember_signed(self, state: State, current_version: int) -> None:
        """Keep a state we signed that did not become current (it may be enforced)."""
        if state.version > current_version and state not in self.signed_open:
            self.signed_open = (*self.signed_open, state)
            self.signed_rejected += 1

    def forget_signed_upto(self, version: int) -> None:
        """A state at ``version`` is fully signed: older signed states are refutable."""
        if self.signed_open:
            self.signed_open = tuple(s for s in self.signed_open if s.version > version)

    def mark_callback(self, task: asyncio.Task[Any]) -> None:
        """Mark ``task`` as running a user callback of this channel (re-entrancy check)."""
        self.callback_tasks = (*self.callback_tasks, task)

    def unmark_callback(self, task: asyncio.Task[Any]) -> None:
        """Undo :meth:`mark_callback`."""
        marked = self.callback_tasks
        self.callback_tasks = () if marked == (task,) else tuple(t for t in marked if t is not task)


__all__ = ["ChannelRuntime", "Flag", "OwnUpdate", "PeerUpdate", "Reserved"]
