"""Finding, loading and validating plugins.

Quick start::

    from perun_core.plugins import load_plugins

    plugins = load_plugins()                    # builtins + every installed `perun` entry point
    Backend = plugins.chain("sim")              # a ChainBackend subclass
    backend = Backend.from_config({})
    persister = plugins.persister("memory")()   # factories build instances
    print([p.name for p in plugins.plugins_info()])

Selecting plugins:

- ``PERUN_PLUGINS=sim,tcp`` loads only those entry points (``builtins`` always loads);
  ``load_plugins(only=[...])`` replaces the environment variable.
- ``PERUN_DISABLE_PLUGINS=eth`` skips those; ``load_plugins(block=[...])`` adds to it.
- ``load_plugins(entry_points=False, extra=[("mine", module)])`` ignores installed
  distributions and loads in-memory plugin objects (tests, embedded applications).

There is no module-level plugin manager: every :func:`load_plugins` call builds a fresh one,
so two applications (or two tests) in one process never share registrations. Loading has no
side effects beyond importing the plugin modules (which stay light: implementations are
registered as references and imported on first use); a plugin that changes the process,
such as perun-loguru routing the logging, does so only when the application calls
:meth:`Plugins.configure`.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from perun_core import hookspecs
from perun_core.errors import (
    PerunError,
    PluginConflictError,
    PluginError,
    PluginNotFoundError,
    PluginValidationError,
)
from perun_core.registry import (
    AppCatalog,
    BusFactory,
    BusRegistry,
    ChainRegistry,
    Command,
    CommandRegistry,
    PersisterFactory,
    PersisterRegistry,
)

if TYPE_CHECKING:
    from perun_core.channel.app import AppDefinition
    from perun_core.interfaces.chain import ChainBackend

__all__ = [
    "BUILTINS",
    "ENTRY_POINT_GROUP",
    "ENV_BLOCK",
    "ENV_ONLY",
    "PluginInfo",
    "Plugins",
    "hook_names",
    "load_plugins",
]

ENTRY_POINT_GROUP = "perun"
"""The entry-point group plugins are declared in."""

BUILTINS = "builtins"
"""Name of the core's own plugin (bus ``local``, persister ``memory``)."""

ENV_ONLY = "PERUN_PLUGINS"
"""Environment variable: comma-separated allow-list of plugins to load."""

ENV_BLOCK = "PERUN_DISABLE_PLUGINS"
"""Environment variable: comma-separated list of plugins not to load."""

_BUILTINS_MODULE = "perun_core.builtins.plugin"
_CORE_DIST = "perun-core"


def hook_names() -> list[str]:
    """The names of every hook specified in :mod:`perun_core.hookspecs`, sorted."""
    return sorted(
        name
        for name, obj in vars(hookspecs).items()
        if name.startswith("perun_") and inspect.isfunction(obj)
    )


def _normalize(name: str) -> str:
    """A plugin name as users may write it: ``perun-sim`` / ``Sim`` -> ``sim``."""
    n = name.strip().lower()
    for prefix in ("perun-", "perun_"):
        if n.startswith(prefix) and len(n) > len(prefix):
            n = n[len(prefix) :]
    return n


def _split(text: str) -> list[str]:
    return [_normalize(part) for part in text.split(",") if part.strip()]


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """What ``perun plugins`` shows about one loaded plugin.

    Attributes:
        name: the plugin name (the entry-point name, or the name given to ``extra``).
        distribution: the distribution that declares it (``None`` for in-memory plugins).
        version: that distribution's version.
        module: the entry-point target (``perun_sim.plugin``) or the object's module.
        hooks: the hooks it implements.
        chains / buses / persisters / commands / apps: the names it registered.
    """

    name: str
    distribution: str | None
    version: str | None
    module: str
    hooks: tuple[str, ...] = ()
    chains: tuple[str, ...] = ()
    buses: tuple[str, ...] = ()
    persisters: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()

    @property
    def registrations(self) -> list[str]:
        """One ``"kind: name"`` string per registration, e.g. ``["chain: sim"]``."""
        return (
            [f"chain: {n}" for n in self.chains]
            + [f"bus: {n}" for n in self.buses]
            + [f"persister: {n}" for n in self.persisters]
            + [f"command: {n}" for n in self.commands]
            + [f"app: {n}" for n in self.apps]
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (``perun plugins --json``)."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "hooks": list(self.hooks),
            "registers": {
                "chain": list(self.chains),
                "bus": list(self.buses),
                "persister": list(self.persisters),
                "command": list(self.commands),
                "app": list(self.apps),
            },
        }


