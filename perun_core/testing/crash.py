"""Crash injection for persistence tests: kill the process at the N-th persister event.

A :class:`CrashingPersister` wraps any persister. It counts the calls of each persistence
event (see docs/protocols.md) and, at the configured :class:`CrashPoint`, ends the process with
``SIGKILL`` — the one signal nothing in the process can intercept, so nothing is flushed or
cleaned up — either right *before* the N-th call of an event reaches the store or right
*after* it returned. With ``before`` the step's write is lost; with ``after`` it is on disk but
nothing that the protocol does next (sending a signature, the next write) happens.

Run as a program, this module is :mod:`perun_core.testing.peer` with its persister wrapped, so
the crash tests drive it with :class:`perun_core.testing.peer.PeerProcess`
(``module="perun_core.testing.crash"``)::

    PERUN_CRASH_AT=enabled:3:after PERUN_CRASH_TRACE=/tmp/trace \\
        python -m perun_core.testing.crash --ledger URL --peer 0x... --persister leveldb --db DB

* ``PERUN_CRASH_AT`` (:data:`CRASH_ENV`): ``EVENT:N:before|after``, ``EVENT`` one of
  :data:`EVENTS` or ``*`` (any event: the N-th persistence write of whatever kind); unset:
  never crash.
* ``PERUN_CRASH_TRACE`` (:data:`TRACE_ENV`): a file to which one line ``EVENT N`` is appended
  (unbuffered, so it survives the kill) as each event starts; a dry run lists every kill
  point of a scenario this way.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.channel.types import Address
from perun_core.interfaces.persister import ChannelRecord, Persister

CRASH_ENV = "PERUN_CRASH_AT"
"""Environment variable naming the crash point of the child (``EVENT:N:before|after``)."""

TRACE_ENV = "PERUN_CRASH_TRACE"
"""Environment variable naming the child's event trace file."""

EVENTS = ("channel_created", "staged", "sig_added", "enabled", "phase_changed", "channel_removed")
"""The persistence events: the write methods of a persister."""

ANY = "*"
"""The event of a crash point that counts every persistence event (``*:2:after``)."""

When = Literal["before", "after"]


@dataclass(frozen=True, slots=True)
class CrashPoint:
    """Where to crash: before or after the ``n``-th call (1-based) of ``event``.

    ``event`` is one of :data:`EVENTS`, or :data:`ANY` to count the calls of every event.
    """

    event: str
    n: int
    when: When

    def __post_init__(self) -> None:
        if self.event not in EVENTS and self.event != ANY:
            raise ValueError(
                f"unknown persistence event {self.event!r}; one of {EVENTS} or {ANY!r}"
            )
        if self.n < 1:
            raise ValueError(f"the call number counts from 1, got {self.n}")
        if self.when not in ("before", "after"):
            raise ValueError(f"when must be 'before' or 'after', got {self.when!r}")

    @classmethod
    def parse(cls, text: str) -> CrashPoint:
        """Parse ``EVENT:N:before|after`` (e.g. ``enabled:3:after``, ``*:1:before``).

        Raises:
            ValueError: the text is not of that form.
        """
        parts = text.strip().split(":")
        if len(parts) != 3 or not parts[1].isdigit():
            raise ValueError(f"a crash point is EVENT:N:before|after, got {text!r}")
        if parts[2] == "before":
            return cls(parts[0], int(parts[1]), "before")
        if parts[2] == "after":
            return cls(parts[0], int(parts[1]), "after")
        raise ValueError(f"a crash point is EVENT:N:before|after, got {text!r}")

    def __str__(self) -> str:
        return f"{self.event}:{self.n}:{self.when}"


def _sigkill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingPersister(Persister):
    """Delegates to ``inner``; kills the process at ``point`` (see the module docs).

    Args:
        inner: the persister that stores the records.
        point: where to crash; ``None`` only counts (and traces).
        trace: path of a file to append ``EVENT N`` lines to, or ``None``.
        kill: what "crash" means (default: ``SIGKILL`` to this process); tests of this class
            pass a function that raises instead.
    """

    def __init__(
        self,
        inner: Persister,
        point: CrashPoint | None = None,
        *,
        trace: str | None = None,
        kill: Callable[[], None] = _sigkill_self,
    ) -> None:
        self.inner = inner
        self.point = point
        self.name = inner.name
        self.counts: dict[str, int] = dict.fromkeys(EVENTS, 0)
        self.total = 0
        self._kill = kill
        # O_APPEND and no userspace buffer: every line is in the file before the event runs.
        self._trace = (
            os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) if trace else None
        )

    async def _event(self, event: str, call: Callable[[], Awaitable[None]]) -> None:
        n = self.counts[event] + 1
        self.counts[event] = n
        self.total += 1
        if self._trace is not None:
            os.write(self._trace, f"{event} {n}\n".encode())
        p = self.point
        hit = p is not None and (
            (p.event == event and p.n == n) or (p.event == ANY and p.n == self.total)
        )
        if hit and p is not None and p.when == "before":
            self._kill()
        await call()
        if hit and p is not None and p.when == "after":
            self._kill()

    async def channel_created(self, record: ChannelRecord) -> None:
        await self._event("channel_created", lambda: self.inner.channel_created(record))

    async def staged(self, channel_id: bytes, staging: Transaction | None, phase: Phase) -> None:
        await self._event("staged", lambda: self.inner.staged(channel_id, staging, phase))

    async def sig_added(self, channel_id: bytes, version: int, idx: int, sig: bytes) -> None:
        await self._event("sig_added", lambda: self.inner.sig_added(channel_id, version, idx, sig))

    async def enabled(self, channel_id: bytes, current: Transaction, phase: Phase) -> None:
        await self._event("enabled", lambda: self.inner.enabled(channel_id, current, phase))

    async def phase_changed(
        self, channel_id: bytes, phase: Phase, version_floor: int, needs_sync: bool
    ) -> None:
        await self._event(
            "phase_changed",
            lambda: self.inner.phase_changed(channel_id, phase, version_floor, needs_sync),
        )

    async def channel_removed(self, channel_id: bytes) -> None:
        await self._event("channel_removed", lambda: self.inner.channel_removed(channel_id))

    async def active_peers(self) -> list[Address]:
        return await self.inner.active_peers()

    async def restore_peer(self, peer: Address) -> list[ChannelRecord]:
        return await self.inner.restore_peer(peer)

    async def restore_channel(self, channel_id: bytes) -> ChannelRecord | None:
        return await self.inner.restore_channel(channel_id)

    async def close(self) -> None:
        if self._trace is not None:
            os.close(self._trace)
            self._trace = None
        await self.inner.close()


def read_trace(path: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """The ``(event, n)`` pairs a :class:`CrashingPersister` traced, in order."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        event, n = line.split()
        out.append((event, int(n)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perun_core.testing.crash``: the test peer with a crashing persister."""
    from perun_core.testing.peer import main as peer_main  # noqa: PLC0415 - the peer's client stack loads only when run as a program

    spec = os.environ.get(CRASH_ENV, "").strip()
    point = CrashPoint.parse(spec) if spec else None
    trace = os.environ.get(TRACE_ENV) or None
    return peer_main(
        argv, wrap_persister=lambda inner: CrashingPersister(inner, point, trace=trace)
    )


if __name__ == "__main__":
    sys.exit(main())
