"""Entry point of the ``perun-sim`` plugin (``[project.entry-points.perun] sim``)."""

from __future__ import annotations

from typing import Any, Protocol

from perun_core.hookspecs import hookimpl
from perun_sim.backend import SimBackend


class _ChainRegistry(Protocol):
    def add(self, cls: Any, /) -> Any: ...


@hookimpl
def perun_register_chains(registry: _ChainRegistry) -> None:
    """Register the ``sim`` chain backend."""
    registry.add(SimBackend)
