"""Persistence: stores of channel records behind the :class:`~perun_core.interfaces.Persister`
interface. The core ships :class:`MemoryPersister` (registered as ``"memory"``); durable stores
(LevelDB, RocksDB) come from plugins."""

from perun_core.persistence.memory import MemoryPersister

__all__ = ["MemoryPersister"]
