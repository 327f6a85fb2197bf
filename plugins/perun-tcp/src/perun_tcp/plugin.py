"""Entry point of the ``perun-tcp`` plugin (``[project.entry-points.perun] tcp``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from perun_core.registry import BusRegistry


@hookimpl
def perun_register_buses(registry: BusRegistry) -> None:
    """Register the ``tcp`` bus (TCP and Unix-socket endpoints alike).

    By reference: the bus module is imported when the bus is first looked up, so loading
    the plugin stays cheap.
    """
    registry.add("tcp", "perun_tcp.bus:TcpBus")
