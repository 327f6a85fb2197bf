"""Named parties (a client with its account) for scenario tests on any chain backend."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from perun_core.channel.allocation import Allocation
from perun_core.channel.state import State
from perun_core.channel.types import Address, Asset
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal
from perun_core.interfaces.bus import Bus
from perun_core.interfaces.chain import ChainBackend
from perun_core.interfaces.funder import Funder
from perun_core.interfaces.persister import Persister
from perun_core.interfaces.wallet import Account
from perun_core.persistence.memory import MemoryPersister


@dataclass
class Party:
    """A named client with its account and what it was told about."""

    name: str
    client: Client
    account: Account
    persister: Persister
    new_channels: asyncio.Queue[Channel] = field(default_factory=asyncio.Queue)
    updates: list[State] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    @property
    def address(self) -> Address:
        """The party's wire address."""
        return self.client.address

    async def next_channel(self, timeout: float = 5.0) -> Channel:  # noqa: ASYNC109 - every wait has a deadline; this one takes it as an argument
        """The next channel announced to this party."""
        return await asyncio.wait_for(self.new_channels.get(), timeout)


class PartyFactory:
    """Creates started parties on one backend and bus, funded by the backend's faucet.

    Args:
        backend: the chain backend (needs the ``faucet`` capability, or pre-funded
            accounts passed to :meth:`make`).
        bus: the bus all parties share.
        funds: what the faucet gives each party's account in every default asset.
    """

    def __init__(self, backend: ChainBackend, bus: Bus, funds: int = 1_000_000) -> None:
        self.backend = backend
        self.bus = bus
        self.funds = funds
        self.made: list[Party] = []

    async def make(
        self,
        name: str,
        *,
        config: ClientConfig | None = None,
        accept: bool = True,
        account: Account | None = None,
        funder: Funder | None = None,
        persister: Persister | None = None,
    ) -> Party:
        """A started party; ``accept`` installs a proposal handler accepting everything."""
        acct = account if account is not None else self.backend.wallet().new_account()
        if account is None:
            for asset in self.backend.default_assets():
                await self.backend.faucet(acct.address, asset, self.funds)
        store: Persister = persister if persister is not None else MemoryPersister()
        client = Client(
            account=acct,
            backend=self.backend,
            bus=self.bus,
            funder=funder if funder is not None else self.backend.funder(acct),
            adjudicator=self.backend.adjudicator(acct),
            persister=store,
            config=config or ClientConfig(update_timeout=5, proposal_timeout=5),
        )
        party = Party(name, client, acct, store)
        if accept:
            client.on_proposal(lambda p, r: r.accept())
        client.on_new_channel(party.new_channels.put_nowait)
        client.on_update(lambda ch, old, new: party.updates.append(new))
        client.on_error(party.errors.append)
        await client.start()
        self.made.append(party)
        return party

    async def close(self) -> None:
        """Close every party's client."""
        for p in self.made:
            await p.client.close()


async def open_channel(
    a: Party,
    b: Party,
    asset: Asset,
    balances: tuple[int, int] = (100, 100),
    **kw: Any,
) -> tuple[Channel, Channel]:
    """``a`` proposes a channel to ``b`` (who must accept); returns both ends once funded."""
    prop = LedgerChannelProposal(
        peer=b.address, allocation=Allocation((asset,), ((balances[0], balances[1]),)), **kw
    )
    ch_a = await a.client.propose_channel(prop)
    ch_b = await b.next_channel()
    assert ch_a.id == ch_b.id
    return ch_a, ch_b
