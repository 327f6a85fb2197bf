"""End-to-end helpers: one chain, bus and persister, chosen by environment variables.

=========================== ======================================= ==========
variable                    selects                                 default
=========================== ======================================= ==========
``PERUN_TEST_CHAIN``        the chain backend (``sim``, ``eth``)    ``sim``
``PERUN_TEST_BUS``          the bus (``local``, ``tcp``)            ``local``
``PERUN_TEST_PERSISTER``    the persister (``memory``, ``leveldb``, ``memory``
                            ``rocksdb``)
=========================== ======================================= ==========

Everything is looked up through :func:`perun_core.plugins.load_plugins`, so the plugin
providing a selected name must be installed and allowed by ``PERUN_PLUGINS``; otherwise the
tests fail with the loader's "not installed" message (they never skip a selected plugin).

How each kind is set up:

- **chain**: ``sim`` is built here (manual ledger clock). Any other chain ``<name>`` is
  built by ``perun_<name>.testing.e2e_chain(tmp_path)``, an async context manager the
  plugin provides, yielding ``(backend, asset)``: a backend with the ``faucet``,
  ``balances`` and ``time_travel`` capabilities on a test ledger, and a fee-free asset
  that the faucet funds.
- **bus**: ``local`` is one shared in-process bus; ``tcp`` gives each party its own bus
  listening on ``127.0.0.1`` and tells every other party where it is.
- **persister**: ``memory`` is built with no options; any other name is built with
  ``path=<a fresh directory>`` and is treated as durable (closed and reopened on restart).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from perun_core.channel.types import Address, Asset
from perun_core.client import ClientConfig
from perun_core.interfaces.bus import Bus
from perun_core.interfaces.chain import ChainBackend
from perun_core.interfaces.persister import Persister
from perun_core.interfaces.wallet import Account
from perun_core.plugins import Plugins
from perun_core.testing.parties import Party, PartyFactory

ENV_CHAIN = "PERUN_TEST_CHAIN"
ENV_BUS = "PERUN_TEST_BUS"
ENV_PERSISTER = "PERUN_TEST_PERSISTER"

FUNDS = 1_000_000


@dataclass(frozen=True, slots=True)
class Selection:
    """The plugin combination under test."""

    chain: str
    bus: str
    persister: str

    @classmethod
    def from_env(cls) -> Selection:
        """Read the selection from the environment (defaults: sim, local, memory)."""
        return cls(
            os.environ.get(ENV_CHAIN, "").strip() or "sim",
            os.environ.get(ENV_BUS, "").strip() or "local",
            os.environ.get(ENV_PERSISTER, "").strip() or "memory",
        )

    @property
    def durable(self) -> bool:
        """Whether the persister keeps records across a close and reopen."""
        return self.persister != "memory"

    def __str__(self) -> str:
        return f"chain={self.chain} bus={self.bus} persister={self.persister}"


@dataclass(frozen=True, slots=True)
class ChainUnderTest:
    """A chain backend ready for the e2e scenarios and the asset they move."""

    backend: ChainBackend
    asset: Asset


@asynccontextmanager
async def _sim_chain(plugins: Plugins) -> AsyncIterator[ChainUnderTest]:
    backend = plugins.chain("sim").from_config({"clock": "manual"})
    try:
        yield ChainUnderTest(backend, backend.default_assets()[0])
    finally:
        await backend.close()


def chain_under_test(
    name: str, plugins: Plugins, tmp_path: Path
) -> AbstractAsyncContextManager[ChainUnderTest]:
    """The set-up of chain ``name`` (see the module docstring)."""
    plugins.chain(name)  # a clear "not installed" error before anything else
    if name == "sim":
        return _sim_chain(plugins)
    module = importlib.import_module(f"perun_{name}.testing")
    factory: Callable[[Path], AbstractAsyncContextManager[tuple[ChainBackend, Asset]]]
    factory = module.e2e_chain
    return _from_plugin(factory(tmp_path))


@asynccontextmanager
async def _from_plugin(
    setup: AbstractAsyncContextManager[tuple[ChainBackend, Asset]],
) -> AsyncIterator[ChainUnderTest]:
    async with setup as (backend, asset):
        yield ChainUnderTest(backend, asset)


class Network:
    """Buses for the parties of one test: a shared ``local`` bus or one ``tcp`` bus each."""

    def __init__(self, plugins: Plugins, kind: str, backend: ChainBackend) -> None:
        self.kind = kind
        self.factory = plugins.bus(kind)
        self.backend = backend
        self.shared: Bus | None = None
        self.buses: dict[Address, Any] = {}

    async def bus_for(self, account: Account) -> Bus:
        """The bus ``account``'s client uses (a new one replaces a closed one)."""
        if self.kind == "local":
            if self.shared is None:
                self.shared = self.factory()
            return self.shared
        if self.kind != "tcp":
            raise pytest.fail(f"no e2e set-up for bus {self.kind!r}; add one to {__file__}")
        bus = self.factory(
            account, self.backend.verify_signature, handshake_timeout=2.0, close_timeout=1.0
        )
        endpoint = await bus.listen("127.0.0.1", 0)
        for addr, other in self.buses.items():
            if addr != account.address:
                other.add_peer(account.address, endpoint)
                bus.add_peer(addr, other.endpoints[0])
        self.buses[account.address] = bus
        return bus  # type: ignore[no-any-return]

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

    def open_store(self, name: str) -> Persister:
        """The persister of party ``name`` (a durable one reopens the same directory)."""
        factory = self.plugins.persister(self.selection.persister)
        if self.selection.durable:
            store = factory(path=str(self.tmp_path / f"{name}.db"))
        else:
            store = factory()
        self.stores.append(store)
        return store

    async def new_account(self) -> Account:
        """A fresh account holding :attr:`funds` of the asset."""
        account = self.backend.wallet().new_account()
        await self.backend.faucet(account.address, self.asset, self.funds)
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
        store = persister if persister is not None else self.open_store(name)
        return await factory.make(name, account=acct, persister=store, config=config)

    async def stop(self, party: Party) -> None:
        """Stop ``party`` like a process exiting: client, its own bus, a durable store."""
        await party.client.close()
        await self.net.drop(party.account)
        if self.selection.durable:
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
