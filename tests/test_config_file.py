"""``perun.toml`` and ``Client.from_config``: parts built by name from their typed tables.

Real parts throughout: a sim ledger shared by the clients, TCP buses on loopback sockets.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from perun_sim import SimBackend
from perun_sim.ledger import SimLedger

from perun_core.channel.allocation import Allocation
from perun_core.channel.phase import Phase
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal
from perun_core.configfile import load_perun_config
from perun_core.errors import ConfigError, PluginNotFoundError, PluginValidationError
from perun_core.hookspecs import hookimpl
from perun_core.persistence.memory import MemoryPersister
from perun_core.plugins import load_plugins
from perun_core.registry import BusRegistry
from perun_core.wire.local_bus import LocalBus

FUNDS = 10_000


def _config(ledger: SimLedger, seed: str, **perun: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "backend": "sim",
        "bus": "tcp",
        "sim": {"ledger": ledger, "seeds": [seed]},
        "tcp": {"handshake_timeout": 2.0},
        "client": {"update_timeout": 5, "proposal_timeout": 5},
    }
    table.update(perun)
    return {"perun": table}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def test_clients_from_configuration_pay_each_other_over_tcp() -> None:
    ledger = SimLedger()
    plugins = load_plugins()
    bob_at = f"tcp://127.0.0.1:{_free_port()}"
    bob_address = SimBackend.from_config({"seeds": ["bob"]}).wallet().accounts()[0]
    bob = await Client.from_config(
        _config(ledger, "bob", tcp={"listen": [bob_at]}), plugins=plugins
    )
    # Alice finds Bob through the address book of her [perun.tcp] table.
    alice = await Client.from_config(
        _config(ledger, "alice", tcp={"peers": {str(bob_address): bob_at}}), plugins=plugins
    )
    assert bob.address == bob_address and bob.bus.advertised_endpoints() == (bob_at,)
    # The one account each wallet holds was picked; the [perun.client] table was applied.
    assert alice.account.address != bob.account.address
    assert alice.config.update_timeout == 5 and alice.config.proposal_timeout == 5
    assert isinstance(alice.persister, MemoryPersister)
    ports = [int(c.bus.advertised_endpoints()[0].rsplit(":", 1)[1]) for c in (alice, bob)]
    asset = alice.backend.default_assets()[0]
    for c in (alice, bob):
        await c.backend.faucet(c.address, asset, FUNDS)
    opened: asyncio.Future[Channel] = asyncio.get_running_loop().create_future()
    bob.on_proposal(lambda p, r: r.accept())
    bob.on_new_channel(lambda ch: opened.done() or opened.set_result(ch))
    async with alice, bob:
        ch_a = await alice.propose_channel(
            LedgerChannelProposal(
                peer=bob.address,
                allocation=Allocation((asset,), ((100, 100),)),
                challenge_duration=60,
            )
        )
        ch_b = await asyncio.wait_for(opened, 10)
        await ch_a.send(30)
        await ch_b.send(5)
        await asyncio.gather(ch_a.settle(), ch_b.settle())
        assert ch_a.phase == ch_b.phase == Phase.WITHDRAWN
    assert await alice.backend.balance_of(alice.address, asset) == FUNDS - 25
    assert await bob.backend.balance_of(bob.address, asset) == FUNDS + 25
    # close() closed the buses from_config opened: their ports are free again.
    assert all(_port_is_free(p) for p in ports)


async def test_a_part_passed_in_is_used_and_not_closed() -> None:
    backend = SimBackend.from_config({})
    account = backend.wallet().new_account()
    bus, store = LocalBus(), MemoryPersister()
    client = await Client.from_config(
        {"backend": "sim", "bus": "tcp"},
        account=account,
        backend=backend,
        bus=bus,
        persister=store,
        config=ClientConfig(watch=False),
    )
    assert (client.backend, client.bus, client.persister) == (backend, bus, store)
    assert client.config.watch is False
    # funder and adjudicator default to the backend's for the account.
    assert type(client.funder) is type(backend.funder(account))
    assert type(client.adjudicator) is type(backend.adjudicator(account))
    async with client:
        pass
    sub = bus.subscribe(account.address)  # the bus is still open: it was not the client's
    sub.close()


def test_perun_toml_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "perun.toml"
    path.write_text(
        '[perun]\nbackend = "sim"\nbus = "tcp"\npersister = "leveldb"\nlogger = "loguru"\n'
        '[perun.tcp]\nlisten = ["tcp://127.0.0.1:7001"]\n'
        "[perun.client]\nupdate_timeout = 2.5\nwatch = false\n"
    )
    cfg = load_perun_config(path)
    assert (cfg.backend, cfg.bus, cfg.persister, cfg.logger) == ("sim", "tcp", "leveldb", "loguru")
    assert cfg.settings("tcp") == {"listen": ["tcp://127.0.0.1:7001"]}
    assert cfg.settings("leveldb") == {}
    assert cfg.client_config() == ClientConfig(update_timeout=2.5, watch=False)
    assert load_perun_config({"backend": "eth"}).bus == "local"  # the table alone will do

    cases = {
        "[perun]\nbus = 'tcp'\n": "perun.backend",
        "[perun]\nbackend = 3\n": "non-empty string",
        "[perun]\nbackend = 'sim'\n[perun.client]\nupdate_timeot = 1\n": "update_timeot",
        "[perun]\nbackend = 'sim'\n[perun.client]\nwatch = 'maybe'\n": "perun.client",
        "[perun]\nbackend = 'sim'\nsim = 4\n": "must be a table",
        "[perun\n": "not valid TOML",
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            cfg = load_perun_config(path)
            cfg.settings("sim")
            cfg.client_config()
    with pytest.raises(ConfigError, match="cannot read"):
        load_perun_config(tmp_path / "missing.toml")


async def test_a_refused_table_closes_the_parts_opened_before_it() -> None:
    port = _free_port()
    config = _config(
        SimLedger(),
        "alice",
        tcp={"listen": [f"tcp://127.0.0.1:{port}"]},
        persister="memory",
        memory={"path": "/nowhere"},  # the memory persister takes no options
    )
    with pytest.raises(ConfigError, match=r"persister 'memory'.*path"):
        await Client.from_config(config)
    assert _port_is_free(port)  # the bus opened before the refusal was closed


async def test_account_choice_and_bad_bus_options() -> None:
    ledger = SimLedger()
    two = _config(ledger, "alice", bus="local")
    two["perun"]["sim"]["seeds"] = ["alice", "bob"]
    with pytest.raises(ConfigError, match="holds 2 accounts"):
        await Client.from_config(two)
    bob = SimBackend.from_config({"seeds": ["bob"]}).wallet().accounts()[0]
    two["perun"]["account"] = str(bob)
    client = await Client.from_config(two)
    assert client.address == bob
    await client.close()
    two["perun"]["account"] = str(
        SimBackend.from_config({"seeds": ["carol"]}).wallet().accounts()[0]
    )
    with pytest.raises(ConfigError, match="not in the sim wallet"):
        await Client.from_config(two)
    with pytest.raises(ConfigError, match="handshake_timeout"):
        await Client.from_config(_config(ledger, "alice", tcp={"handshake_timeout": "soon"}))
    with pytest.raises(ConfigError, match="must be positive"):
        await Client.from_config(_config(ledger, "alice", tcp={"handshake_timeout": 0}))
    with pytest.raises(ConfigError, match=r"endpoint|tcp://"):
        await Client.from_config(_config(ledger, "alice", tcp={"listen": ["udp://x"]}))
    with pytest.raises(PluginNotFoundError, match="nosuchlogger"):
        await Client.from_config(_config(ledger, "alice", logger="nosuchlogger"))


async def test_a_bus_registered_as_a_function_cannot_be_opened_by_name() -> None:
    class FunctionBusPlugin:
        @staticmethod
        @hookimpl
        def perun_register_buses(registry: BusRegistry) -> None:
            registry.add("fn-bus", lambda: LocalBus())

    plugins = load_plugins(only=[], entry_points=False, extra=[("fnbus", FunctionBusPlugin)])
    assert isinstance(plugins.bus("fn-bus")(), LocalBus)  # the old way still works
    with pytest.raises(PluginValidationError, match="register its Bus subclass"):
        await plugins.buses.open("fn-bus")
