"""The shipped apps on the sim ledger: the app conformance suite (the ledger runs the Python
rules with its clock), the plugin's registration, and clients binding the apps."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from perun_apps import htlc, tictactoe
from perun_apps.testing import htlc_cases, tictactoe_cases
from perun_sim import SimBackend
from perun_sim.encoding import sim_app_id

from perun_core.channel.app import AppDefinition
from perun_core.channel.types import Asset
from perun_core.plugins import installed_apps, load_plugins
from perun_core.testing.apps import AppCase, AppConformance


class _OnSim:
    @pytest.fixture
    async def backend(self) -> AsyncIterator[SimBackend]:
        b = SimBackend.from_config({"clock": "manual", "secondary_grace": 0.05})
        yield b
        await b.close()

    @pytest.fixture
    def asset(self, backend: SimBackend) -> Asset:
        return backend.default_assets()[0]


class TestTicTacToeOnSim(_OnSim, AppConformance):
    @pytest.fixture
    def app_definition(self) -> AppDefinition:
        return tictactoe.DEFINITION

    @pytest.fixture
    def app_cases(self) -> list[AppCase]:
        return tictactoe_cases()


class TestHtlcOnSim(_OnSim, AppConformance):
    @pytest.fixture
    def app_definition(self) -> AppDefinition:
        return htlc.DEFINITION

    @pytest.fixture
    def app_cases(self) -> list[AppCase]:
        return htlc_cases()


def test_loading_the_plugins_imports_no_app() -> None:
    probe = (
        "import sys; from perun_core.plugins import load_plugins; p = load_plugins(); "
        "assert 'htlc' in p.apps.names(), p.apps.names(); "
        "print(sorted(m for m in sys.modules if m.startswith('perun_apps')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['perun_apps', 'perun_apps.plugin']"


def test_the_plugin_registers_both_apps_by_reference() -> None:
    plugins = load_plugins()
    info = next(p for p in plugins.plugins_info() if "app: tictactoe" in p.registrations)
    assert set(info.apps) == {"tictactoe", "htlc"}
    defs = installed_apps()
    assert defs["tictactoe"] is tictactoe.DEFINITION and defs["htlc"] is htlc.DEFINITION
    for d in (tictactoe.DEFINITION, htlc.DEFINITION):
        eth = d.on_chain["eth"]
        assert isinstance(eth, dict) and eth["bytecode"].startswith("0x") and eth["abi"]


async def test_the_sim_ledger_and_clients_bind_the_apps_by_name() -> None:
    from perun_core.client import Client
    from perun_core.wire.local_bus import LocalBus

    backend = SimBackend.from_config({"clock": "manual"})
    try:
        for name, cls in (("tictactoe", tictactoe.TicTacToeApp), ("htlc", htlc.HtlcApp)):
            aid = sim_app_id(name)
            assert isinstance(backend.ledger.apps.get(aid), cls)
        acct = backend.wallet().new_account()
        client = Client(account=acct, backend=backend, bus=LocalBus())
        assert client.app_id("tictactoe") == sim_app_id("tictactoe")
        assert isinstance(client.apps.get(client.app_id("htlc")), htlc.HtlcApp)
    finally:
        await backend.close()
