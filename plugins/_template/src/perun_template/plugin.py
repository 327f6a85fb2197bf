"""Entry point of the plugin (``[project.entry-points.perun] template``).

Keep this module light: the loader imports it for ``perun plugins`` even when the backend is
never used, so the backend module is imported inside the hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core import hookimpl

if TYPE_CHECKING:
    from perun_core.registry import ChainRegistry


@hookimpl
def perun_register_chains(registry: ChainRegistry) -> None:
    """Register the ``template`` chain backend."""
    from perun_template.backend import TemplateBackend

    registry.add(TemplateBackend)
