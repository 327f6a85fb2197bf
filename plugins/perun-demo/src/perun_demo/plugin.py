"""Entry point of the ``perun-demo`` plugin (``[project.entry-points.perun] demo``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from perun_core.registry import CommandRegistry


@hookimpl
def perun_register_commands(registry: CommandRegistry) -> None:
    """Register ``perun demo``."""
    from perun_demo import cli  # argparse only: the demo itself is imported when it runs

    registry.add("demo", cli.run, configure=cli.configure, help=cli.HELP)
