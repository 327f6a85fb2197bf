"""Persistence: stores of channel records behind the :class:`~perun_core.interfaces.Persister`
interface.

:class:`KVPersister` implements every persistence event and restorer once over the small
:class:`KeyValueStore` protocol (atomic write batches, ordered iteration); a storage engine
only provides the store. The core ships :class:`MemoryKV` and :class:`MemoryPersister`
(registered as ``"memory"``); durable stores (LevelDB, RocksDB) come from plugins, usually
through :class:`~perun_core.persistence.engine.EngineStore`. See ``docs/persistence.md``.
"""

from perun_core.persistence.kv import KeyValueStore, MemoryKV
from perun_core.persistence.kv_persister import KVPersister
from perun_core.persistence.memory import MemoryPersister

__all__ = ["KVPersister", "KeyValueStore", "MemoryKV", "MemoryPersister"]
