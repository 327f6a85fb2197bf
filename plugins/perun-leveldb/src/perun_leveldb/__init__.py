"""perun-leveldb: durable channel persistence in LevelDB.

Registers the persister ``"leveldb"``::

    persister = load_plugins().persister("leveldb")(path="alice.db")

:class:`LevelDBPersister` is :class:`~perun_core.persistence.KVPersister` (the core's one
implementation of every persistence event) over :class:`LevelDBStore`.
"""

from __future__ import annotations

import os
from typing import Any

from perun_core.persistence.kv_persister import KVPersister
from perun_leveldb.store import LevelDBStore

__all__ = ["LevelDBPersister", "LevelDBStore"]


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

    def __init__(self, path: str | os.PathLike[str], *, sync: bool = True, **options: Any):
        super().__init__(LevelDBStore(path, sync=sync, **options), name="leveldb")
