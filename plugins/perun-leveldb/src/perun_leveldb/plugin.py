"""Entry point of the ``perun-leveldb`` plugin (``[project.entry-points.perun] leveldb``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.hookspecs import hookimpl
from perun_leveldb import LevelDBPersister

if TYPE_CHECKING:
    from perun_core.registry import PersisterRegistry


@hookimpl
def perun_register_persisters(registry: PersisterRegistry) -> None:
    """Register the ``leveldb`` persister (factory: ``LevelDBPersister(path=..., **options)``)."""
    registry.add("leveldb", LevelDBPersister)
