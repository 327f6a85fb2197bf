"""The ``leveldb`` persister: the core's KVPersister over :class:`LevelDBStore`."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from perun_core.parts import PartConfig
from perun_core.persistence.kv_persister import KVPersister
from perun_leveldb.store import LevelDBStore


class LevelDBConfig(PartConfig, frozen=True, kw_only=True):
    """Options of the ``leveldb`` persister (``[perun.leveldb]`` in ``perun.toml``).

    Attributes:
        path: the database directory (created if missing).
        sync: fsync each write (the default; ``false`` survives a killed process only).
        threaded: run the database calls in a worker thread (default: when ``sync``).
        create: create a missing database.
        paranoid_checks: verify checksums while reading.
    """

    path: str
    sync: bool = True
    threaded: bool | None = None
    create: bool = True
    paranoid_checks: bool = True


class LevelDBPersister(KVPersister):
    """Channel records in a LevelDB database directory.

    Args:
        path: the database directory (created if missing).
        sync: fsync each write (the default: survives power loss); ``False`` only hands it to
            the OS, which survives a killed process; see :mod:`perun_leveldb.store`.
        **options: passed to :class:`LevelDBStore` (``threaded``, ``create``,
            ``paranoid_checks``, plyvel options).

    Raises:
        StoreLockedError: the database is already open elsewhere.
        StoreCorruptError: the database files are damaged.
        PersistenceError: the database cannot be opened for another reason.
    """

    name = "leveldb"
    Config: ClassVar[type[PartConfig]] = LevelDBConfig
    durable: ClassVar[bool] = True

    def __init__(self, path: str | os.PathLike[str], *, sync: bool = True, **options: Any):
        super().__init__(LevelDBStore(path, sync=sync, **options), name="leveldb")
