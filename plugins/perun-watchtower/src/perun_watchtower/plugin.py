"""Entry point of the ``perun-watchtower`` plugin (``[project.entry-points.perun] watchtower``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from perun_core.registry import CommandRegistry


@hookimpl
def perun_register_commands(registry: CommandRegistry) -> None:
    """Register ``perun watchtower``."""
    from perun_watchtower import cli  # argparse only: the service is imported when it runs

    registry.add("watchtower", cli.run, configure=cli.configure, help=cli.HELP)