@dataclass(frozen=True, slots=True)
class _Source:
    """Where a plugin comes from, before it is loaded."""

    name: str
    load: Callable[[], object] = field(repr=False)
    distribution: str | None
    version: str | None
    module: str

    def describe(self) -> str:
        """``'sim' (perun-sim 0.1.0)`` for messages."""
        if self.distribution is None:
            return f"{self.name!r}"
        return f"{self.name!r} (distribution {self.distribution} {self.version or '?'})"


class Plugins:
    """The loaded plugins: a typed facade over the pluggy manager and the registries.

    Build it with :func:`load_plugins`. Lookups raise
    :class:`~perun_core.errors.PluginNotFoundError` listing what is installed.
    """

    def __init__(
        self,
        manager: pluggy.PluginManager,
        sources: Mapping[str, _Source],
        skipped: Mapping[str, str],
    ) -> None:
        self._pm = manager
        self._sources = dict(sources)  # in load order
        self._skipped = dict(skipped)
        self._chains = ChainRegistry()
        self._buses = BusRegistry()
        self._persisters = PersisterRegistry()
        self._commands = CommandRegistry()
        self._apps = AppCatalog()

    # --- lookups -------------------------------------------------------------------------

    def chain(self, name: str) -> type[ChainBackend]:
        """The chain backend class registered as ``name``."""
        return self._chains.get(name)

    def bus(self, name: str) -> BusFactory:
        """The bus factory registered as ``name``."""
        return self._buses.get(name)

    def persister(self, name: str) -> PersisterFactory:
        """The persister factory registered as ``name``."""
        return self._persisters.get(name)

    def command(self, name: str) -> Command:
        """The ``perun`` subcommand registered as ``name``."""
        return self._commands.get(name)

    @property
    def chains(self) -> ChainRegistry:
        """Every registered chain backend."""
        return self._chains

    @property
    def buses(self) -> BusRegistry:
        """Every registered bus factory."""
        return self._buses

    @property
    def persisters(self) -> PersisterRegistry:
        """Every registered persister factory."""
        return self._persisters

    @property
    def commands(self) -> CommandRegistry:
        """Every registered ``perun`` subcommand."""
        return self._commands

    @property
    def apps(self) -> AppCatalog:
        """Every registered channel app."""
        return self._apps

    @property
    def manager(self) -> pluggy.PluginManager:
        """The underlying pluggy manager (for hooks beyond the built-in ones)."""
        return self._pm

    @property
    def skipped(self) -> dict[str, str]:
        """Installed plugins that were not loaded, with the reason."""
        return dict(self._skipped)

    def check(self) -> dict[str, PerunError]:
        """Import and validate every registration made by reference (loading the plugins
        does not: a reference is resolved on its first lookup).

        Returns:
            ``"<kind> <name>"`` of each registration that failed, with its error (empty:
            every registration is usable).
        """
        failed: dict[str, PerunError] = {}
        for registry in (self._chains, self._buses, self._persisters, self._commands, self._apps):
            for name, exc in registry.resolve_all().items():
                failed[f"{registry.kind} {name}"] = exc
        return failed

    def names(self) -> list[str]:
        """Names of the loaded plugins, in load order."""
        return list(self._sources)

    def plugins_info(self) -> list[PluginInfo]:
        """One record per loaded plugin, in load order."""
        out = []
        for name, src in self._sources.items():
            plugin = self._pm.get_plugin(name)
            hooks = sorted(h.name for h in self._pm.get_hookcallers(plugin) or ())
            out.append(
                PluginInfo(
                    name=name,
                    distribution=src.distribution,
                    version=src.version,
                    module=src.module,
                    hooks=tuple(hooks),
                    chains=tuple(self._chains.registered_by(name)),
                    buses=tuple(self._buses.registered_by(name)),
                    persisters=tuple(self._persisters.registered_by(name)),
                    commands=tuple(self._commands.registered_by(name)),
                    apps=tuple(self._apps.registered_by(name)),
                )
            )
        return out

    # --- hooks ---------------------------------------------------------------------------

    def configure(self, config: Mapping[str, Any] | None = None) -> None:
        """Call ``perun_configure(config)`` on every plugin (load order).

        :func:`load_plugins` never calls it: a plugin that changes the process (perun-loguru
        routes the framework's logging) does so only when the application asks, here.

        Args:
            config: the user's configuration (the ``[perun]`` table); ``None`` means ``{}``.

        Raises:
            PluginError: a plugin's hook raised something other than a ``PerunError``.
        """
        self._call_each("perun_configure", None, config=dict(config or {}))

    def register_all(self) -> None:
        """Run every plugin's registration hooks into this facade's registries (once, by
        :func:`load_plugins`)."""
        for registry in (self._chains, self._buses, self._persisters, self._commands, self._apps):
            registry.note_skipped(self._skipped)
        self._call_each("perun_register_chains", self._chains)
        self._call_each("perun_register_buses", self._buses)
        self._call_each("perun_register_persisters", self._persisters)
        self._call_each("perun_register_commands", self._commands)
        self._call_each("perun_register_apps", self._apps)

    def _call_each(
        self,
        hook_name: str,
        registry: ChainRegistry
        | BusRegistry
        | PersisterRegistry
        | CommandRegistry
        | AppCatalog
        | None,
        **kwargs: Any,
    ) -> None:
        """Call ``hook_name`` one plugin at a time, in load order.

        A registration hook gets ``registry`` as its ``registry`` argument; other hooks get
        ``kwargs``.

        One call per plugin (instead of one pluggy call for all) lets the registry attribute
        each entry to its plugin, and lets an error name the plugin that raised it.
        """
        if registry is not None:
            kwargs["registry"] = registry
        caller = getattr(self._pm.hook, hook_name)
        implementers = {impl.plugin_name for impl in caller.get_hookimpls()}
        loaded = [(n, p) for n, p in self._pm.list_name_plugin() if p is not None]
        for name in self._sources:
            if name not in implementers:
                continue
            others = [p for n, p in loaded if n != name]
            only_this = self._pm.subset_hook_caller(hook_name, remove_plugins=others)
            ctx: AbstractContextManager[None] = (
                registry.registering_as(name) if registry is not None else nullcontext()
            )
            with ctx:
                try:
                    only_this(**kwargs)
                except PerunError:
                    raise
                except Exception as exc:
                    raise PluginError(
                        f"plugin {self._sources[name].describe()} failed in {hook_name}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc

    def __repr__(self) -> str:
        return f"Plugins({', '.join(self._sources)})"


# --- loading ---------------------------------------------------------------------------------


def _builtins_source() -> _Source:
    try:
        version: str | None = importlib.metadata.version(_CORE_DIST)
    except importlib.metadata.PackageNotFoundError:  # running from an uninstalled checkout
        from perun_core import __version__

        version = __version__
    return _Source(
        name=BUILTINS,
        load=lambda: importlib.import_module(_BUILTINS_MODULE),
        distribution=_CORE_DIST,
        version=version,
        module=_BUILTINS_MODULE,
    )


def _entry_point_sources() -> list[_Source]:
    """Every ``perun`` entry point, sorted by name, with conflicting names rejected."""
    found: dict[str, _Source] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        if ep.name == BUILTINS and ep.value == _BUILTINS_MODULE:
            continue  # loaded directly, so it works from an uninstalled checkout too
        src = _Source(ep.name, ep.load, dist, version, ep.value)
        other = found.get(ep.name)
        if other is not None:
            if other.distribution == dist:
                continue  # the same distribution seen twice on sys.path
            raise PluginConflictError(
                f"two distributions declare the perun plugin {ep.name!r}: "
                f"{other.distribution} {other.version} ({other.module}) and "
                f"{dist} {version} ({ep.value}). Uninstall one of them."
            )
        if ep.name == BUILTINS:
            raise PluginConflictError(
                f"distribution {dist} declares a perun plugin named {BUILTINS!r}, which is "
                "reserved for perun-core. Rename its entry point."
            )
        found[ep.name] = src
    return [found[n] for n in sorted(found)]


def _returning(obj: object) -> Callable[[], object]:
    return lambda: obj


def _extra_sources(extra: Iterable[tuple[str, object]]) -> list[_Source]:
    out = []
    for name, obj in extra:
        if not isinstance(name, str) or not name:
            raise PluginValidationError(f"extra plugin names must be non-empty strings: {name!r}")
        module = getattr(obj, "__name__", None) or type(obj).__module__
        out.append(_Source(name, _returning(obj), None, None, module))
    return out


def _env_list(var: str) -> list[str] | None:
    value = os.environ.get(var)
    return None if value is None else _split(value)


def _check_functions(pm: pluggy.PluginManager, src: _Source, plugin: object) -> None:
    """Catch the usual authoring slips before pluggy sees the plugin, with clear messages:
    a ``perun_*`` function without ``@hookimpl`` (pluggy would silently skip it) and a hook
    implementation asking for an argument its hook does not provide."""
    specs = {h: list(inspect.signature(getattr(hookspecs, h)).parameters) for h in hook_names()}
    for attr in dir(plugin):
        value = getattr(plugin, attr, None)
        if not inspect.isroutine(value) or hasattr(value, f"{hookspecs.PROJECT}_spec"):
            continue
        opts = pm.parse_hookimpl_opts(plugin, attr)
        if opts is None:
            if attr.startswith("perun_"):
                raise PluginValidationError(
                    f"plugin {src.describe()} defines {attr}() without @hookimpl, so it would "
                    "never be called. Decorate it with perun_core.hookimpl."
                )
            continue
        hook = opts.get("specname") or attr
        if hook not in specs:
            continue  # unknown hooks are reported by _check_hooks, with a suggestion
        try:
            params = inspect.signature(value).parameters.values()
        except (TypeError, ValueError):  # builtins without a signature: let pluggy judge
            continue
        asked = [
            p.name
            for p in params
            if p.default is p.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name != "self"
        ]
        unknown = [a for a in asked if a not in specs[hook]]
        if unknown:
            raise PluginValidationError(
                f"plugin {src.describe()}: {attr}() asks for {', '.join(unknown)}, but hook "
                f"{hook} provides only: {', '.join(specs[hook])}. Rename the parameter."
            )


def _check_hooks(pm: pluggy.PluginManager, sources: Mapping[str, _Source]) -> None:
    """Fail on implementations of hooks that have no spec (usually a misspelled name)."""
    known = hook_names()
    for hook_name, caller in vars(pm.hook).items():
        if hook_name.startswith("_") or not isinstance(caller, pluggy.HookCaller):
            continue
        if caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            src = sources.get(impl.plugin_name)
            who = src.describe() if src else repr(impl.plugin_name)
            close = difflib.get_close_matches(hook_name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise PluginValidationError(
                f"plugin {who} implements unknown hook {hook_name!r}.{hint} "
                f"Known hooks: {', '.join(known)}."
            )
    try:
        pm.check_pending()  # pluggy's own rule, as a backstop for the loop above
    except pluggy.PluginValidationError as exc:
        flat = " ".join(line.strip() for line in str(exc).splitlines())
        raise PluginValidationError(flat) from exc


def load_plugins(
    only: Iterable[str] | None = None,
    block: Iterable[str] | None = None,
    *,
    entry_points: bool = True,
    extra: Iterable[tuple[str, object]] = (),
) -> Plugins:
    """Load plugins and run their registration hooks.

    Plugins are loaded in this order: ``builtins``, then entry points of the ``perun`` group
    sorted by name, then ``extra`` in the order given. Registration hooks run in that order.
    ``perun_configure`` is not called: that is :meth:`Plugins.configure`, when the
    application wants it, so loading plugins changes nothing in the process.

    Args:
        only: allow-list of entry-point plugin names; when given it *replaces*
            ``PERUN_PLUGINS``. ``None`` means: use ``PERUN_PLUGINS`` if set, else load all.
            ``builtins`` is always loaded. Names may be written as distribution names
            (``perun-sim``).
        block: plugin names not to load; *merged with* ``PERUN_DISABLE_PLUGINS``. A block
            wins over the allow-list. Blocking ``builtins`` is allowed.
        entry_points: scan installed distributions; ``False`` loads only ``builtins`` and
            ``extra``.
        extra: ``(name, plugin)`` pairs of in-memory plugins (a module, class or object
            with ``@hookimpl`` functions); always loaded.

    Returns:
        The loaded :class:`Plugins`.

    Raises:
        PluginNotFoundError: an allow-listed name is not installed.
        PluginConflictError: two plugins share a name, or register the same
            chain/bus/persister/command name.
        PluginValidationError: a plugin implements an unknown hook, defines an unmarked
            ``perun_*`` function, has a hook with wrong arguments, or registers something
            invalid.
        PluginError: a plugin fails to import or its hook raises.
    """
    allow = [_normalize(n) for n in only] if only is not None else _env_list(ENV_ONLY)
    only_src = f"only={allow}" if only is not None else f"{ENV_ONLY}={','.join(allow or ())}"
    blocked_arg = {_normalize(n) for n in block or ()}
    blocked_env = set(_env_list(ENV_BLOCK) or ())

    candidates = [_builtins_source()]
    if entry_points:
        candidates += _entry_point_sources()
    extras = _extra_sources(extra)

    names = [c.name for c in candidates] + [e.name for e in extras]
    if allow is not None:
        missing = [n for n in allow if n not in names]
        if missing:
            raise PluginNotFoundError("plugin", missing[0], names)

    skipped: dict[str, str] = {}
    selected: list[_Source] = []
    for src in candidates:
        if src.name in blocked_arg:
            skipped[src.name] = f"blocked by block={sorted(blocked_arg)}"
        elif src.name in blocked_env:
            skipped[src.name] = f"blocked by {ENV_BLOCK}={os.environ.get(ENV_BLOCK, '')}"
        elif allow is not None and src.name != BUILTINS and src.name not in allow:
            skipped[src.name] = f"not in the allow-list {only_src}"
        else:
            selected.append(src)
    for src in extras:
        if any(s.name == src.name for s in selected) or src.name in skipped:
            raise PluginConflictError(
                f"extra plugin {src.name!r} has the name of an installed plugin; rename it"
            )
        selected.append(src)

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    sources: dict[str, _Source] = {}
    for src in selected:
        try:
            plugin = src.load()
        except Exception as exc:
            raise PluginError(
                f"plugin {src.describe()} failed to load {src.module!r}: "
                f"{type(exc).__name__}: {exc}. Reinstall or fix it, or skip it with "
                f"{ENV_BLOCK}={src.name}."
            ) from exc
        _check_functions(pm, src, plugin)
        try:
            pm.register(plugin, name=src.name)
        except pluggy.PluginValidationError as exc:  # what _check_functions does not cover
            flat = " ".join(line.strip() for line in str(exc).splitlines())
            raise PluginValidationError(f"plugin {src.describe()}: {flat}") from exc
        except ValueError as exc:  # the same object under two names
            raise PluginConflictError(f"plugin {src.describe()}: {exc}") from exc
        sources[src.name] = src
    _check_hooks(pm, sources)

    plugins = Plugins(pm, sources, skipped)
    plugins.register_all()
    return plugins


_INSTALLED_APPS: dict[tuple[str | None, str | None], dict[str, AppDefinition]] = {}


def installed_apps() -> dict[str, AppDefinition]:
    """The apps of the installed plugins, by name (loaded once per plugin selection).

    What a :class:`~perun_core.client.Client` and the sim ledger bind by default, so an app
    plugin works as soon as it is installed. Respects ``PERUN_PLUGINS`` and
    ``PERUN_DISABLE_PLUGINS``.
    """
    key = (os.environ.get(ENV_ONLY), os.environ.get(ENV_BLOCK))
    found = _INSTALLED_APPS.get(key)
    if found is None:
        found = _INSTALLED_APPS[key] = load_plugins().apps.definitions()
    return found
