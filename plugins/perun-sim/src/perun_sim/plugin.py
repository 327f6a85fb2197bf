"""Entry point of the ``perun-sim`` plugin (``[project.entry-points.perun] sim``).

Loading it imports nothing else: the backend is registered by reference and imported when
it is first looked up, the command's module only when ``perun`` builds its parser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from perun_core.registry import ChainRegistry, CommandRegistry


@hookimpl
def perun_register_chains(registry: ChainRegistry) -> None:
    """Register the ``sim`` chain backend."""
    registry.add("perun_sim.backend:SimBackend", name="sim")


@hookimpl
def perun_register_commands(registry: CommandRegistry) -> None:
    """Register ``perun sim`` (``serve``)."""
    from perun_sim import cli

    registry.add("sim", cli.run, configure=cli.configure, help=cli.HELP)
