"""perun-rocksdb: durable channel persistence in RocksDB.

Registers the persister ``"rocksdb"``::

    persister = load_plugins().persister("rocksdb")(path="alice.db")

:class:`RocksDBPersister` is :class:`~perun_core.persistence.KVPersister` (the core's one
implementation of every persistence event) over :class:`RocksDBStore`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.lazy import lazy_exports

if TYPE_CHECKING:
    from perun_rocksdb.persister import RocksDBPersister
    from perun_rocksdb.store import RocksDBStore
else:
    # Loading the plugin imports this package: the store and its database library are
    # imported on first use.
    __getattr__ = lazy_exports(
        __name__,
        {"RocksDBPersister": "perun_rocksdb.persister", "RocksDBStore": "perun_rocksdb.store"},
    )

__all__ = ["RocksDBPersister", "RocksDBStore"]
