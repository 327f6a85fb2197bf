"""Entry point of the plugin (``[project.entry-points.perun] template``).

Keep this module light: the loader imports it for every ``perun`` command and every
``load_plugins()``, even when the backend is never used. The backend is registered by
reference (``"module:Class"``) and imported the first time it is looked up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core import hookimpl

if TYPE_CHECKING:
    from perun_core.registry import ChainRegistry


@hookimpl
def perun_register_chains(registry: ChainRegistry) -> None:
    """Register the ``template`` chain backend."""
    registry.add("perun_template.backend:TemplateBackend", name="template")
