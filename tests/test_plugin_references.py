"""Registrations by reference and the loader's advice when a name is missing.

Scenarios: a plugin registers its backend as ``"module:Class"`` so that loading it imports
nothing; the module is imported on the first lookup and checked then; ``perun plugins
--check`` finds a broken reference up front. A user mistypes a name, or asks for a plugin
that is installed but filtered out by ``PERUN_PLUGINS``/``PERUN_DISABLE_PLUGINS``.
"""

from __future__ import annotations

import sys
import textwrap
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from perun_core import hookimpl
from perun_core.cli import main
from perun_core.errors import PluginError, PluginNotFoundError, PluginValidationError
from perun_core.interfaces import ChainBackend
from perun_core.plugins import ENV_BLOCK, ENV_ONLY, Plugins, load_plugins
from perun_core.registry import BusRegistry, ChainRegistry, PersisterRegistry


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_ONLY, raising=False)
    monkeypatch.delenv(ENV_BLOCK, raising=False)


@pytest.fixture
def impl_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """Write a module of implementations on ``sys.path``; returns its (unique) name."""
    names: list[str] = []

    def make(source: str) -> str:
        name = f"_impl_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    yield make
    for name in names:
        sys.modules.pop(name, None)


CHAIN_MODULE = """
    from perun_core.errors import NotSupportedError
    from perun_core.interfaces import ChainBackend

    def _refuse(self, *args):
        raise NotSupportedError("fake")

    body = {{"name": "{name}"}}
    for meth in ChainBackend.__abstractmethods__:
        body[meth] = classmethod(lambda cls, config: cls()) if meth == "from_config" else _refuse
    Lazy = type("Lazy", (ChainBackend,), body)
    NotABackend = int
"""


def _plugin(**hooks: Callable[..., Any]) -> types.ModuleType:
    mod = types.ModuleType("refs_plugin")
    for attr, fn in hooks.items():
        setattr(mod, attr, fn)
    return mod


def _chain_plugin(target: str, name: str) -> types.ModuleType:
    @hookimpl
    def perun_register_chains(registry: ChainRegistry) -> None:
        registry.add(target, name=name)

    return _plugin(perun_register_chains=perun_register_chains)


def _load(*extra: tuple[str, object]) -> Plugins:
    return load_plugins(entry_points=False, extra=extra)


# --- references --------------------------------------------------------------------------------


def test_a_reference_is_imported_on_first_lookup_only(impl_module: Callable[..., str]) -> None:
    module = impl_module(CHAIN_MODULE.format(name="lazy"))
    plugins = _load(("lazyp", _chain_plugin(f"{module}:Lazy", "lazy")))
    assert plugins.chains.names() == ["lazy"]
    assert plugins.chains.provider_of("lazy") == "lazyp"
    assert [i.chains for i in plugins.plugins_info() if i.name == "lazyp"] == [("lazy",)]
    assert module not in sys.modules  # loading and listing imported nothing
    assert not plugins.chains.is_loaded("lazy")
    backend = plugins.chain("lazy")
    assert module in sys.modules and plugins.chains.is_loaded("lazy")
    assert issubclass(backend, ChainBackend) and backend.name == "lazy"
    assert plugins.chain("lazy") is backend  # resolved once


@pytest.mark.parametrize(
    ("attr", "name", "error", "needle"),
    [
        ("Missing", "lazy", PluginError, "cannot load chain backend 'lazy' from"),
        ("NotABackend", "lazy", PluginValidationError, "is not a subclass of"),
        ("Lazy", "other", PluginValidationError, "registered as 'other', but"),
    ],
)
def test_a_broken_reference_fails_at_lookup_naming_the_plugin(
    impl_module: Callable[..., str], attr: str, name: str, error: type[Exception], needle: str
) -> None:
    module = impl_module(CHAIN_MODULE.format(name="lazy"))
    plugins = _load(("brokenp", _chain_plugin(f"{module}:{attr}", name)))
    with pytest.raises(error, match=needle) as info:
        plugins.chain(name)
    assert "plugin 'brokenp'" in str(info.value)
    assert list(plugins.check()) == [f"chain backend {name}"]


def test_a_reference_to_a_module_that_is_not_installed_says_how_to_skip_it() -> None:
    plugins = _load(("gone", _chain_plugin("perun_no_such_module.backend:Backend", "gone")))
    with pytest.raises(PluginError) as info:
        plugins.chain("gone")
    assert "No module named 'perun_no_such_module'" in str(info.value)
    assert "PERUN_DISABLE_PLUGINS=gone" in str(info.value)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


