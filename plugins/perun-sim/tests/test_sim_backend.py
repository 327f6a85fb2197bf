"""SimBackend construction, shared ledgers, the plugin hook and the ChainBackend contract."""

from __future__ import annotations

import inspect

import pytest
from perun_sim import SimAccount, SimBackend, SimClock, SimLedger
from perun_sim.plugin import perun_register_chains

from perun_core.channel import AppRegistry
from perun_core.interfaces import ChainBackend


def test_sim_backend_implements_every_abstract_method() -> None:
    assert issubclass(SimBackend, ChainBackend)
    assert not inspect.isabstract(SimBackend)
    assert SimBackend.name == "sim"
    assert {"apps", "sub_channels", "virtual_channels"} <= SimBackend.capabilities


def test_from_config_defaults_to_a_realtime_ledger_1337() -> None:
    b = SimBackend.from_config({})
    assert b.ledger.ledger_id == 1337
    assert not b.clock.is_manual
    assert b.default_assets()[0].ledger_id == 1337


def test_from_config_manual_clock_and_options() -> None:
    apps = AppRegistry()
    b = SimBackend.from_config(
        {
            "clock": "manual",
            "start": 500,
            "ledger_id": 7,
            "latency": 0.5,
            "apps": apps,
            "seeds": ["alice", b"bob"],
            "secondary_grace": 0.3,
        }
    )
    assert b.clock.is_manual and b.clock.now() == 500
    assert b.ledger.ledger_id == 7 and b.ledger.latency == 0.5 and b.ledger.apps is apps
    assert b.wallet().accounts() == [
        SimAccount.from_seed(b"alice").address,
        SimAccount.from_seed(b"bob").address,
    ]
    assert b.adjudicator(SimAccount.from_seed(b"alice")).secondary_grace == 0.3


def test_backends_can_share_one_ledger() -> None:
    ledger = SimLedger(clock=SimClock.manual())
    b1 = SimBackend.from_config({"ledger": ledger})
    b2 = SimBackend(ledger)
    assert b1.ledger is b2.ledger is ledger
    assert b1.clock is ledger.clock


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError):
        SimBackend.from_config({"clock": "sundial"})
    with pytest.raises(TypeError):
        SimBackend.from_config({"ledger": object()})
    with pytest.raises(TypeError):
        SimBackend.from_config({"apps": {}})


async def test_faucet_and_balances(backend: SimBackend) -> None:
    alice = SimAccount.from_seed(b"alice")
    eth = backend.default_assets()[0]
    await backend.faucet(alice.address, eth, 42)
    assert await backend.balance_of(alice.address, eth) == 42
    assert backend.ledger.balance_of(alice.address, eth) == 42


def test_hookimpl_registers_the_backend_class() -> None:
    from perun_core.registry import ChainRegistry

    reg = ChainRegistry()
    perun_register_chains(reg)
    assert reg.names() == ["sim"]
    assert not reg.is_loaded("sim")  # by reference: imported on the first lookup
    assert reg.get("sim") is SimBackend


def test_hookimpl_is_marked_for_the_perun_project() -> None:
    import pluggy
    from perun_sim import plugin

    from perun_core import hookspecs
    from perun_core.hookspecs import PROJECT
    from perun_core.registry import ChainRegistry

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    reg = ChainRegistry()
    pm.hook.perun_register_chains(registry=reg)
    assert reg.get("sim") is SimBackend
