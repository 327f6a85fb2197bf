"""The ``builtins`` plugin: what the core provides without any other distribution installed.

- bus ``"local"``: :class:`perun_core.wire.local_bus.LocalBus`, clients in one process;
- persister ``"memory"``: :class:`perun_core.persistence.memory.MemoryPersister`.

It is declared like every other plugin (``[project.entry-points.perun] builtins = ...``) and
:func:`perun_core.plugins.load_plugins` loads it even when entry points are not scanned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from perun_core.registry import BusRegistry, PersisterRegistry

# The implementations are registered as references, imported on first use: loading a plugin
# must stay cheap and free of side effects, whatever the plugin provides.


@hookimpl
def perun_register_buses(registry: BusRegistry) -> None:
    """Register the in-process bus ``"local"``."""
    registry.add("local", "perun_core.wire.local_bus:LocalBus")


@hookimpl
def perun_register_persisters(registry: PersisterRegistry) -> None:
    """Register the in-memory persister ``"memory"``."""
    registry.add("memory", "perun_core.persistence.memory:MemoryPersister")
