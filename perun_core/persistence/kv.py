"""The small key-value protocol that every persister store speaks, and its in-memory store.

:class:`~perun_core.persistence.kv_persister.KVPersister` implements the whole
:class:`~perun_core.interfaces.Persister` once over this protocol, so a storage engine only has
to provide four operations:

- ``get(key)``: the value or ``None``;
- ``write_batch(puts, deletes)``: apply every delete, then every put, **atomically** (all or
  nothing, also across a crash);
- ``iterate(prefix, start=, end=)``: ``(key, value)`` pairs in ascending byte order;
- ``close()``.

Keys and values are ``bytes``. Keys order as unsigned byte strings (``memcmp``), as in LevelDB
and RocksDB.
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping

__all__ = ["KeyValueStore", "MemoryKV", "Puts", "key_range", "pairs", "prefix_end"]

Puts = Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]
"""What ``write_batch`` takes as puts: a mapping or ``(key, value)`` pairs, applied in order."""


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key above every key that starts with ``prefix`` (``None``: no such key).

    Examples: ``b"ab"`` → ``b"ac"``; ``b"a\\xff"`` → ``b"b"``; ``b"\\xff"`` → ``None``.
    """
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def key_range(
    prefix: bytes = b"", start: bytes | None = None, end: bytes | None = None
) -> tuple[bytes, bytes | None]:
    """The half-open range ``[lo, hi)`` of keys that start with ``prefix`` and lie in
    ``[start, end)``; ``hi is None`` means unbounded."""
    lo = prefix if start is None or start < prefix else start
    hi = prefix_end(prefix) if prefix else None
    if end is not None and (hi is None or end < hi):
        hi = end
    return lo, hi


def pairs(puts: Puts) -> Iterable[tuple[bytes, bytes]]:
    """The puts of a batch as ``(key, value)`` pairs, in order."""
    if type(puts) is dict:  # the usual case, without the ABC check (hot path)
        return puts.items()
    return puts.items() if isinstance(puts, Mapping) else puts


class KeyValueStore(ABC):
    """An ordered byte-string store with atomic write batches.

    Implementations must make every :meth:`write_batch` atomic (a reader or a restart sees all
    of it or none of it) and must have it reach the durability the store promises before the
    call returns. Calls may overlap (different channels write concurrently); they never touch
    the same keys at the same time.
    """

    name: str = "kv"
    """A short name for messages (``"memory"``, ``"leveldb"``)."""

    path: str | None = None
    """The store's location on disk, if any (named in errors)."""

    @abstractmethod
    async def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or ``None``.

        Raises:
            StoreClosedError: the store is closed.
            PersistenceError: the engine failed to read.
        """

    @abstractmethod
    async def write_batch(self, puts: Puts = (), deletes: Iterable[bytes] = ()) -> None:
        """Atomically delete ``deletes`` and then store ``puts``.

        A key both deleted and put ends up put. Deleting a missing key is not an error.

        Raises:
            StoreClosedError: the store is closed.
            PersistenceError: the engine failed to write; the batch is not acknowledged (all
                or nothing of it may be found after a reopen, never a part). On-disk stores
                then refuse every further call with
                :class:`~perun_core.errors.StoreFailedError` until reopened.
        """

    @abstractmethod
    def iterate(
        self,
        prefix: bytes = b"",
        *,
        start: bytes | None = None,
        end: bytes | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        """``(key, value)`` pairs of the keys that start with ``prefix`` and lie in
        ``[start, end)``, in ascending key order; at most ``limit`` pairs if given.

        Writes made while the iteration runs may or may not be seen.

        Raises:
            StoreClosedError: the store is closed.
            PersistenceError: the engine failed to read.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release the store (idempotent)."""


class MemoryKV(KeyValueStore):
    """A :class:`KeyValueStore` in process memory.

    Values live in a dict; iteration sorts the keys lazily and reuses the sorted list until
    the key set changes, so the hot path (overwriting a few keys per event) never sorts and a
    restore (many scans, no writes) sorts once. ``close()`` keeps the data and the store stays
    usable: a test closes one client and restores the next one from the same object.
    """

    name = "memory"

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._sorted: list[bytes] | None = None  # None: the key set changed since last sort

    def __len__(self) -> int:
        """Number of keys."""
        return len(self._data)

    def snapshot(self) -> dict[bytes, bytes]:
        """A copy of every key and value (for tests and introspection)."""
        return dict(self._data)

    def _sorted_keys(self) -> list[bytes]:
        if self._sorted is None:
            self._sorted = sorted(self._data)
        return self._sorted

    async def get(self, key: bytes) -> bytes | None:
        """The value under ``key``, or ``None``."""
        return self._data.get(key)

    async def write_batch(self, puts: Puts = (), deletes: Iterable[bytes] = ()) -> None:
        """Apply the batch; atomic because nothing awaits in between."""
        data = self._data
        items = list(pairs(puts))  # materialize first: a bad argument must change nothing
        dels = list(deletes)
        for k, v in items:
            if type(k) is not bytes or type(v) is not bytes:
                raise TypeError("MemoryKV keys and values are bytes")
        changed = False
        for k in dels:
            if data.pop(k, None) is not None:
                changed = True
        for k, v in items:
            if k not in data:
                changed = True
            data[k] = v
        if changed:
            self._sorted = None

    async def iterate(
        self,
        prefix: bytes = b"",
        *,
        start: bytes | None = None,
        end: bytes | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        """Pairs in key order; a snapshot of the key list taken when iteration starts."""
        lo, hi = key_range(prefix, start, end)
        keys = self._sorted_keys()
        i = bisect.bisect_left(keys, lo)
        j = len(keys) if hi is None else bisect.bisect_left(keys, hi)
        if limit is not None:
            j = min(j, i + max(limit, 0))
        data = self._data
        for k in keys[i:j]:
            v = data.get(k)
            if v is not None:  # deleted while we iterated
                yield k, v

    def __repr__(self) -> str:
        return f"MemoryKV({len(self._data)} keys)"
