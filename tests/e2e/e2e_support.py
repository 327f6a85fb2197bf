"""End-to-end helpers: one chain, bus and persister, chosen by environment variables.

=============================== =================================== ==========
variable                        selects                             default
=============================== =================================== ==========
``PERUN_TEST_CHAIN``            the chain backend (``sim``, ``eth``) ``sim``
``PERUN_TEST_BUS``              the bus (``local``, ``tcp``, ...)    ``local``
``PERUN_TEST_PERSISTER``        the persister (``memory``,           ``memory``
                                ``leveldb``, ``rocksdb``, ...)
``PERUN_TEST_BUS_CONFIG``       the bus's options, as JSON           ``{}``
``PERUN_TEST_PERSISTER_CONFIG`` the persister's options, as JSON     ``{}``
=============================== =================================== ==========

Everything is looked up by name through the plugin registries, and every part is built the
one way each kind offers, so any installed plugin joins the matrix without an edit here
(the tests fail with the loader's "not installed" message for a name no plugin provides;
they never skip a selected plugin):

- **chain**: ``Backend.dev_ledger()``, a development ledger with a faucet, ledger time and
  a fee-free asset (:class:`~perun_core.interfaces.devledger.DevLedger`).
- **bus**: ``Bus.open(config, account=..., backend=...)``. A ``shared`` bus (``local``) is
  opened once for every party; otherwise each party opens its own and the parties learn
  each other's ``advertised_endpoints()`` through ``add_peer``.
- **persister**: ``Persister.open(config, ...)``; a ``durable`` one gets ``path=<a fresh
  directory>`` and is closed and reopened on restart.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from perun_core.channel.types import Address, Asset
from perun_core.client import ClientConfig
from perun_core.interfaces.bus import Bus
from perun_core.interfaces.chain import ChainBackend
from perun_core.interfaces.devledger import DevLedger
from perun_core.interfaces.persister import Persister
from perun_core.interfaces.wallet import Account
from perun_core.plugins import Plugins
from perun_core.testing.parties import Party, PartyFactory

ENV_CHAIN = "PERUN_TEST_CHAIN"
ENV_BUS = "PERUN_TEST_BUS"
ENV_PERSISTER = "PERUN_TEST_PERSISTER"
ENV_BUS_CONFIG = "PERUN_TEST_BUS_CONFIG"
ENV_PERSISTER_CONFIG = "PERUN_TEST_PERSISTER_CONFIG"

FUNDS = 1_000_000


def _json_table(var: str) -> dict[str, Any]:
    text = os.environ.get(var, "").strip()
    value = json.loads(text) if text else {}
    if not isinstance(value, dict):
        raise pytest.UsageError(f"{var} must be a JSON object, not {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class Selection:
    """The plugin combination under test."""

    chain: str
    bus: str
    persister: str
    bus_config: Mapping[str, Any] = field(default_factory=dict)
    persister_config: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Selection:
        """Read the selection from the environment (defaults: sim, local, memory)."""
        return cls(
            os.environ.get(ENV_CHAIN, "").strip() or "sim",
            os.environ.get(ENV_BUS, "").strip() or "local",
            os.environ.get(ENV_PERSISTER, "").strip() or "memory",
            _json_table(ENV_BUS_CONFIG),
            _json_table(ENV_PERSISTER_CONFIG),
        )

    def __str__(self) -> str:
        return f"chain={self.chain} bus={self.bus} persister={self.persister}"


@dataclass(frozen=True, slots=True)
class ChainUnderTest:
    """A chain backend ready for the e2e scenarios, the asset they move and the ledger's
    test controls."""

    backend: ChainBackend
    asset: Asset
    ledger: DevLedger


def chain_under_test(
    name: str, plugins: Plugins, tmp_path: Path
) -> AbstractAsyncContextManager[ChainUnderTest]:
    """The development ledger of chain ``name`` (see the module docstring)."""
    del tmp_path  # development ledgers keep their state in memory or in their own process
    return _dev_chain(plugins.chain(name))


@asynccontextmanager
async def _dev_chain(cls: type[ChainBackend]) -> AsyncIterator[ChainUnderTest]:
    async with cls.dev_ledger() as dev:
        yield ChainUnderTest(dev.backend, dev.asset, dev)


class Network:
    """Buses for the parties of one test: one shared bus, or one each that know each other."""

    def __init__(
        self, plugins: Plugins, kind: str, backend: ChainBackend, config: Mapping[str, Any]
    ) -> None:
        self.kind = kind
        self.cls: type[Bus] = plugins.buses.part_class(kind)
        self.config = config
        self.backend = backend
        self.shared: Bus | None = None
        self.buses: dict[Address, Bus] = {}

    async def bus_for(self, account: Account) -> Bus:
        """The bus ``account``'s client uses (a new one replaces a closed one)."""
        if self.cls.shared:
            if self.shared is None:
                self.shared = await self.cls.open(
                    self.config, account=account, backend=self.backend
                )
            return self.shared
        bus = await self.cls.open(self.config, account=account, backend=self.backend)
        mine = bus.advertised_endpoints()
        assert mine, f"bus {self.kind!r} is not shared but advertises no endpoint"
        for addr, other in self.buses.items():
            if addr != account.address:
                other.add_peer(account.address, mine[0])
                bus.add_peer(addr, other.advertised_endpoints()[0])
        self.buses[account.address] = bus
        return bus

    async def drop(self, account: Account) -> None:
        """Close ``account``'s own bus (a process going down); the shared bus stays."""
        bus = self.buses.pop(account.address, None)
        if bus is not None:
            await bus.close()

    async def close(self) -> None:
        for bus in list(self.buses.values()):
            await bus.close()
        self.buses.clear()
        if self.shared is not None:
            await self.shared.close()


