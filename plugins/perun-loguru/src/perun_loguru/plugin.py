"""Entry point of the ``perun-loguru`` plugin (``[project.entry-points.perun] loguru``)."""

from __future__ import annotations

from typing import Any

from perun_core.hookspecs import hookimpl


@hookimpl
def perun_configure(config: dict[str, Any]) -> None:
    """Route the framework's standard-library logging to loguru (see :mod:`perun_loguru`)."""
    from perun_loguru.routing import options_from_config, route  # keeps loading cheap

    route(options_from_config(config))
