"""Typed registries handed to the registration hooks.

Each registry maps a name to what one plugin provides: a :class:`ChainBackend` class, a
:class:`Bus` or :class:`Persister` class (built by name from its typed ``Config`` with
``await registry.open(name, config, account=..., backend=...)``; a plain factory function
is still accepted but cannot be built from a configuration), or a :class:`Command` of the
``perun`` command line. A registry validates every entry, so a broken plugin fails with a
message naming it:

- names are non-empty strings without whitespace or commas (they appear in environment lists);
- a chain backend is a ``ChainBackend`` subclass with a ``name`` and no abstract methods left;
- a factory is callable; a factory that is a class must subclass ``Bus``/``Persister`` and
  implement every abstract method;
- a name registered twice is a :class:`~perun_core.errors.PluginConflictError` naming both
  plugins.

An entry may be given as a *reference* instead of the object: a string
``"package.module:Name"`` (the entry-point notation). Its module is imported the first time
the entry is looked up, and the entry is validated then; until then only its name is known.
Loading plugins therefore costs nothing for implementations that are never used (web3 for
``eth``, plyvel for ``leveldb``), and ``perun plugins`` stays fast. :meth:`resolve_all`
imports and validates every entry at once (``perun plugins --check``).

The plugin loader tells a registry which plugin is registering (:meth:`registering_as`), so
the registry can name the provider of each entry in errors and in ``perun plugins``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar, cast

from perun_core.errors import (
    PerunError,
    PluginConflictError,
    PluginError,
    PluginNotFoundError,
    PluginValidationError,
)

if TYPE_CHECKING:
    from perun_core.channel.app import AppDefinition
    from perun_core.interfaces.bus import Bus
    from perun_core.interfaces.chain import ChainBackend
    from perun_core.interfaces.persister import Persister
    from perun_core.interfaces.wallet import Account
    from perun_core.parts import PartConfig

__all__ = [
    "BUILTIN_COMMANDS",
    "AppCatalog",
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

BusFactory = Callable[..., "Bus"]
"""Builds a bus from keyword options (the class itself or a function)."""

PersisterFactory = Callable[..., "Persister"]
"""Builds a persister from keyword options (the class itself or a function)."""

CommandRunner = Callable[[argparse.Namespace], int | Awaitable[int | None] | None]
"""Runs a plugin command with its parsed arguments; returns the exit status (``None``: 0).
A coroutine function is run with :func:`asyncio.run`."""

BUILTIN_COMMANDS: Final = frozenset({"plugins"})
"""Subcommand names the ``perun`` command keeps for itself."""

DIRECT = "(direct)"
"""Provider label of entries added outside a plugin hook (e.g. by a test or an application)."""

_REFERENCE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


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


@dataclass(frozen=True, slots=True)
class _Reference:
    """An entry registered as ``"module:attribute"``, not imported yet."""

    target: str


class _NamedRegistry(Generic[T]):
    """A name -> entry mapping that records which plugin added each entry."""

    kind: ClassVar[str] = "entry"
    """What the entries are, for messages ("chain backend", "bus", "persister")."""

    def __init__(self) -> None:
        self._entries: dict[str, T | _Reference] = {}
        self._providers: dict[str, str] = {}
        self._current = DIRECT
        self._skipped: dict[str, str] = {}

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
        """The plugin that registered ``name`` (its module is not imported).

        Raises:
            PluginNotFoundError: nothing is registered under ``name``.
        """
        if name not in self._entries:
            raise self._not_found(name)
        return self._providers[name]

    def registered_by(self, plugin: str) -> list[str]:
        """The names ``plugin`` registered, in registration order."""
        return [n for n, p in self._providers.items() if p == plugin]

    def note_skipped(self, skipped: dict[str, str]) -> None:
        """Installed plugins that were not loaded, with the reason; a failed lookup of a
        name one of them would provide says so instead of suggesting an install."""
        self._skipped = dict(skipped)

    # --- lookups -------------------------------------------------------------------------

    def get(self, name: str) -> T:
        """The entry registered under ``name``; a reference is imported and validated now.

        Raises:
            PluginNotFoundError: nothing is registered under ``name``; the message lists the
                installed names and says how to get the missing one.
            PluginError: a referenced module cannot be imported.
            PluginValidationError: a referenced object is not a valid entry.
        """
        try:
            entry = self._entries[name]
        except KeyError:
            raise self._not_found(name) from None
        if isinstance(entry, _Reference):
            obj = self._resolve(name, entry)
            self._entries[name] = obj
            return obj
        return entry

    def resolve_all(self) -> dict[str, PerunError]:
        """Import and validate every entry registered as a reference.

        Returns:
            The names whose reference failed, with the error (empty: all good).
        """
        failed: dict[str, PerunError] = {}
        for name in self.names():
            try:
                self.get(name)
            except PerunError as exc:
                failed[name] = exc
        return failed

    def is_loaded(self, name: str) -> bool:
        """Whether ``name``'s implementation is imported (``False`` for a reference not
        looked up yet)."""
        return name in self._entries and not isinstance(self._entries[name], _Reference)

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

    def _not_found(self, name: str) -> PluginNotFoundError:
        return PluginNotFoundError(self.kind, name, self.names(), skipped=self._skipped)

    def _invalid(self, message: str, plugin: str | None = None) -> PluginValidationError:
        return PluginValidationError(f"plugin {plugin or self._current!r}: {message}")

    def _check_name(self, name: object, what: str) -> str:
        if not isinstance(name, str) or not name:
            raise self._invalid(f"{what} must be a non-empty string, got {name!r}")
        if any(ch.isspace() for ch in name) or "," in name:
            raise self._invalid(f"{what} {name!r} must not contain whitespace or commas")
        return name

    def _reference(self, name: str, target: str) -> _Reference:
        if not _REFERENCE.match(target):
            raise self._invalid(
                f"{self.kind} {name!r}: {target!r} is not a reference of the form "
                "'package.module:Name'"
            )
        return _Reference(target)

    def _resolve(self, name: str, ref: _Reference) -> T:
        """Import ``ref`` and validate what it names, as :meth:`add` would have."""
        plugin = self._providers[name]
        module_name, _, attr = ref.target.partition(":")
        try:
            obj: object = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            raise PluginError(
                f"plugin {plugin!r} cannot load {self.kind} {name!r} from {ref.target!r}: "
                f"{type(exc).__name__}: {exc}. Reinstall or fix it, or skip it with "
                f"PERUN_DISABLE_PLUGINS={plugin}."
            ) from exc
        return self._validate(name, obj, plugin)

    def _validate(self, name: str, obj: object, plugin: str) -> T:
        """Check ``obj`` as an entry registered under ``name`` by ``plugin``."""
        raise NotImplementedError

    def _store(self, name: str, entry: T | _Reference) -> None:
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


class ChainRegistry(_NamedRegistry["type[ChainBackend]"]):
    """Chain backends by name; passed to ``perun_register_chains``."""

    kind = "chain backend"

    def add(self, cls: type[ChainBackend] | str, /, *, name: str | None = None) -> None:
        """Register a :class:`~perun_core.interfaces.ChainBackend` subclass.

        Args:
            cls: the class, or a reference ``"package.module:ClassName"`` imported on the
                first lookup (keeps loading the plugin cheap).
            name: the name users select it by; required with a reference, else taken from
                ``cls.name`` (and, if given, it must equal it).

        Raises:
            PluginValidationError: ``cls`` is not a ``ChainBackend`` subclass, has no valid
                ``name`` (or one other than ``name``), or leaves abstract methods
                unimplemented (they are named); a reference without ``name`` or malformed.
            PluginConflictError: another backend already uses the name.
        """
        if isinstance(cls, str):
            if name is None:
                raise self._invalid(
                    f"chain backend reference {cls!r} needs its name: add({cls!r}, name=...)"
                )
            name = self._check_name(name, "a chain backend name")
            self._store(name, self._reference(name, cls))
            return
        checked = self._validate(name, cls, self._current)
        self._store(checked.name, checked)

    def _validate(self, name: str | None, obj: object, plugin: str) -> type[ChainBackend]:
        from perun_core.interfaces.chain import ChainBackend

        if not (isinstance(obj, type) and issubclass(obj, ChainBackend)):
            raise self._invalid(
                f"registered {obj!r} as a chain backend, but it is not a subclass of "
                "perun_core.interfaces.ChainBackend",
                plugin,
            )
        own = getattr(obj, "name", None)
        what = f"the 'name' class attribute of {_qualname(obj)}"
        if not isinstance(own, str) or not own:
            raise self._invalid(f"{what} must be a non-empty string, got {own!r}", plugin)
        if any(ch.isspace() for ch in own) or "," in own:
            raise self._invalid(f"{what} {own!r} must not contain whitespace or commas", plugin)
        if name is not None and own != name:
            raise self._invalid(
                f"chain backend registered as {name!r}, but {what} is {own!r}", plugin
            )
        missing = _abstract_methods(obj)
        if missing:
            raise self._invalid(
                f"chain backend {_qualname(obj)} ({own!r}) leaves abstract methods "
                f"unimplemented: {', '.join(missing)}. Implement them before registering it.",
                plugin,
            )
        return obj


class _FactoryRegistry(_NamedRegistry[Callable[..., P]]):
    """Factories by name, each building an instance of ``base``."""

    @classmethod
    def _base(cls) -> type:
        raise NotImplementedError

    def add(self, name: str, factory: Callable[..., P] | str) -> None:
        """Register ``factory``, which builds the instance users get, under ``name``.

        Args:
            name: the name users select it by.
            factory: a class or function, or a reference ``"package.module:Name"``
                imported on the first lookup (keeps loading the plugin cheap).

        Raises:
            PluginValidationError: bad name, ``factory`` not callable, a class that does
                not subclass the interface or leaves abstract methods unimplemented, or a
                malformed reference.
            PluginConflictError: another plugin already uses the name.
        """
        name = self._check_name(name, f"a {self.kind} name")
        if isinstance(factory, str):
            self._store(name, self._reference(name, factory))
            return
        self._store(name, self._validate(name, factory, self._current))

    def _validate(self, name: str, obj: object, plugin: str) -> Callable[..., P]:
        base = self._base()
        if isinstance(obj, type):
            if not issubclass(obj, base):
                raise self._invalid(
                    f"{self.kind} {name!r}: class {_qualname(obj)} is not a subclass of "
                    f"{base.__module__}.{base.__qualname__}",
                    plugin,
                )
            missing = _abstract_methods(obj)
            if missing:
                raise self._invalid(
                    f"{self.kind} {name!r}: class {_qualname(obj)} leaves abstract "
                    f"methods unimplemented: {', '.join(missing)}. Implement them before "
                    "registering it.",
                    plugin,
                )
        elif not callable(obj):
            raise self._invalid(
                f"{self.kind} {name!r}: the factory must be callable (a class or a function "
                f"returning a {base.__qualname__}), got {obj!r}",
                plugin,
            )
        return cast("Callable[..., P]", obj)

    def part_class(self, name: str) -> type[P]:
        """The class registered as ``name``, whose ``open(config, *, account, backend)``
        builds it from its typed configuration.

        Raises:
            PluginNotFoundError: nothing is registered under ``name``.
            PluginValidationError: ``name`` is registered as a factory function, which has
                no typed configuration (register the class instead).
        """
        entry = self.get(name)
        if not isinstance(entry, type):
            raise PluginValidationError(
                f"plugin {self._providers[name]!r}: {self.kind} {name!r} is registered as the "
                f"function {_qualname(entry)}, which cannot be built from a configuration; "
                f"register its {self._base().__qualname__} subclass instead"
            )
        return cast("type[P]", entry)

    async def open(
        self,
        name: str,
        config: PartConfig | Mapping[str, Any] | None = None,
        *,
        account: Account | None = None,
        backend: ChainBackend | None = None,
    ) -> P:
        """Build the bus or persister registered as ``name`` from its configuration.

        Args:
            name: the registered name.
            config: the class's ``Config``, a mapping of its fields or ``None`` (defaults).
            account: the account of the client that will use it.
            backend: the chain backend of that client.

        Raises:
            PluginNotFoundError: nothing is registered under ``name``.
            PluginValidationError: ``name`` is registered as a factory function.
            ConfigError: the configuration does not fit the class's ``Config``.
        """
        cls: Any = self.part_class(name)
        part: P = await cls.open(config, account=account, backend=backend)
        return part


class BusRegistry(_FactoryRegistry["Bus"]):
    """Bus factories by name; passed to ``perun_register_buses``."""

    kind = "bus"

    @classmethod
    def _base(cls) -> type:
        from perun_core.interfaces.bus import Bus

        return Bus


class PersisterRegistry(_FactoryRegistry["Persister"]):
    """Persister factories by name; passed to ``perun_register_persisters``."""

    kind = "persister"

    @classmethod
    def _base(cls) -> type:
        from perun_core.interfaces.persister import Persister

        return Persister


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

    def _validate(self, name: str, obj: object, plugin: str) -> Command:
        # Commands are registered as objects (their module is the light plugin module).
        if not isinstance(obj, Command):
            raise self._invalid(f"command {name!r}: {obj!r} is not a Command", plugin)
        return obj


class AppCatalog(_NamedRegistry["AppDefinition"]):
    """Apps by name; passed to ``perun_register_apps``.

    An app plugin adds an :class:`~perun_core.channel.app.AppDefinition` (or a reference
    ``"package.module:DEFINITION"`` to one, imported on first use)::

        @hookimpl
        def perun_register_apps(registry):
            registry.add("tictactoe", "perun_apps.tictactoe:DEFINITION")
    """

    kind = "app"

    def add(self, name: str, definition: AppDefinition | str) -> None:
        """Register the app ``name``.

        Raises:
            PluginValidationError: bad name, or not an ``AppDefinition`` named ``name``.
            PluginConflictError: another plugin registered an app of that name.
        """
        name = self._check_name(name, "an app name")
        if isinstance(definition, str):
            self._store(name, self._reference(name, definition))
        else:
            self._store(name, self._validate(name, definition, self._current))

    def definitions(self) -> dict[str, AppDefinition]:
        """Every registered app, imported and validated, by name."""
        return {name: self.get(name) for name in self.names()}

    def _validate(self, name: str, obj: object, plugin: str) -> AppDefinition:
        from perun_core.channel.app import AppDefinition

        if not isinstance(obj, AppDefinition):
            raise self._invalid(f"app {name!r}: {obj!r} is not an AppDefinition", plugin)
        if obj.name != name:
            raise self._invalid(f"app {name!r}: the definition is named {obj.name!r}", plugin)
        if not callable(obj.rules):
            raise self._invalid(f"app {name!r}: rules must be callable", plugin)
        return obj
