"""Hook specifications of the ``perun`` pluggy project.

A plugin is a module listed under the ``perun`` entry-point group whose functions are marked
with :data:`hookimpl`::

    # pyproject.toml
    [project.entry-points.perun]
    mychain = "perun_mychain.plugin"

    # perun_mychain/plugin.py
    from perun_core import hookimpl

    @hookimpl
    def perun_register_chains(registry):
        registry.add(MyChainBackend)

Registration hooks receive a typed registry that validates each class as it is added
(unique name, no abstract methods left open, right base class).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from perun_core.registry import (
        AppCatalog,
        BusRegistry,
        ChainRegistry,
        CommandRegistry,
        PersisterRegistry,
    )

PROJECT = "perun"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def perun_register_chains(registry: ChainRegistry) -> None:
    """Register chain backends.

    Call ``registry.add(cls)`` with a :class:`~perun_core.interfaces.ChainBackend` subclass
    whose ``name`` class attribute is the name users select it by (e.g. ``"sim"``).
    """


@hookspec
def perun_register_buses(registry: BusRegistry) -> None:
    """Register message buses.

    Call ``registry.add(name, cls)`` with a :class:`~perun_core.interfaces.Bus` subclass
    (or a ``"module:Class"`` reference to it) whose ``Config`` declares its options and whose
    ``open(config, *, account, backend)`` builds it (e.g. ``"local"``, ``"tcp"``).
    """


@hookspec
def perun_register_persisters(registry: PersisterRegistry) -> None:
    """Register persisters.

    Call ``registry.add(name, cls)`` with a :class:`~perun_core.interfaces.Persister`
    subclass (or a reference to it) whose ``Config`` declares its options and whose
    ``open(config, *, account, backend)`` builds it (e.g. ``"memory"``, ``"leveldb"``).
    """


@hookspec
def perun_register_commands(registry: CommandRegistry) -> None:
    """Register subcommands of the perun command line (such as perun eth).

    Call ``registry.add(name, run, configure=..., help=...)``: ``configure(parser)`` adds the
    command's arguments to its ``argparse`` sub-parser, and ``run(args)`` (a plain or an
    ``async def`` function) gets the parsed namespace and returns the exit status.
    """


@hookspec
def perun_register_apps(registry: AppCatalog) -> None:
    """Register channel apps.

    Call ``registry.add(name, definition)`` with an
    :class:`~perun_core.channel.app.AppDefinition` (or a ``"module:NAME"`` reference to one):
    the app's off-chain rules and, per chain backend, what runs it on chain. Each backend
    maps the name to its AppID (:meth:`~perun_core.interfaces.ChainBackend.app_id`).
    """


@hookspec
def perun_configure(config: dict[str, Any]) -> None:
    """Adjust the framework once plugins are loaded (e.g. route logging to another library).

    ``config`` is the user's configuration mapping (the ``[perun]`` table of a TOML config,
    or an empty dict); implementations must tolerate missing keys.
    """
