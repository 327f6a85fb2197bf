"""Entry point of the ``perun-eth`` plugin (``[project.entry-points.perun] eth``)."""

from __future__ import annotations

from typing import Any, Protocol

from perun_core.hookspecs import hookimpl
from perun_core.registry import CommandRegistry
from perun_eth import cli
from perun_eth.backend import EthBackend


class _ChainRegistry(Protocol):
    def add(self, cls: Any, /) -> Any: ...


@hookimpl
def perun_register_chains(registry: _ChainRegistry) -> None:
    """Register the ``eth`` chain backend."""
    registry.add(EthBackend)


@hookimpl
def perun_register_commands(registry: CommandRegistry) -> None:
    """Register ``perun eth`` (``deploy``, ``validate``)."""
    registry.add("eth", cli.run, configure=cli.configure, help=cli.HELP)
