"""Entry point of the ``perun-eth`` plugin (``[project.entry-points.perun] eth``).

Loading it must not import web3 (over a second, and it raises the recursion limit): the
backend is registered by reference and imported when it is first looked up; the command's
module imports web3 only when a command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from perun_core.registry import ChainRegistry, CommandRegistry


@hookimpl
def perun_register_chains(registry: ChainRegistry) -> None:
    """Register the ``eth`` chain backend."""
    registry.add("perun_eth.backend:EthBackend", name="eth")


@hookimpl
def perun_register_commands(registry: CommandRegistry) -> None:
    """Register ``perun eth`` (``deploy``, ``validate``)."""
    from perun_eth import cli

    registry.add("eth", cli.run, configure=cli.configure, help=cli.HELP)
