"""perun-rocksdb: durable channel persistence in RocksDB.

Registers the persister ``"rocksdb"``::

    persister = load_plugins().persister("rocksdb")(path="alice.db")

:class:`RocksDBPersister` is :class:`~perun_core.persistence.KVPersister` (the core's one
implementation of every persistence event) over :class:`RocksDBStore`.
"""

from __future__ import annotations

import os
from typing import Any

from perun_core.persistence.kv_persister import KVPersister
from perun_rocksdb.store import RocksDBStore

__all__ = ["RocksDBPersister", "RocksDBStore"]


class RocksDBPersister(KVPersister):
    """Channel records in a RocksDB database directory.

    Args:
        path: the database directory (created if missing).
        sync: fsync each write (the default: survives power loss); ``False`` only hands it to
            the OS, which survives a killed process; see :mod:`perun_rocksdb.store`.
        **options: passed to :class:`RocksDBStore` (``threaded``, ``create``).

    Raises:
        StoreLockedError: the database is already open elsewhere.
        StoreCorruptError: the database files are damaged.
        PersistenceError: the database cannot be opened for another reason.
    """

    name = "rocksdb"

    def __init__(self, path: str | os.PathLike[str], *, sync: bool = True, **options: Any):
        super().__init__(RocksDBStore(path, sync=sync, **options), name="rocksdb")
