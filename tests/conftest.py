"""Shared fixtures: parties on the sim chain over the in-process bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from hypothesis import settings

from perun_core.channel.allocation import Allocation
from perun_core.channel.state import State
from perun_core.channel.types import Asset
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal
from perun_core.interfaces.chain import ChainBackend
from perun_core.interfaces.wallet import Account
from perun_core.persistence.memory import MemoryPersister
from perun_core.wire.local_bus import LocalBus

# Speed is measured by the benchmarks, never by timed assertions: hypothesis examples get no
# deadline (on a loaded machine one example once took 0.4 s and failed the run).
settings.register_profile("perun", deadline=None)
settings.load_profile("perun")


FUNDS = 1_000_000


class RecordingAccount(Account):
    """Wraps an account and records every message it signs (to check the signing rules)."""

    def __init__(self, inner: Account) -> None:
        self.inner = inner
        self.signed: list[bytes] = []

    @property
    def address(self):  # type: ignore[no-untyped-def]
        return self.inner.address

    def sign(self, message: bytes) -> bytes:
        self.signed.append(message)
        return self.inner.sign(message)


@dataclass
class Party:
    """A named client with its account and the channels it was told about."""

    name: str
    client: Client
    account: Account
    persister: MemoryPersister
    new_channels: asyncio.Queue[Channel] = field(default_factory=asyncio.Queue)
    updates: list[State] = field(default_factory=list)

    @property
    def address(self):  # type: ignore[no-untyped-def]
        return self.client.address

    async def next_channel(self, timeout: float = 5.0) -> Channel:
        return await asyncio.wait_for(self.new_channels.get(), timeout)


@pytest.fixture
async def backend() -> AsyncIterator[ChainBackend]:
    from perun_sim.backend import SimBackend

    b = SimBackend.from_config({"clock": "manual"})
    yield b
    await b.close()


@pytest.fixture
def asset(backend: ChainBackend) -> Asset:
    return backend.default_assets()[0]


@pytest.fixture
def bus() -> LocalBus:
    return LocalBus()


@pytest.fixture
async def make_party(backend: ChainBackend, bus: LocalBus, asset: Asset):  # type: ignore[no-untyped-def]
    made: list[Party] = []

    async def make(
        name: str, *, config: ClientConfig | None = None, accept: bool = True, record: bool = False
    ) -> Party:
        acct: Account = backend.wallet().new_account()
        if record:
            acct = RecordingAccount(acct)
        await backend.faucet(acct.address, asset, FUNDS)
        persister = MemoryPersister()
        client = Client(
            account=acct,
            backend=backend,
            bus=bus,
            funder=backend.funder(acct),
            adjudicator=backend.adjudicator(acct),
            persister=persister,
            config=config or ClientConfig(update_timeout=5, proposal_timeout=5),
        )
        party = Party(name, client, acct, persister)
        if accept:
            client.on_proposal(lambda p, r: r.accept())
        client.on_new_channel(party.new_channels.put_nowait)
        client.on_update(lambda ch, old, new: party.updates.append(new))
        await client.start()
        made.append(party)
        return party

    yield make
    # Closing is part of the fixture so a failing test does not leak tasks.
    for p in made:
        await p.client.close()


@pytest.fixture
def funds() -> int:
    """What the faucet gives every party."""
    return FUNDS


@pytest.fixture
def open_ch():  # type: ignore[no-untyped-def]
    """``await open_ch(alice, bob, asset, (100, 100))`` opens a funded channel."""
    return open_channel


async def open_channel(
    a: Party, b: Party, asset: Asset, balances: tuple[int, int] = (100, 100), **kw: object
) -> tuple[Channel, Channel]:
    """Alice proposes, Bob accepts; returns both ends once funded."""
    prop = LedgerChannelProposal(
        peer=b.address, allocation=Allocation((asset,), ((balances[0], balances[1]),)), **kw
    )  # type: ignore[arg-type]
    ch_a = await a.client.propose_channel(prop)
    ch_b = await b.next_channel()
    assert ch_a.id == ch_b.id
    return ch_a, ch_b
