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
        (
            "chain",
            "sim",
            "No chain backend 'sim'. Installed: none. Install it with: pip install perun-sim",
        ),
        (
            "chain",
            "eth",
            "No chain backend 'eth'. Installed: none. Install it with: pip install perun-eth",
        ),
        (
            "bus",
            "tcp",
            "No bus 'tcp'. Installed: local. Install it with: pip install perun-tcp",
        ),
        (
            "persister",
            "leveldb",
            "No persister 'leveldb'. Installed: memory. Install it with: pip install perun-leveldb",
        ),
        (
            "persister",
            "rocksdb",
            "No persister 'rocksdb'. Installed: memory. Install it with: pip install perun-rocksdb",
        ),
    ],
)
def test_a_missing_plugin_names_what_is_installed_and_what_to_install(
    lookup: str, name: str, message: str
) -> None:
    plugins = load_plugins()
    with pytest.raises(PluginNotFoundError) as info:
        getattr(plugins, lookup)(name)
    assert str(info.value) == message
    assert (info.value.name, info.value.installed) == (name, info.value.installed)
    assert isinstance(info.value, LookupError) and isinstance(info.value, PerunError)


def test_allow_listing_a_plugin_that_is_not_installed_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_ONLY, "sim,nosuchchain")
    with pytest.raises(PluginNotFoundError) as info:
        load_plugins(entry_points=False)
    assert str(info.value) == (
        "No plugin 'sim'. Installed: builtins. Install it with: pip install perun-sim"
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
    }


def test_a_plugin_command_without_its_plugin_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["eth", "deploy", "--rpc", "http://127.0.0.1:8545", "--dev"]) == 2
    assert capsys.readouterr().err == (
        "perun: error: No command 'eth'. Installed: demo, plugins. "
        "Install it with: pip install perun-eth\n"
    )


def test_perun_demo_without_a_chain_is_a_one_line_error() -> None:
    """The command line turns the missing backend into one line on stderr and status 2."""
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
    assert lines == [
        "perun: error: No chain backend 'sim'. Installed: none. Install it with: "
        "pip install perun-sim"
    ]
