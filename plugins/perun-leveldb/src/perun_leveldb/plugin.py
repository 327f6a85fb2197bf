"""Entry point of the ``perun-leveldb`` plugin (``[project.entry-points.perun] leveldb``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from perun_core.registry import PersisterRegistry


@hookimpl
def perun_register_persisters(registry: PersisterRegistry) -> None:
    """Register the ``leveldb`` persister (factory: ``LevelDBPersister(path=..., **options)``).

    By reference: the store and its database library are imported when the persister is
    first looked up, so loading the plugin stays cheap.
    """
    registry.add("leveldb", "perun_leveldb.persister:LevelDBPersister")
