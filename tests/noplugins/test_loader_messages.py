"""perun-core with no plugin but its built-ins: what a user sees when a plugin is missing.

The tox env ``noplugins`` installs perun-core alone (``PERUN_EXPECT_NO_PLUGINS=1``); then the
first test also checks that nothing else is installed. Elsewhere ``PERUN_PLUGINS`` is set to
the empty allow-list, which must behave the same for everything the loader reports.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

from perun_core.cli import main
from perun_core.errors import PerunError, PluginNotFoundError
from perun_core.plugins import ENV_BLOCK, ENV_ONLY, load_plugins

STRICT = os.environ.get("PERUN_EXPECT_NO_PLUGINS") == "1"
INSTALLED = {ep.name for ep in importlib.metadata.entry_points(group="perun")}


def advice(plugin: str) -> str:
    """The end of a "not found" message for a first-party plugin: installed here but left
    out by the empty allow-list, or not installed at all (the ``noplugins`` env)."""
    if plugin in INSTALLED:
        return (
            f"A plugin {plugin!r} is installed but was not loaded: not in the allow-list "
            "PERUN_PLUGINS=."
        )
    return (
        f"Install it with: pip install perun-{plugin} "
        f"(from a perun-py source tree: pip install ./plugins/perun-{plugin})"
    )


@pytest.fixture(autouse=True)
def only_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The empty allow-list: only ``builtins`` loads, whatever is installed."""
    monkeypatch.setenv(ENV_ONLY, "")
    monkeypatch.delenv(ENV_BLOCK, raising=False)


def test_only_the_builtins_load() -> None:
    plugins = load_plugins()
    assert plugins.names() == ["builtins"]
    assert plugins.chains.names() == []
    assert plugins.buses.names() == ["local"]
    assert plugins.persisters.names() == ["memory"]
    if STRICT:
        installed = {ep.name for ep in importlib.metadata.entry_points(group="perun")}
        assert installed == {"builtins"}, f"the noplugins env has plugins installed: {installed}"
        assert plugins.skipped == {}


@pytest.mark.parametrize(
    ("lookup", "name", "message"),
    [
        ("chain", "sim", "No chain backend 'sim'. Installed: none. "),
        ("chain", "eth", "No chain backend 'eth'. Installed: none. "),
        ("bus", "tcp", "No bus 'tcp'. Installed: local. "),
        ("persister", "leveldb", "No persister 'leveldb'. Installed: memory. "),
        ("persister", "rocksdb", "No persister 'rocksdb'. Installed: memory. "),
    ],
)
def test_a_missing_plugin_names_what_is_installed_and_what_to_install(
    lookup: str, name: str, message: str
) -> None:
    plugins = load_plugins()
    with pytest.raises(PluginNotFoundError) as info:
        getattr(plugins, lookup)(name)
    assert str(info.value) == message + advice(name)
    assert (info.value.name, info.value.installed) == (name, info.value.installed)
    assert isinstance(info.value, LookupError) and isinstance(info.value, PerunError)


def test_allow_listing_a_plugin_that_is_not_installed_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_ONLY, "sim,nosuchchain")
    with pytest.raises(PluginNotFoundError) as info:
        load_plugins(entry_points=False)
    assert str(info.value) == (
        "No plugin 'sim'. Installed: builtins. Install it with: pip install perun-sim "
        "(from a perun-py source tree: pip install ./plugins/perun-sim)"
    )


def test_perun_plugins_lists_only_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in infos] == ["builtins"]
    assert infos[0]["registers"] == {
        "chain": [],
        "bus": ["local"],
        "persister": ["memory"],
        "command": [],
        "app": [],
    }


def test_a_plugin_command_without_its_plugin_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["eth", "deploy", "--rpc", "http://127.0.0.1:8545", "--dev"]) == 2
    assert capsys.readouterr().err == (
        f"perun: error: No command 'eth'. Installed: plugins. {advice('eth')}\n"
    )


def test_perun_demo_without_its_plugin_is_a_one_line_error() -> None:
    """``perun demo`` is a plugin's command: without perun-demo, one line says how to get
    it, with status 2."""
    env = dict(os.environ, PERUN_PLUGINS="")
    out = subprocess.run(
        [sys.executable, "-m", "perun_core.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines == [f"perun: error: No command 'demo'. Installed: plugins. {advice('demo')}"]
