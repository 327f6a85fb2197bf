"""The Adjudicator: disputes, conclusion and withdrawal on the ledger."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from perun_core.channel.params import Params
from perun_core.channel.state import SignedState, State, Transaction
from perun_core.errors import MissingSubStatesError
from perun_core.queues import ClosableQueue


class Timeout(ABC):
    """A deadline in ledger time.

    ``is_elapsed()`` is true iff ledger time ≥ deadline; ``wait()`` returns at that point.
    """

    @property
    @abstractmethod
    def deadline(self) -> int:
        """The deadline in ledger seconds."""

    @abstractmethod
    async def is_elapsed(self) -> bool:
        """Whether ledger time has reached the deadline."""

    @abstractmethod
    async def wait(self) -> None:
        """Return once ledger time has reached the deadline."""


@dataclass(frozen=True, slots=True)
class AdjudicatorReq:
    """A request for a ledger operation on one channel.

    Attributes:
        params: the channel's params.
        tx: the latest fully signed transaction (the state to register or conclude with).
        idx: our participant index (whose funds to withdraw).
        secondary: wait a grace period for the peer to conclude before concluding ourselves.
    """

    params: Params
    tx: Transaction
    idx: int
    secondary: bool = False

    def signed_state(self) -> SignedState:
        """The request's transaction as a :class:`SignedState`."""
        return SignedState.from_tx(self.params, self.tx)


@dataclass(frozen=True, slots=True)
class AdjudicatorEvent:
    """Base of the events an adjudicator subscription yields.

    Attributes:
        channel_id: the channel the event is about.
        version: the version of the state now on the ledger.
        timeout: when the next phase can start (refutation/force-execution end).
    """

    channel_id: bytes
    version: int
    timeout: Timeout = field(compare=False)


@dataclass(frozen=True, slots=True)
class RegisteredEvent(AdjudicatorEvent):
    """A state was registered (or a registration refuted with a newer state).

    ``state`` is the registered state if the ledger makes it available.
    """

    state: State | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ProgressedEvent(AdjudicatorEvent):
    """A state was force-executed on the ledger by participant ``actor_idx``."""

    state: State | None = field(default=None, compare=False)
    actor_idx: int = 0


@dataclass(frozen=True, slots=True)
class ConcludedEvent(AdjudicatorEvent):
    """The channel was concluded; its outcome can be withdrawn."""


class EventSubscription(ABC):
    """An async stream of one channel's adjudicator events.

    The first event yielded is the most recent past event, if any, so a watcher that
    subscribes late still sees a registration that happened while it was offline.
    """

    @abstractmethod
    async def next(self) -> AdjudicatorEvent | None:
        """The next event, or ``None`` once the subscription is closed."""

    @abstractmethod
    async def close(self) -> None:
        """Stop the subscription; a pending ``next()`` returns ``None``."""

    def __aiter__(self) -> AsyncIterator[AdjudicatorEvent]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[AdjudicatorEvent]:
        while (ev := await self.next()) is not None:
            yield ev


class ChannelEvents(ABC):
    """One stream of the adjudicator events of many channels (what a watchtower reads).

    Each added channel's stream starts, like :class:`EventSubscription`, with its most recent
    past event (if any); events of one channel come in ledger order. Obtained from
    :meth:`Adjudicator.channel_events`.
    """

    @abstractmethod
    def add(self, params: Params) -> None:
        """Start delivering the events of ``params``' channel (no-op if added already)."""

    @abstractmethod
    def remove(self, channel_id: bytes) -> None:
        """Stop delivering the events of one channel (no-op if not added)."""

    @abstractmethod
    async def next(self) -> tuple[bytes, AdjudicatorEvent] | None:
        """The next ``(channel_id, event)``, or ``None`` once closed."""

    @abstractmethod
    async def close(self) -> None:
        """Stop every channel's stream; a pending ``next()`` returns ``None``."""


