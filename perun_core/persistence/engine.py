"""A :class:`KeyValueStore` over an embedded engine with a blocking API (LevelDB, RocksDB).

The plugins for on-disk engines subclass :class:`EngineStore` and implement four blocking
primitives; this class adds what they all need, once: closed-state checks, error translation,
paged iteration, and the choice of where the blocking calls run.

**Direct or threaded.** A write that only has to reach the operating system (LevelDB or RocksDB
with ``sync=False``: the write-ahead log is handed to the kernel before the call returns) costs
a few microseconds, far less than a hop to a worker thread (about 50-100 µs with
``asyncio.to_thread``), so such stores call the engine directly on the event loop. A write that
must reach the disk (``sync=True``: an fsync per batch, 0.1-10 ms depending on the device)
would stall the loop, so threaded stores run writes in a worker thread and **group-commit**:
while one batch is being synced, batches from other channels queue up and go to the engine
together as one atomic batch with one fsync. Every caller still returns only after its own
batch is durable, and a failure fails every batch of the group (none of them is acknowledged).

Point reads always run directly: the client reads a channel's few keys right after writing
them, so they come from the engine's memtable or block cache. Scans (restore) run page by page,
in the worker thread when the store is threaded.

**Fail closed.** A write that fails (a full disk, an I/O error, a failed fsync) can leave the
engine's log with a partial record, and the engine's memory ahead of or behind its files; an
engine that carries on writing after it may append records a later open cannot read, or drops.
So after the first failed write the store refuses every further call, reads included, with
:class:`~perun_core.errors.StoreFailedError`, until it is closed and opened again: the open
replays and checks the log, and what it finds is what is stored. A batch whose write raised
was not acknowledged; it may or may not be found after the reopen (an fsync that failed after
the log append), every batch acknowledged before it is.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Final

from perun_core.errors import PersistenceError, StoreClosedError, StoreFailedError
from perun_core.persistence.kv import KeyValueStore, Puts, key_range, pairs

__all__ = ["EngineStore", "Op"]

Op = tuple[bytes, bytes | None]
"""One write operation: ``(key, value)`` puts, ``(key, None)`` deletes."""

_Pending = tuple[list[Op], "asyncio.Future[None]"]


class EngineStore(KeyValueStore):
    """Base of key-value stores over a blocking, thread-safe engine.

    Args:
        path: the store's directory (named in errors).
        threaded: run writes (group-committed) and scans in a worker thread.

    Subclasses open the engine in their constructor and implement :meth:`_engine_get`,
    :meth:`_engine_write`, :meth:`_engine_scan` and :meth:`_engine_close`; they may override
    :meth:`_translate` to map engine errors to typed ones.
    """

    page_size: int = 512
    """Pairs fetched per engine call while iterating."""

    _MAX_GROUP_OPS: Final = 65536  # bound one group commit's batch; the rest waits a round

    def __init__(self, *, path: str, threaded: bool) -> None:
        self.path = path
        self.threaded = threaded
        self._closed = False
        self._failure: PersistenceError | None = None  # the first failed write (fail closed)
        self._pending: deque[_Pending] = deque()
        self._committer: asyncio.Task[None] | None = None

    # --- engine primitives (blocking) -------------------------------------------------------

    @abstractmethod
    def _engine_get(self, key: bytes) -> bytes | None:
        """Read one key."""

    @abstractmethod
    def _engine_write(self, ops: Sequence[Op]) -> None:
        """Apply ``ops`` in order as one atomic batch, with the store's durability."""

    @abstractmethod
    def _engine_scan(self, lo: bytes, hi: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        """At most ``limit`` pairs with ``lo <= key < hi`` in ascending order (``hi is None``:
        no upper bound)."""

    @abstractmethod
    def _engine_close(self) -> None:
        """Release the engine (flushes buffers, drops the lock)."""

    def _translate(self, exc: Exception, action: str) -> PersistenceError:
        """The typed error for an engine failure during ``action``."""
        return PersistenceError(
            f"{self.name} store at {self.path}: {action} failed: {exc}", path=self.path
        )

    # --- helpers ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _closed_error(self) -> StoreClosedError:
        return StoreClosedError(
            f"{self.name} store at {self.path} is closed; open it again to use it",
            path=self.path,
        )

    @property
    def failure(self) -> PersistenceError | None:
        """The error of the write that failed the store, or ``None`` while it is healthy."""
        return self._failure

    def _failed_error(self) -> StoreFailedError:
        return StoreFailedError(
            f"{self.name} store at {self.path} refuses this call: an earlier write failed "
            f"({self._failure}). Close the store and open it again (the open checks its "
            "files) before using it.",
            path=self.path,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()
        if self._failure is not None:
            raise self._failed_error()

    def _call_write(self, ops: Sequence[Op]) -> None:
        if self._failure is not None:  # a batch queued behind the one that failed
            raise self._failed_error()
        try:
            self._engine_write(ops)
        except Exception as e:
            err = e if isinstance(e, PersistenceError) else self._translate(e, "write")
            if not isinstance(err, StoreClosedError):
                self._failure = err  # fail closed: see the module docstring
            if err is e:
                raise
            raise err from e

    def _call_scan(self, lo: bytes, hi: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        try:
            return self._engine_scan(lo, hi, limit)
        except PersistenceError:
            raise
        except Exception as e:
            raise self._translate(e, "scan") from e

    # --- KeyValueStore ----------------------------------------------------------------------

    async def get(self, key: bytes) -> bytes | None:
        """The value under ``key`` (read directly; see the module docstring)."""
        self._check_open()
        try:
            return self._engine_get(key)
        except PersistenceError:
            raise
        except Exception as e:
            raise self._translate(e, "read") from e

    async def write_batch(self, puts: Puts = (), deletes: Iterable[bytes] = ()) -> None:
        """Apply the batch atomically; returns once it has the store's durability.

        Raises:
            StoreFailedError: an earlier write failed (see the module docstring).
            PersistenceError: this write failed; the store now refuses further calls.
        """
        self._check_open()
        ops: list[Op] = [(k, None) for k in deletes]
        ops += pairs(puts)
        for k, v in ops:
            # checked here so one bad batch cannot poison a group commit of other channels
            if type(k) is not bytes or not (v is None or type(v) is bytes):
                raise TypeError(f"{self.name} store: keys and values must be bytes")
        if not ops:
            return
        if not self.threaded:
            self._call_write(ops)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((ops, fut))
        if self._committer is None:
            self._committer = asyncio.ensure_future(self._commit_loop())
        # A cancelled caller does not retract the batch: it may already be in the engine.
        await fut

    async def _commit_loop(self) -> None:
        try:
            while self._pending:
                group: list[_Pending] = []
                n = 0
                while self._pending and (not group or n < self._MAX_GROUP_OPS):
                    item = self._pending.popleft()
                    group.append(item)
                    n += len(item[0])
                ops = [op for item in group for op in item[0]]
                try:
                    await asyncio.to_thread(self._call_write, ops)
                except asyncio.CancelledError:
                    # the loop is shutting down: nobody can await these batches any more
                    for _, f in (*group, *self._pending):
                        f.cancel()
                    self._pending.clear()
                    raise
                except Exception as e:  # noqa: BLE001 - every waiter of the failed batch gets the store's error, whatever it is
                    for _, f in group:
                        if not f.done():
                            f.set_exception(e)
                else:
                    for _, f in group:
                        if not f.done():
                            f.set_result(None)
        finally:
            self._committer = None

    async def iterate(
        self,
        prefix: bytes = b"",
        *,
        start: bytes | None = None,
        end: bytes | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        """Pairs in key order, fetched :attr:`page_size` at a time."""
        lo, hi = key_range(prefix, start, end)
        left = -1 if limit is None else max(limit, 0)
        while left != 0:
            self._check_open()
            want = self.page_size if left < 0 else min(left, self.page_size)
            if self.threaded:
                page = await asyncio.to_thread(self._call_scan, lo, hi, want)
            else:
                page = self._call_scan(lo, hi, want)
            for kv in page:
                yield kv
            if len(page) < want:
                return
            if left > 0:
                left -= len(page)
            lo = page[-1][0] + b"\x00"  # the next key after the last one seen

    async def close(self) -> None:
        """Finish queued writes, then release the engine; later calls raise
        :class:`~perun_core.errors.StoreClosedError`. Idempotent.

        A failed store (see the module docstring) closes without error: the engine may
        report the earlier failure again while it lets go of its files, and the caller's
        next step, opening the store again, is what checks them."""
        if self._closed:
            return
        self._closed = True
        while self._committer is not None:
            # shielded: cancelling close() must not abandon other callers' batches
            await asyncio.shield(self._committer)
        try:
            self._engine_close()
        except Exception as e:
            if self._failure is None:
                raise self._translate(e, "close") from e
