"""Entry point of the ``perun-apps`` plugin (``[project.entry-points.perun] apps``).

The apps are registered by reference: loading the plugin imports nothing of them; an app's
module (its rules and its contract artifact) is imported when the app is first looked up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from perun_core.registry import AppCatalog


@hookimpl
def perun_register_apps(registry: AppCatalog) -> None:
    """Register ``tictactoe`` and ``htlc``."""
    registry.add("tictactoe", "perun_apps.tictactoe:DEFINITION")
    registry.add("htlc", "perun_apps.htlc:DEFINITION")