class QueuedChannelEvents(ChannelEvents):
    """A :class:`ChannelEvents` whose events wait in one queue for :meth:`next`.

    Implementations hand events over with :meth:`push` and call :meth:`_end` in their
    ``close()``; after that, ``next()`` returns ``None`` and further events are dropped.
    """

    def __init__(self) -> None:
        self._queue: ClosableQueue[tuple[bytes, AdjudicatorEvent]] = ClosableQueue()

    @property
    def _closed(self) -> bool:
        """Whether the stream was closed (for implementations)."""
        return self._queue.closed

    def push(self, channel_id: bytes, event: AdjudicatorEvent) -> None:
        """Hand one event of ``channel_id`` to :meth:`next` (for implementations)."""
        self._queue.put((channel_id, event))

    def _end(self) -> bool:
        """Close the stream and wake its readers; ``False`` if it was closed already."""
        if self._queue.closed:
            return False
        self._queue.close()
        return True

    async def next(self) -> tuple[bytes, AdjudicatorEvent] | None:
        """The next ``(channel_id, event)``, or ``None`` once closed."""
        return await self._queue.get()


def sub_states_preorder(
    state: State, given: Mapping[bytes, SignedState], operation: str
) -> list[SignedState]:
    """The signed states of every sub-channel ``state`` locks funds in, recursively, in
    depth-first pre-order (the order the ledgers take them).

    Raises:
        MissingSubStatesError: a locked sub-channel's state is not in ``given``.
    """
    out: list[SignedState] = []

    def collect(s: State) -> None:
        for sa in s.allocation.locked:
            sub = given.get(sa.id)
            if sub is None:
                raise MissingSubStatesError(
                    f"no signed state of sub-channel 0x{sa.id.hex()} to {operation}",
                    operation=operation,
                )
            out.append(sub)
            collect(sub.state)

    collect(state)
    return out


class Adjudicator(ABC):
    """The dispute and settlement interface of one ledger for one account."""

    @abstractmethod
    async def register(
        self, req: AdjudicatorReq, sub_states: Mapping[bytes, SignedState] | None = None
    ) -> None:
        """Register ``req.tx`` (and the signed states of locked sub-channels) for dispute.

        Registering the state already registered is a no-op. A refusal raises its
        :class:`ChainError` leaf: :class:`~perun_core.errors.StaleStateError` (lower or equal
        version), :class:`~perun_core.errors.RefutationClosedError` (window over), ...
        """

    @abstractmethod
    async def withdraw(
        self, req: AdjudicatorReq, sub_states: Mapping[bytes, SignedState] | None = None
    ) -> None:
        """Conclude the channel (unless concluded) and withdraw our outcome on every asset.

        A final, fully signed ``req.tx`` concludes at once (``concludeFinal``); otherwise the
        registered state concludes after its timeout. Once the channel is concluded, its
        outcome is fixed: the withdrawal pays it out whichever state ``req.tx`` carries.
        Idempotent: steps already done on the ledger are skipped, and a conclusion by
        someone else meanwhile is success. A refusal raises its :class:`ChainError` leaf
        (:class:`~perun_core.errors.TimeoutNotElapsedError`,
        :class:`~perun_core.errors.StateMismatchError`, ...).
        """

    @abstractmethod
    async def progress(self, req: AdjudicatorReq, new_state: State, sig: bytes) -> None:
        """Force-execute ``new_state`` (signed by participant ``req.idx`` only) on chain."""

    @abstractmethod
    async def subscribe(self, params: Params) -> EventSubscription:
        """Subscribe to the events of one channel."""

    def channel_events(self) -> ChannelEvents:
        """One event stream for many channels (used by the client's watchtower).

        Optional: the default is built on :meth:`subscribe`, one subscription (and one
        task) per added channel. A backend that can watch many channels at once (one log
        filter, one ledger callback) overrides it to make watching cheap per channel.
        """
        from perun_core.watcher.events import PerChannelEvents  # noqa: PLC0415 - import cycle: the watcher builds on this interface

        return PerChannelEvents(self)
