"""Entry point of the ``perun-rocksdb`` plugin (``[project.entry-points.perun] rocksdb``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.hookspecs import hookimpl
from perun_rocksdb import RocksDBPersister

if TYPE_CHECKING:
    from perun_core.registry import PersisterRegistry


@hookimpl
def perun_register_persisters(registry: PersisterRegistry) -> None:
    """Register the ``rocksdb`` persister (factory: ``RocksDBPersister(path=..., **options)``)."""
    registry.add("rocksdb", RocksDBPersister)