@pytest.mark.parametrize("target", ["no_colon", "a.b:", ":Name", "a b:C", "a:b:c", "1mod:X"])
def test_malformed_references_are_refused_when_registered(target: str) -> None:
    for registry in (BusRegistry(), PersisterRegistry()):
        with pytest.raises(PluginValidationError, match="is not a reference of the form"):
            registry.add("x", target)
        assert registry.names() == []
    with pytest.raises(PluginValidationError, match="is not a reference of the form"):
        ChainRegistry().add(target, name="x")


def test_factories_by_reference_resolve_to_the_class() -> None:
    from perun_core.persistence.memory import MemoryPersister

    registry = PersisterRegistry()
    registry.add("mem", "perun_core.persistence.memory:MemoryPersister")
    registry.add("bad", "perun_core.wire.local_bus:LocalBus")  # a bus, not a persister
    assert registry.get("mem") is MemoryPersister
    failed = registry.resolve_all()
    assert list(failed) == ["bad"] and "is not a subclass of" in str(failed["bad"])


def test_every_first_party_registration_resolves() -> None:
    """What ``perun plugins --check`` checks, for the plugins installed here."""
    plugins = load_plugins()
    assert plugins.check() == {}
    assert "local" in plugins.buses and "memory" in plugins.persisters


# --- advice when a name is missing ------------------------------------------------------------


STORE_PLUGIN = """
    from perun_core import hookimpl

    @hookimpl
    def perun_register_persisters(registry):
        registry.add("{name}", "perun_core.persistence.memory:MemoryPersister")
"""


@pytest.fixture
def store_dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Installed-looking distributions perun-alpha and perun-beta, whose plugins register
    the persisters ``alpha`` and ``beta``."""
    mods = []
    for name in ("alpha", "beta"):
        mod = f"_refs_{name}_{uuid.uuid4().hex[:8]}"
        root = tmp_path / mod
        root.mkdir()
        (root / f"{mod}.py").write_text(textwrap.dedent(STORE_PLUGIN.format(name=name)))
        info = root / f"perun_{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: perun-{name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[perun]\n{name} = {mod}\n")
        monkeypatch.syspath_prepend(str(root))
        mods.append(mod)
    yield
    for mod in mods:
        sys.modules.pop(mod, None)


def test_a_plugin_filtered_out_by_the_allow_list_is_named_as_such(
    store_dists: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_ONLY, "beta")
    with pytest.raises(PluginNotFoundError) as info:
        load_plugins().persister("alpha")
    assert str(info.value) == (
        "No persister 'alpha'. Installed: beta, memory. A plugin 'alpha' is installed but "
        "was not loaded: not in the allow-list PERUN_PLUGINS=beta."
    )
    assert "pip install" not in str(info.value)


def test_a_plugin_filtered_out_by_the_block_list_is_named_as_such(
    store_dists: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_BLOCK, "alpha")
    with pytest.raises(PluginNotFoundError, match="blocked by PERUN_DISABLE_PLUGINS=alpha"):
        load_plugins().persister("alpha")
    with pytest.raises(PluginNotFoundError, match=r"blocked by block=\['beta'\]"):
        load_plugins(block=["beta"]).persister("beta")


def test_a_filtered_out_command_is_named_as_such(
    store_dists: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``perun alpha`` where the plugin exists but PERUN_PLUGINS leaves it out."""
    monkeypatch.setenv(ENV_ONLY, "beta")
    assert main(["alpha"]) == 2
    err = capsys.readouterr().err
    assert "is installed but was not loaded: not in the allow-list PERUN_PLUGINS=beta" in err


@pytest.mark.parametrize(
    ("lookup", "typo", "meant"),
    [("persister", "memroy", "memory"), ("bus", "locl", "local"), ("persister", "alhpa", "alpha")],
)
def test_a_typo_gets_the_closest_installed_name(
    store_dists: None, lookup: str, typo: str, meant: str
) -> None:
    plugins = load_plugins(only=["alpha", "beta"])
    with pytest.raises(PluginNotFoundError) as info:
        getattr(plugins, lookup)(typo)
    assert str(info.value).endswith(f"Did you mean {meant!r}?")
    assert info.value.suggestion == meant


def test_a_typo_in_the_allow_list_gets_the_closest_plugin(
    store_dists: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_ONLY, "alpha,betta")
    with pytest.raises(PluginNotFoundError, match=r"No plugin 'betta'\..* Did you mean 'beta'\?$"):
        load_plugins()


def test_an_unrelated_name_gets_both_install_commands() -> None:
    with pytest.raises(PluginNotFoundError) as info:
        _load().chain("cardano")
    assert str(info.value).endswith(
        "Install it with: pip install perun-cardano "
        "(from a perun-py source tree: pip install ./plugins/perun-cardano)"
    )
    assert info.value.suggestion is None
