"""The plugin loader, the registries, the built-ins and ``perun plugins``.

Scenarios: a user asks for a chain nobody installed; two plugins claim the same name; a plugin
author forgets a method, misspells a hook or forgets ``@hookimpl``; an operator narrows the
plugin set with PERUN_PLUGINS / PERUN_DISABLE_PLUGINS; a third-party distribution is found
through its entry point.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import re
import sys
import textwrap
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from perun_core import hookimpl, hookspecs
from perun_core.cli import main
from perun_core.errors import (
    NotSupportedError,
    PluginConflictError,
    PluginError,
    PluginNotFoundError,
    PluginValidationError,
)
from perun_core.interfaces import Bus, ChainBackend, Persister
from perun_core.persistence import MemoryPersister
from perun_core.plugins import ENV_BLOCK, ENV_ONLY, Plugins, hook_names, load_plugins
from perun_core.registry import (
    AppCatalog,
    BusRegistry,
    ChainRegistry,
    CommandRegistry,
    PersisterRegistry,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


HAVE_SIM = has_module("perun_sim.plugin")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without the operator's plugin selection."""
    monkeypatch.delenv(ENV_ONLY, raising=False)
    monkeypatch.delenv(ENV_BLOCK, raising=False)


# --- fakes -----------------------------------------------------------------------------------


def make_chain(name: str, *, leave_open: tuple[str, ...] = ()) -> type[ChainBackend]:
    """A ChainBackend subclass named ``name``; ``leave_open`` methods stay abstract."""

    def refuse(self: object, *args: object) -> Any:
        raise NotSupportedError("fake chain")

    body: dict[str, Any] = {"name": name}
    for meth in sorted(ChainBackend.__abstractmethods__):
        if meth in leave_open:
            continue
        if meth == "from_config":
            body[meth] = classmethod(lambda cls, config: cls())
        else:
            body[meth] = refuse
    cls = type(f"FakeChain_{name}", (ChainBackend,), body)
    return cls


def plugin(name: str = "fake_plugin", **hooks: Callable[..., Any]) -> types.ModuleType:
    """An in-memory plugin module with the given attributes (mark them with @hookimpl)."""
    mod = types.ModuleType(name)
    for attr, fn in hooks.items():
        setattr(mod, attr, fn)
    return mod


def chain_plugin(*classes: type[ChainBackend]) -> types.ModuleType:
    @hookimpl
    def perun_register_chains(registry: ChainRegistry) -> None:
        for cls in classes:
            registry.add(cls)

    return plugin(perun_register_chains=perun_register_chains)


def load_only(*extra: tuple[str, object]) -> Plugins:
    """Built-ins plus ``extra``; installed distributions are ignored."""
    return load_plugins(entry_points=False, extra=extra)


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """Create an installed-looking distribution with a ``perun`` entry point.

    ``make_dist(dist, entry, source)`` writes ``<dist>-0.1.dist-info/{METADATA,
    entry_points.txt}`` and a module holding ``source`` into a fresh directory, prepends it to
    ``sys.path`` and returns the module name.
    """
    modules: list[str] = []

    def make(dist: str, entry: str, source: str, *, version: str = "0.1") -> str:
        mod = f"_fake_{entry}_{uuid.uuid4().hex[:8]}"
        root = tmp_path / mod
        root.mkdir()
        (root / f"{mod}.py").write_text(textwrap.dedent(source))
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[perun]\n{entry} = {mod}\n")
        monkeypatch.syspath_prepend(str(root))
        modules.append(mod)
        return mod

    yield make
    for mod in modules:
        sys.modules.pop(mod, None)


STORE_PLUGIN = """
    from perun_core import hookimpl
    from perun_core.persistence.memory import MemoryPersister

    @hookimpl
    def perun_register_persisters(registry):
        registry.add("{name}", MemoryPersister)
"""


