"""Typed registries handed to the registration hooks.

Each registry maps a name to what one plugin provides: a :class:`ChainBackend` class, a
factory that builds a :class:`Bus` or a :class:`Persister`, or a :class:`Command` of the
``perun`` command line. A registry validates every entry
as it is added, so a broken plugin fails when it registers, not when a user first selects it:

- names are non-empty strings without whitespace or commas (they appear in environment lists);
- a chain backend is a ``ChainBackend`` subclass with a ``name`` and no abstract methods left;
- a factory is callable; a factory that is a class must subclass ``Bus``/``Persister`` and
  implement every abstract method;
- a name registered twice is a :class:`~perun_core.errors.PluginConflictError` naming both
  plugins.

The plugin loader tells a registry which plugin is registering (:meth:`registering_as`), so
the registry can name the provider of each entry in errors and in ``perun plugins``.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Final, Generic, TypeVar

from perun_core.errors import PluginConflictError, PluginNotFoundError, PluginValidationError
from perun_core.interfaces.bus import Bus
from perun_core.interfaces.chain import ChainBackend
from perun_core.interfaces.persister import Persister

__all__ = [
    "BUILTIN_COMMANDS",
    "BusFactory",
    "BusRegistry",
    "ChainRegistry",
    "Command",
    "CommandRegistry",
    "PersisterFactory",
    "PersisterRegistry",
]

T = TypeVar("T")
P = TypeVar("P")

BusFactory = Callable[..., Bus]
"""Builds a bus from keyword options (the class itself or a function)."""

PersisterFactory = Callable[..., Persister]
"""Builds a persister from keyword options (the class itself or a function)."""

CommandRunner = Callable[[argparse.Namespace], int | Awaitable[int | None] | None]
"""Runs a plugin command with its parsed arguments; returns the exit status (``None``: 0).
A coroutine function is run with :func:`asyncio.run`."""

BUILTIN_COMMANDS: Final = frozenset({"plugins", "demo"})
"""Subcommand names the ``perun`` command keeps for itself."""

DIRECT = "(direct)"
"""Provider label of entries added outside a plugin hook (e.g. by a test or an application)."""


def _abstract_methods(cls: type) -> list[str]:
    """Names of the abstract methods ``cls`` leaves unimplemented, sorted."""
    if not inspect.isabstract(cls):
        return []
    return sorted(getattr(cls, "__abstractmethods__", ()))


def _qualname(obj: object) -> str:
    """``module.QualName`` of a class or function, for messages."""
    module = getattr(obj, "__module__", None) or "?"
    name = getattr(obj, "__qualname__", None) or repr(obj)
    return f"{module}.{name}"


class _NamedRegistry(Generic[T]):
    """A name -> entry mapping that records which plugin added each entry."""

    kind: ClassVar[str] = "entry"
    """What the entries are, for messages ("chain backend", "bus", "persister")."""

    def __init__(self) -> None:
        self._entries: dict[str, T] = {}
        self._providers: dict[str, str] = {}
        self._current = DIRECT

    # --- bookkeeping ---------------------------------------------------------------------

    @contextmanager
    def registering_as(self, plugin: str) -> Iterator[None]:
        """Attribute every entry added inside the ``with`` block to ``plugin``."""
        previous, self._current = self._current, plugin
        try:
            yield
        finally:
            self._current = previous

    @property
    def current_plugin(self) -> str:
        """The plugin whose hook is running (``"(direct)"`` outside a hook)."""
        return self._current

    def provider_of(self, name: str) -> str:
        """The plugin that registered ``name``.

        Raises:
            PluginNotFoundError: nothing is registered under ``name``.
        """
        self.get(name)
        return self._providers[name]

    def registered_by(self, plugin: str) -> list[str]:
        """The names ``plugin`` registered, in registration order."""
        return [n for n, p in self._providers.items() if p == plugin]

    # --- lookups -------------------------------------------------------------------------

    def get(self, name: str) -> T:
        """The entry registered under ``name``.

        Raises:
            PluginNotFoundError: nothing is registered under ``name``; the message lists the
                installed names and the distribution to install.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise PluginNotFoundError(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self.names())})"

    # --- helpers for add() ---------------------------------------------------------------

    def _invalid(self, message: str) -> PluginValidationError:
        return PluginValidationError(f"plugin {self._current!r}: {message}")

    def _check_name(self, name: object, what: str) -> str:
        if not isinstance(name, str) or not name:
            raise self._invalid(f"{what} must be a non-empty string, got {name!r}")
        if any(ch.isspace() for ch in name) or "," in name:
            raise self._invalid(f"{what} {name!r} must not contain whitespace or commas")
        return name

    def _store(self, name: str, entry: T) -> None:
        if name in self._entries:
            other = self._providers[name]
            who = (
                f"plugin {other!r} (again)"
                if other == self._current
                else f"both plugins {other!r} and {self._current!r}"
            )
            raise PluginConflictError(
                f"{self.kind} {name!r} is registered by {who}. Uninstall one of them or skip "
                f"one with PERUN_DISABLE_PLUGINS=<plugin name>."
            )
        self._entries[name] = entry
        self._providers[name] = self._current