@dataclass
class E2E:
    """Everything one end-to-end test needs, for the selected combination."""

    selection: Selection
    plugins: Plugins
    chain: ChainUnderTest
    net: Network
    tmp_path: Path
    funds: int = FUNDS
    factories: list[PartyFactory] = field(default_factory=list)
    stores: list[Persister] = field(default_factory=list)

    @property
    def backend(self) -> ChainBackend:
        return self.chain.backend

    @property
    def asset(self) -> Asset:
        return self.chain.asset

    @property
    def durable(self) -> bool:
        """Whether the persister keeps records across a close and reopen."""
        return self.plugins.persisters.part_class(self.selection.persister).durable

    async def open_store(self, name: str, account: Account) -> Persister:
        """The persister of party ``name`` (a durable one reopens the same directory)."""
        config = dict(self.selection.persister_config)
        if self.durable:
            config.setdefault("path", str(self.tmp_path / f"{name}.db"))
        store = await self.plugins.persisters.open(
            self.selection.persister, config, account=account, backend=self.backend
        )
        self.stores.append(store)
        return store

    async def new_account(self) -> Account:
        """A fresh account holding :attr:`funds` of the asset."""
        account = self.backend.wallet().new_account()
        await self.chain.ledger.faucet(account.address, self.asset, self.funds)
        return account

    async def party(
        self,
        name: str,
        *,
        account: Account | None = None,
        persister: Persister | None = None,
        config: ClientConfig | None = None,
    ) -> Party:
        """A started party on its bus; a new account is funded by the faucet."""
        acct = account if account is not None else await self.new_account()
        bus = await self.net.bus_for(acct)
        factory = PartyFactory(self.backend, bus, funds=self.funds)
        self.factories.append(factory)
        store = persister if persister is not None else await self.open_store(name, acct)
        return await factory.make(name, account=acct, persister=store, config=config)

    async def stop(self, party: Party) -> None:
        """Stop ``party`` like a process exiting: client, its own bus, a durable store."""
        await party.client.close()
        await self.net.drop(party.account)
        if self.durable:
            await party.persister.close()

    async def balance(self, party: Party) -> int:
        """``party``'s ledger balance of the asset."""
        return await self.backend.balance_of(party.account.address, self.asset)

    async def close(self) -> None:
        for f in self.factories:
            await f.close()
        await self.net.close()
        for store in self.stores:
            await store.close()
