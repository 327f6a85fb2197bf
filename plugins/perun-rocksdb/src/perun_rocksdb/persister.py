"""The ``rocksdb`` persister: the core's KVPersister over :class:`RocksDBStore`."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from perun_core.parts import PartConfig
from perun_core.persistence.kv_persister import KVPersister
from perun_rocksdb.store import RocksDBStore


class RocksDBConfig(PartConfig, frozen=True, kw_only=True):
    """Options of the ``rocksdb`` persister (``[perun.rocksdb]`` in ``perun.toml``).

    Attributes:
        path: the database directory (created if missing).
        sync: fsync each write (the default; ``false`` survives a killed process only).
        threaded: run the database calls in a worker thread (default: when ``sync``).
        create: create a missing database.
    """

    path: str
    sync: bool = True
    threaded: bool | None = None
    create: bool = True


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
    Config: ClassVar[type[PartConfig]] = RocksDBConfig
    durable: ClassVar[bool] = True

    def __init__(self, path: str | os.PathLike[str], *, sync: bool = True, **options: Any):
        super().__init__(RocksDBStore(path, sync=sync, **options), name="rocksdb")
