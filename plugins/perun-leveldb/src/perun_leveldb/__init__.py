"""perun-leveldb: durable channel persistence in LevelDB.

Registers the persister ``"leveldb"``::

    persister = load_plugins().persister("leveldb")(path="alice.db")

:class:`LevelDBPersister` is :class:`~perun_core.persistence.KVPersister` (the core's one
implementation of every persistence event) over :class:`LevelDBStore`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.lazy import lazy_exports

if TYPE_CHECKING:
    from perun_leveldb.persister import LevelDBPersister
    from perun_leveldb.store import LevelDBStore
else:
    # Loading the plugin imports this package: the store and its database library are
    # imported on first use.
    __getattr__ = lazy_exports(
        __name__,
        {"LevelDBPersister": "perun_leveldb.persister", "LevelDBStore": "perun_leveldb.store"},
    )

__all__ = ["LevelDBPersister", "LevelDBStore"]
