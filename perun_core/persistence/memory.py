"""The in-memory :class:`~perun_core.interfaces.Persister` (registered as ``"memory"``).

It is :class:`~perun_core.persistence.kv_persister.KVPersister` over a
:class:`~perun_core.persistence.kv.MemoryKV`: the same code, key schema and encodings as the
on-disk persisters, so every test that runs on memory also exercises the persistence logic the
durable stores use. Records are stored encoded, which also makes them immutable: a record handed
out by a restorer can never change under its holder.

The store survives ``close()``: a test can close one client and restore a new one from the same
persister object, which is how crash/restore scenarios run without a disk.
"""

from __future__ import annotations

from perun_core.persistence.kv import MemoryKV
from perun_core.persistence.kv_persister import KVPersister

__all__ = ["MemoryPersister"]


class MemoryPersister(KVPersister):
    """Keeps channel records in process memory; nothing survives the process."""

    name = "memory"

    def __init__(self) -> None:
        super().__init__(MemoryKV(), name="memory")

    @property
    def kv(self) -> MemoryKV:
        """The underlying in-memory key-value store."""
        assert isinstance(self.store, MemoryKV)
        return self.store

    def __len__(self) -> int:
        """Number of stored channels."""
        # meta keys: "c" + 32-byte channel ID + "m"
        return sum(1 for k in self.kv.snapshot() if len(k) == 34 and k[0] == 0x63 and k[-1] == 0x6D)

    def __repr__(self) -> str:
        return f"MemoryPersister({len(self)} channels)"