class ChainRegistry(_NamedRegistry[type[ChainBackend]]):
    """Chain backends by name; passed to ``perun_register_chains``."""

    kind = "chain backend"

    def add(self, cls: type[ChainBackend]) -> None:
        """Register a :class:`~perun_core.interfaces.ChainBackend` subclass under ``cls.name``.

        Raises:
            PluginValidationError: ``cls`` is not a ``ChainBackend`` subclass, has no valid
                ``name``, or leaves abstract methods unimplemented (they are named).
            PluginConflictError: another backend already uses the name.
        """
        if not (isinstance(cls, type) and issubclass(cls, ChainBackend)):
            raise self._invalid(
                f"registered {cls!r} as a chain backend, but it is not a subclass of "
                "perun_core.interfaces.ChainBackend"
            )
        name = self._check_name(
            getattr(cls, "name", None), f"the 'name' class attribute of {_qualname(cls)}"
        )
        missing = _abstract_methods(cls)
        if missing:
            raise self._invalid(
                f"chain backend {_qualname(cls)} ({name!r}) leaves abstract methods "
                f"unimplemented: {', '.join(missing)}. Implement them before registering it."
            )
        self._store(name, cls)


class _FactoryRegistry(_NamedRegistry[Callable[..., P]]):
    """Factories by name, each building an instance of ``base``."""

    base: ClassVar[type]

    def add(self, name: str, factory: Callable[..., P]) -> None:
        """Register ``factory``, which builds the instance users get, under ``name``.

        Raises:
            PluginValidationError: bad name, ``factory`` not callable, or a class that does
                not subclass the interface or leaves abstract methods unimplemented.
            PluginConflictError: another plugin already uses the name.
        """
        name = self._check_name(name, f"a {self.kind} name")
        base = self.base
        candidate: object = factory  # checked as an object so the stored type stays precise
        if isinstance(candidate, type):
            if not issubclass(candidate, base):
                raise self._invalid(
                    f"{self.kind} {name!r}: class {_qualname(candidate)} is not a subclass of "
                    f"{base.__module__}.{base.__qualname__}"
                )
            missing = _abstract_methods(candidate)
            if missing:
                raise self._invalid(
                    f"{self.kind} {name!r}: class {_qualname(candidate)} leaves abstract "
                    f"methods unimplemented: {', '.join(missing)}. Implement them before "
                    "registering it."
                )
        elif not callable(candidate):
            raise self._invalid(
                f"{self.kind} {name!r}: the factory must be callable (a class or a function "
                f"returning a {base.__qualname__}), got {factory!r}"
            )
        self._store(name, factory)


class BusRegistry(_FactoryRegistry[Bus]):
    """Bus factories by name; passed to ``perun_register_buses``."""

    kind = "bus"
    base = Bus


class PersisterRegistry(_FactoryRegistry[Persister]):
    """Persister factories by name; passed to ``perun_register_persisters``."""

    kind = "persister"
    base = Persister


@dataclass(frozen=True, slots=True)
class Command:
    """A subcommand of ``perun`` that a plugin provides.

    Attributes:
        name: what users type after ``perun`` (``perun eth ...``).
        run: called with the parsed arguments; returns the exit status (``None`` means 0)
            or an awaitable of it (an ``async def`` runner).
        configure: adds the command's arguments to its ``argparse`` sub-parser.
        help: the one-line summary ``perun --help`` shows.
    """

    name: str
    run: CommandRunner
    configure: Callable[[argparse.ArgumentParser], None] | None = None
    help: str = ""


class CommandRegistry(_NamedRegistry[Command]):
    """Subcommands of ``perun`` by name; passed to ``perun_register_commands``."""

    kind = "command"

    def add(
        self,
        name: str,
        run: CommandRunner,
        *,
        configure: Callable[[argparse.ArgumentParser], None] | None = None,
        help: str = "",
    ) -> Command:
        """Register the subcommand ``perun <name>``.

        Args:
            name: the command name (no whitespace or commas, not starting with ``-``).
            run: ``run(args)`` with the parsed :class:`argparse.Namespace`; returns the exit
                status (``None``: 0) or, for an ``async def`` runner, a coroutine of it.
            configure: ``configure(parser)`` adds the command's arguments (and, if it wants,
                its own sub-commands) to the sub-parser ``perun`` made for it.
            help: the one-line summary listed by ``perun --help``.

        Returns:
            The registered :class:`Command`.

        Raises:
            PluginValidationError: bad name, or ``run``/``configure`` not callable.
            PluginConflictError: the name is built into ``perun`` or another plugin has it.
        """
        name = self._check_name(name, "a command name")
        if name.startswith("-"):
            raise self._invalid(f"command name {name!r} must not start with '-'")
        if name in BUILTIN_COMMANDS:
            raise PluginConflictError(
                f"plugin {self._current!r} registers the command {name!r}, which is built "
                f"into perun (reserved: {', '.join(sorted(BUILTIN_COMMANDS))}). Rename it."
            )
        if not callable(run):
            raise self._invalid(f"command {name!r}: run must be callable, got {run!r}")
        if configure is not None and not callable(configure):
            raise self._invalid(
                f"command {name!r}: configure must be callable or None, got {configure!r}"
            )
        cmd = Command(name, run, configure, str(help))
        self._store(name, cmd)
        return cmd