@pytest.fixture
def two_dists(make_dist: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Distributions fake-perun-x (plugin fakex) and fake-perun-y (plugin fakey) installed;
    perun-sim hidden if its plugin module is not written yet."""
    make_dist("fake-perun-x", "fakex", STORE_PLUGIN.format(name="x-store"))
    make_dist("fake-perun-y", "fakey", STORE_PLUGIN.format(name="y-store"))
    if not HAVE_SIM:
        monkeypatch.setenv(ENV_BLOCK, "sim")


# --- lookups and registries ------------------------------------------------------------------


def test_unknown_chain_names_what_is_installed_and_what_to_install() -> None:
    plugins = load_only(("sim_like", chain_plugin(make_chain("sim"))))
    with pytest.raises(PluginNotFoundError) as info:
        plugins.chain("eth")
    assert str(info.value) == (
        "No chain backend 'eth'. Installed: sim. Install it with: pip install perun-eth "
        "(from a perun-py source tree: pip install ./plugins/perun-eth)"
    )
    assert (info.value.kind, info.value.name, info.value.installed) == (
        "chain backend",
        "eth",
        ("sim",),
    )


def test_unknown_bus_and_persister_list_the_builtins() -> None:
    plugins = load_only()
    with pytest.raises(PluginNotFoundError, match=r"^No bus 'tcp'\. Installed: local\. "):
        plugins.bus("tcp")
    with pytest.raises(
        PluginNotFoundError,
        match=r"^No persister 'leveldb'\. Installed: memory\. Install it with: "
        r"pip install perun-leveldb \(from a perun-py source tree: "
        r"pip install \./plugins/perun-leveldb\)$",
    ):
        plugins.persister("leveldb")
    with pytest.raises(PluginNotFoundError, match="Installed: none"):
        plugins.chain("sim")


def test_builtins_register_local_bus_and_memory_persister() -> None:
    plugins = load_only()
    assert plugins.names() == ["builtins"]
    assert plugins.buses.names() == ["local"]
    assert plugins.persisters.names() == ["memory"]
    assert plugins.persisters.provider_of("memory") == "builtins"
    store = plugins.persister("memory")()
    assert isinstance(store, MemoryPersister)
    assert plugins.persister("memory")() is not store  # a fresh store per call


def test_builtin_local_bus_is_the_in_process_bus() -> None:
    from perun_core.wire.local_bus import LocalBus

    bus_cls = load_only().bus("local")
    assert bus_cls is LocalBus
    assert isinstance(bus_cls(), Bus)


def test_extra_plugin_registers_a_chain_and_is_attributed() -> None:
    fake = make_chain("fake")
    plugins = load_only(("fakechain", chain_plugin(fake)))
    assert plugins.chain("fake") is fake
    assert plugins.chains.provider_of("fake") == "fakechain"
    assert isinstance(plugins.chain("fake").from_config({}), fake)
    info = {i.name: i for i in plugins.plugins_info()}
    assert info["fakechain"].chains == ("fake",)
    assert info["fakechain"].distribution is None
    assert info["fakechain"].registrations == ["chain: fake"]
    assert info["builtins"].registrations == ["bus: local", "persister: memory"]
    assert info["builtins"].distribution == "perun-core"


def test_two_plugins_registering_the_same_chain_name_conflict() -> None:
    with pytest.raises(PluginConflictError) as info:
        load_only(
            ("alpha", chain_plugin(make_chain("dup"))),
            ("beta", chain_plugin(make_chain("dup"))),
        )
    msg = str(info.value)
    assert "chain backend 'dup'" in msg and "'alpha'" in msg and "'beta'" in msg


def test_a_plugin_reusing_a_builtin_bus_name_conflicts_with_builtins() -> None:
    @hookimpl
    def perun_register_buses(registry: BusRegistry) -> None:
        registry.add("local", lambda: None)

    with pytest.raises(PluginConflictError, match=r"bus 'local'.*'builtins' and 'rogue'"):
        load_only(("rogue", plugin(perun_register_buses=perun_register_buses)))


def test_chain_with_an_abstract_method_left_is_refused_naming_it() -> None:
    half = make_chain("half", leave_open=("funder", "verify_state"))
    with pytest.raises(PluginValidationError) as info:
        load_only(("halfdone", chain_plugin(half)))
    msg = str(info.value)
    assert "'halfdone'" in msg
    assert "funder, verify_state" in msg
    assert "'half'" in msg


@pytest.mark.parametrize(
    ("candidate", "needle"),
    [
        (int, "not a subclass of perun_core.interfaces.ChainBackend"),
        (MemoryPersister, "not a subclass of perun_core.interfaces.ChainBackend"),
        ("perun_sim.backend:SimBackend", "reference 'perun_sim.backend:SimBackend' needs its name"),
        (type("Nameless", (make_chain("x"),), {"name": ""}), "non-empty string"),
        (type("Spacey", (make_chain("x"),), {"name": "my chain"}), "whitespace"),
    ],
)
def test_chain_registry_rejects_what_is_not_a_usable_backend(candidate: Any, needle: str) -> None:
    registry = ChainRegistry()
    with registry.registering_as("bad"), pytest.raises(PluginValidationError, match=needle):
        registry.add(candidate)
    assert registry.names() == []


class HalfStore(Persister):
    """Implements only channel_created."""

    async def channel_created(self, record: Any) -> None:
        return None


@pytest.mark.parametrize(
    ("name", "factory", "needle"),
    [
        ("half", HalfStore, "abstract methods unimplemented: active_peers, channel_removed"),
        ("wrong", MemoryPersister, None),  # fine for persisters, tested below for buses
        ("notcallable", 42, "must be callable"),
        ("", MemoryPersister, "non-empty string"),
        ("a,b", MemoryPersister, "commas"),
    ],
)
def test_persister_registry_validates_factories(
    name: str, factory: Any, needle: str | None
) -> None:
    registry = PersisterRegistry()
    if needle is None:
        registry.add(name, factory)
        assert registry.get(name) is factory
        assert registry.provider_of(name) == "(direct)"
        return
    with pytest.raises(PluginValidationError, match=needle):
        registry.add(name, factory)
    assert len(registry) == 0


def test_bus_registry_refuses_a_class_that_is_not_a_bus() -> None:
    registry = BusRegistry()
    with (
        registry.registering_as("confused"),
        pytest.raises(
            PluginValidationError, match=r"'confused'.*MemoryPersister is not a subclass of .*Bus"
        ),
    ):
        registry.add("mem", MemoryPersister)
    registry.add("fn", lambda **kw: None)  # plain functions are accepted as factories
    assert registry.names() == ["fn"]


def test_same_plugin_registering_a_name_twice_is_a_conflict() -> None:
    registry = PersisterRegistry()
    with registry.registering_as("twice"):
        registry.add("store", MemoryPersister)
        with pytest.raises(PluginConflictError, match=r"'store' is registered by plugin 'twice'"):
            registry.add("store", MemoryPersister)


# --- plugin authors' mistakes ----------------------------------------------------------------


def test_misspelled_hook_fails_loudly_with_a_suggestion() -> None:
    @hookimpl
    def perun_register_chain(registry: ChainRegistry) -> None:  # missing "s"
        raise AssertionError("never called")

    with pytest.raises(PluginValidationError) as info:
        load_only(("typo", plugin(perun_register_chain=perun_register_chain)))
    msg = str(info.value)
    assert "'typo'" in msg and "unknown hook 'perun_register_chain'" in msg
    assert "Did you mean 'perun_register_chains'?" in msg


def test_hook_function_without_hookimpl_is_reported() -> None:
    def perun_register_chains(registry: ChainRegistry) -> None:
        raise AssertionError("never called")

    with pytest.raises(PluginValidationError, match=r"perun_register_chains\(\) without @hookimpl"):
        load_only(("forgetful", plugin(perun_register_chains=perun_register_chains)))


def test_hookimpl_with_an_argument_the_spec_lacks_is_refused() -> None:
    @hookimpl
    def perun_register_chains(reg: ChainRegistry) -> None:
        raise AssertionError("never called")

    with pytest.raises(
        PluginValidationError,
        match=r"'argy'.*asks for reg, but hook perun_register_chains provides only: registry",
    ):
        load_only(("argy", plugin(perun_register_chains=perun_register_chains)))


def test_a_hook_that_crashes_is_reported_with_the_plugin_and_the_cause() -> None:
    @hookimpl
    def perun_register_buses(registry: BusRegistry) -> None:
        raise RuntimeError("socket library missing")

    with pytest.raises(PluginError) as info:
        load_only(("crashy", plugin(perun_register_buses=perun_register_buses)))
    assert "'crashy' failed in perun_register_buses" in str(info.value)
    assert "RuntimeError: socket library missing" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_extra_plugin_may_not_shadow_an_installed_name() -> None:
    with pytest.raises(PluginConflictError, match="'builtins'"):
        load_only(("builtins", plugin()))


# --- every hook is called (meta-test: one case per hook spec) --------------------------------

EXPECTED_ARG: dict[str, type] = {
    "perun_register_chains": ChainRegistry,
    "perun_register_buses": BusRegistry,
    "perun_register_persisters": PersisterRegistry,
    "perun_register_commands": CommandRegistry,
    "perun_register_apps": AppCatalog,
    "perun_configure": dict,
}


def test_every_hook_spec_has_a_case_here() -> None:
    assert sorted(EXPECTED_ARG) == hook_names()


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_called_once_with_its_argument(hook: str) -> None:
    calls: list[Any] = []

    # specname lets one probe function implement any hook; the argument name must match
    @hookimpl(specname=hook)
    def probe_registry(registry: Any) -> None:
        calls.append(registry)

    @hookimpl(specname=hook)
    def probe_config(config: Any) -> None:
        calls.append(config)

    probe = probe_config if hook == "perun_configure" else probe_registry
    plugins = load_only(("probe", plugin(probe=probe)))
    if hook == "perun_configure":
        assert calls == []  # loading has no side effects: configuring is the caller's call
        plugins.configure({"logger": "loguru"})
        plugins.configure()
        assert calls == [{"logger": "loguru"}, {}]
    else:
        assert len(calls) == 1
        assert isinstance(calls[0], EXPECTED_ARG[hook])
        assert calls[0].current_plugin == "(direct)"  # attribution ends with the hook


def test_registry_knows_the_plugin_while_its_hook_runs() -> None:
    seen: list[str] = []

    @hookimpl
    def perun_register_persisters(registry: PersisterRegistry) -> None:
        seen.append(registry.current_plugin)

    load_only(("watcher", plugin(perun_register_persisters=perun_register_persisters)))
    assert seen == ["watcher"]


# --- discovery through entry points ----------------------------------------------------------


def test_fake_distribution_is_found_through_importlib_metadata(
    make_dist: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = make_dist("fake-perun-x", "fakex", STORE_PLUGIN.format(name="x-store"))
    monkeypatch.setenv(ENV_ONLY, "fakex")  # hermetic: ignore other installed plugins
    plugins = load_plugins()
    assert plugins.names() == ["builtins", "fakex"]
    (info,) = [i for i in plugins.plugins_info() if i.name == "fakex"]
    assert (info.distribution, info.version, info.module) == ("fake-perun-x", "0.1", mod)
    assert info.persisters == ("x-store",)
    assert info.hooks == ("perun_register_persisters",)
    assert plugins.persisters.provider_of("x-store") == "fakex"


def test_allow_list_from_the_environment(two_dists: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_ONLY, " fakey , ")
    plugins = load_plugins()
    assert plugins.names() == ["builtins", "fakey"]  # builtins always load
    assert plugins.persisters.names() == ["memory", "y-store"]
    assert plugins.skipped["fakex"] == "not in the allow-list PERUN_PLUGINS=fakey"


def test_empty_allow_list_loads_only_builtins(
    two_dists: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_ONLY, "")
    assert load_plugins().names() == ["builtins"]


def test_allow_list_accepts_distribution_names(
    two_dists: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_plugins(only=["perun-fakex"]).names() == ["builtins", "fakex"]


def test_block_list_from_the_environment(two_dists: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_BLOCK, "fakex,sim")
    plugins = load_plugins()
    assert "fakex" not in plugins.names() and "fakey" in plugins.names()
    assert "sim" not in plugins.names()
    assert plugins.skipped["fakex"] == "blocked by PERUN_DISABLE_PLUGINS=fakex,sim"
    with pytest.raises(PluginNotFoundError) as info:
        plugins.persister("x-store")
    assert "x-store" not in info.value.installed and "y-store" in info.value.installed


def test_explicit_only_replaces_env_and_block_merges_with_env(
    two_dists: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_ONLY, "fakex")
    assert load_plugins(only=["fakey"]).names() == ["builtins", "fakey"]

    monkeypatch.delenv(ENV_ONLY)
    monkeypatch.setenv(ENV_BLOCK, "fakex,sim")
    plugins = load_plugins(block=["fakey"])
    assert plugins.names()[0] == "builtins"
    assert {"fakex", "fakey"}.isdisjoint(plugins.names())
    assert plugins.skipped["fakey"] == "blocked by block=['fakey']"


def test_allow_list_naming_a_missing_plugin_says_how_to_install_it(
    two_dists: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_ONLY, "fakex,zzcoin")
    with pytest.raises(PluginNotFoundError) as info:
        load_plugins()
    text = str(info.value)
    assert text.startswith("No plugin 'zzcoin'. Installed: builtins, ")
    assert "fakex, fakey" in text  # every installed plugin is listed, sorted
    assert str(info.value).endswith(
        "Install it with: pip install perun-zzcoin "
        "(from a perun-py source tree: pip install ./plugins/perun-zzcoin)"
    )


def test_entry_point_that_fails_to_import_names_plugin_and_distribution(
    make_dist: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dist("fake-perun-broken", "broken", "import perun_no_such_module\n", version="2.3")
    monkeypatch.setenv(ENV_ONLY, "broken")
    with pytest.raises(PluginError) as info:
        load_plugins()
    msg = str(info.value)
    assert "plugin 'broken' (distribution fake-perun-broken 2.3) failed to load" in msg
    assert "No module named 'perun_no_such_module'" in msg
    assert "PERUN_DISABLE_PLUGINS=broken" in msg
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_two_distributions_declaring_one_plugin_name_conflict(
    make_dist: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dist("fake-perun-a", "twin", STORE_PLUGIN.format(name="a"))
    make_dist("fake-perun-b", "twin", STORE_PLUGIN.format(name="b"))
    with pytest.raises(PluginConflictError, match=r"fake-perun-[ab] .*fake-perun-[ab] "):
        load_plugins(only=["twin"])


def test_entry_points_false_ignores_installed_distributions(
    make_dist: Callable[..., str],
) -> None:
    make_dist("fake-perun-x", "fakex", STORE_PLUGIN.format(name="x-store"))
    assert load_plugins(entry_points=False).names() == ["builtins"]


@pytest.mark.skipif(not HAVE_SIM, reason="perun_sim.plugin not written yet")
def test_first_party_sim_plugin_registers_chain_sim() -> None:
    plugins = load_plugins(only=["sim"])
    assert plugins.chains.provider_of("sim") == "sim"
    assert issubclass(plugins.chain("sim"), ChainBackend)


# --- the `perun` command ---------------------------------------------------------------------


@pytest.fixture
def installed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything installed, except the sim plugin while its module is not written."""
    if not HAVE_SIM:
        monkeypatch.setenv(ENV_BLOCK, "sim")


def test_perun_plugins_prints_a_table_of_plugins(
    installed_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert re.match(r"plugin\s+distribution\s+version\s+registers\n", out)
    assert re.search(
        r"^builtins\s+perun-core\s+0\.1\.0\s+bus: local, persister: memory$", out, re.M
    )
    if HAVE_SIM:
        assert re.search(r"^sim\s+perun-sim\s+0\.1\.0\s+chain: sim", out, re.M)


def test_perun_plugins_json_is_machine_readable(
    installed_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins", "--json"]) == 0
    records = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert records["builtins"]["distribution"] == "perun-core"
    assert records["builtins"]["registers"] == {
        "chain": [],
        "bus": ["local"],
        "persister": ["memory"],
        "command": [],
        "app": [],
    }
    if HAVE_SIM:
        assert records["sim"]["registers"]["chain"] == ["sim"]


def test_perun_plugins_with_a_missing_plugin_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_ONLY, "zzcoin")
    assert main(["plugins"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("perun: error: No plugin 'zzcoin'. Installed: builtins")
    assert err.endswith("pip install ./plugins/perun-zzcoin)\n") and err.count("\n") == 1


def test_perun_without_a_command_or_with_junk_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 2
    assert "plugins" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["plugins", "--bogus"])
    assert info.value.code == 2


# --- plugin commands (perun_register_commands) -----------------------------------------------

COMMAND_PLUGIN = """
    import asyncio

    from perun_core import hookimpl
    from perun_core.errors import ChainError


    def configure(parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--fail", action="store_true")


    async def run(args):
        await asyncio.sleep(0)  # really runs in an event loop
        if args.fail:
            raise ChainError("node gone\\nfor good", operation="{cmd}")
        print("hello " + args.name + " from {cmd}")
        return 3 if args.name == "three" else None


    @hookimpl
    def perun_register_commands(registry):
        registry.add("{cmd}", run, configure=configure, help="say hello ({cmd})")
"""


@pytest.fixture
def command_dist(make_dist: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution fake-perun-greet whose plugin registers ``perun greet``;
    only it (and the built-ins) load."""
    make_dist("fake-perun-greet", "greet", COMMAND_PLUGIN.format(cmd="greet"))
    monkeypatch.setenv(ENV_ONLY, "greet")


def test_plugin_command_runs_through_perun(
    command_dist: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["greet", "--name", "ada"]) == 0
    assert capsys.readouterr().out == "hello ada from greet\n"
    assert main(["greet", "--name", "three"]) == 3  # the runner's status is the exit status


def test_plugin_command_is_listed_by_help_and_plugins(
    command_dist: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert re.search(r"^\s+greet\s+say hello \(greet\)$", capsys.readouterr().out, re.M)
    assert main(["plugins", "--json"]) == 0
    records = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert records["greet"]["registers"]["command"] == ["greet"]
    assert "perun_register_commands" in records["greet"]["hooks"]


def test_plugin_command_arguments_are_parsed_by_its_configure(
    command_dist: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["greet"])  # --name is required by the plugin's configure()
    assert info.value.code == 2
    assert "--name" in capsys.readouterr().err


def test_plugin_command_perun_error_is_one_line_exit_2(
    command_dist: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["greet", "--name", "x", "--fail"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "perun: error: greet: node gone for good\n"


def test_unknown_command_names_the_installed_ones(
    command_dist: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gret", "--name", "x"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert (
        err == "perun: error: No command 'gret'. Installed: greet, plugins. Did you mean 'greet'?\n"
    )


def test_two_plugins_registering_one_command_conflict(
    make_dist: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_dist("fake-perun-greet", "greet", COMMAND_PLUGIN.format(cmd="greet"))
    make_dist("fake-perun-greet2", "greet2", COMMAND_PLUGIN.format(cmd="greet"))
    with pytest.raises(PluginConflictError, match="command 'greet' is registered by both plugins"):
        load_plugins(only=["greet", "greet2"])
    # Through `perun`: the conflict is the one-line error, and --help still works.
    monkeypatch.setenv(ENV_ONLY, "greet,greet2")
    assert main(["greet", "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("perun: error: command 'greet' is registered by both plugins 'greet'")
    assert err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "Plugin commands are unavailable: command 'greet'" in capsys.readouterr().out


def test_commands_are_attributed_and_looked_up() -> None:
    def run(args: argparse.Namespace) -> int:
        return 0

    @hookimpl
    def perun_register_commands(registry: CommandRegistry) -> None:
        registry.add("tool", run, help="a tool")

    plugins = load_only(("tools", plugin(perun_register_commands=perun_register_commands)))
    assert plugins.commands.provider_of("tool") == "tools"
    cmd = plugins.command("tool")
    assert (cmd.name, cmd.run, cmd.configure, cmd.help) == ("tool", run, None, "a tool")
    info = {i.name: i for i in plugins.plugins_info()}["tools"]
    assert info.commands == ("tool",) and info.registrations == ["command: tool"]
    with pytest.raises(PluginNotFoundError, match=re.escape("No command 'nope'. Installed: tool.")):
        plugins.command("nope")


@pytest.mark.parametrize("name", ["plugins"])
def test_a_plugin_may_not_take_a_built_in_command_name(name: str) -> None:
    @hookimpl
    def perun_register_commands(registry: CommandRegistry) -> None:
        registry.add(name, lambda args: 0)

    with pytest.raises(PluginConflictError, match=f"command {name!r}, which is built into perun"):
        load_only(("hijack", plugin(perun_register_commands=perun_register_commands)))


@pytest.mark.parametrize(
    ("name", "run", "configure", "needle"),
    [
        ("", lambda a: 0, None, "a command name must be a non-empty string"),
        ("two words", lambda a: 0, None, "must not contain whitespace or commas"),
        ("-x", lambda a: 0, None, "must not start with '-'"),
        ("ok", "not callable", None, "run must be callable"),
        ("ok", lambda a: 0, 42, "configure must be callable or None"),
    ],
)
def test_command_registry_validates_entries(
    name: str, run: Any, configure: Any, needle: str
) -> None:
    registry = CommandRegistry()
    with pytest.raises(PluginValidationError, match=re.escape(needle)):
        registry.add(name, run, configure=configure)
    assert len(registry) == 0


# --- docs cannot drift (meta-test) -----------------------------------------------------------


def _signature(hook: str) -> str:
    fn = getattr(hookspecs, hook)
    sig = inspect.signature(fn)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{hook}({params}) -> {sig.return_annotation}"


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented_with_its_exact_signature(hook: str) -> None:
    text = DOCS.read_text()
    assert _signature(hook) in text, f"docs/plugins.md lacks `{_signature(hook)}`"
    summary = inspect.getdoc(getattr(hookspecs, hook)).splitlines()[0]  # type: ignore[union-attr]
    assert summary in text


def test_documented_environment_variables_and_messages_exist() -> None:
    text = DOCS.read_text()
    for needle in (ENV_ONLY, ENV_BLOCK, "No chain backend 'eth'. Installed: sim."):
        assert needle in text


def test_plugin_info_dict_keys_are_documented() -> None:
    info = load_only().plugins_info()[0].as_dict()
    text = DOCS.read_text()
    for key in info:
        assert f'"{key}"' in text
