"""Two perun clients over TcpBus on one sim ledger: open, pay, survive attacks, settle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from perun_sim import SimBackend
from perun_sim.wallet import SimAccount
from perun_tcp import TcpBus, frame
from tcp_helpers import Impostor, closed_by_peer, identity, make_bus, open_raw, raw_authenticated

from perun_core.channel.allocation import Allocation
from perun_core.channel.phase import Phase
from perun_core.channel.types import Asset
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal
from perun_core.errors import AuthenticationError
from perun_core.persistence.memory import MemoryPersister
from perun_core.testing.bus import numbered

FUNDS = 1_000_000


@dataclass
class Node:
    """A client with its own TcpBus, as it would run in its own process."""

    account: SimAccount
    bus: TcpBus
    client: Client
    new_channels: asyncio.Queue[Channel] = field(default_factory=asyncio.Queue)


@pytest.fixture
async def ledger() -> AsyncIterator[SimBackend]:
    backend = SimBackend.from_config({"clock": "manual"})
    yield backend
    await backend.close()


@pytest.fixture
async def nodes(ledger: SimBackend) -> AsyncIterator[tuple[Node, Node]]:
    asset = ledger.default_assets()[0]
    made: list[Node] = []
    for name in ("alice", "bob"):
        acct = ledger.wallet().add_seed(name.encode())
        await ledger.faucet(acct.address, asset, FUNDS)
        bus = TcpBus.from_backend(acct, ledger, handshake_timeout=2.0, close_timeout=1.0)
        await bus.listen("127.0.0.1", 0)
        client = Client(
            account=acct,
            backend=ledger,
            bus=bus,
            funder=ledger.funder(acct),
            adjudicator=ledger.adjudicator(acct),
            persister=MemoryPersister(),
            config=ClientConfig(update_timeout=5, proposal_timeout=5),
        )
        node = Node(acct, bus, client)
        client.on_proposal(lambda p, r: r.accept())
        client.on_new_channel(node.new_channels.put_nowait)
        await client.start()
        made.append(node)
    a, b = made
    a.bus.add_peer(b.account.address, b.bus.endpoints[0])
    b.bus.add_peer(a.account.address, a.bus.endpoints[0])
    yield a, b
    for n in made:
        await n.client.close()
        await n.bus.close()


async def _open(
    a: Node, b: Node, asset: Asset, balances: tuple[int, int]
) -> tuple[Channel, Channel]:
    prop = LedgerChannelProposal(
        peer=b.account.address, allocation=Allocation((asset,), ((balances[0], balances[1]),))
    )
    ch_a = await a.client.propose_channel(prop)
    ch_b = await asyncio.wait_for(b.new_channels.get(), 10)
    assert ch_a.id == ch_b.id
    return ch_a, ch_b


async def _attack(bob: Node) -> None:
    """Garbage, a malformed frame, an oversize header and an impostor of Alice, all
    against Bob's listener while his channel with the real Alice is in use."""
    ep = str(bob.bus.endpoints[0])
    reader, writer = await open_raw(ep)
    writer.write(b"\x00\x00\x00\x05hello")
    await closed_by_peer(reader, writer)
    carol = identity("carol")
    reader, writer = await raw_authenticated(ep, carol, bob.account.address)
    writer.write(frame(b"\x01garbage"))
    await closed_by_peer(reader, writer)
    reader, writer = await raw_authenticated(ep, carol, bob.account.address)
    writer.write((bob.bus.max_frame_size + 1).to_bytes(4, "big"))
    await closed_by_peer(reader, writer)
    fake = make_bus(Impostor(identity("alice").address, identity("mallory")))
    fake.add_peer(bob.account.address, ep)
    try:
        with pytest.raises(AuthenticationError):  # Bob refuses it: it cannot sign as Alice
            await fake.publish(numbered(fake.address, bob.account.address, 1))
    finally:
        await fake.close()


async def test_two_clients_pay_200_times_over_tcp_and_settle(
    nodes: tuple[Node, Node], ledger: SimBackend
) -> None:
    alice, bob = nodes
    asset = ledger.default_assets()[0]
    ch_a, ch_b = await _open(alice, bob, asset, (1000, 1000))
    expected = [1000, 1000]
    for i in range(200):
        amount = i % 7 + 1
        if i % 2 == 0:
            await ch_a.send(amount)
            expected = [expected[0] - amount, expected[1] + amount]
        else:
            await ch_b.send(amount)
            expected = [expected[0] + amount, expected[1] - amount]
        if i in (50, 120):
            await _attack(bob)  # bad connections come and go; the channel does not notice
    assert ch_a.state == ch_b.state and ch_a.state.version == 200
    assert list(ch_a.balances[0]) == expected
    # Every payment travelled over the one authenticated connection of the pair.
    assert alice.bus.connection_count(bob.account.address) == 1
    await asyncio.gather(ch_a.settle(), ch_b.settle())
    assert ch_a.phase == ch_b.phase == Phase.WITHDRAWN
    assert await ledger.balance_of(alice.account.address, asset) == FUNDS - 1000 + expected[0]
    assert await ledger.balance_of(bob.account.address, asset) == FUNDS - 1000 + expected[1]


async def test_many_channels_share_one_connection(
    nodes: tuple[Node, Node], ledger: SimBackend
) -> None:
    alice, bob = nodes
    asset = ledger.default_assets()[0]
    pairs = [await _open(alice, bob, asset, (100, 100)) for _ in range(4)]

    async def pay(ch_a: Channel, ch_b: Channel) -> None:
        for i in range(30):
            await (ch_a if i % 3 else ch_b).send(1)

    await asyncio.gather(*(pay(a, b) for a, b in pairs))
    for ch_a, ch_b in pairs:
        assert ch_a.state == ch_b.state and ch_a.state.version == 30
        assert list(ch_a.balances[0]) == [100 - 20 + 10, 100 + 20 - 10]
    assert alice.bus.connection_count(bob.account.address) == 1
    assert bob.bus.connection_count(alice.account.address) == 1
    await asyncio.gather(*(c.settle() for pair in pairs for c in pair))
    assert await ledger.balance_of(alice.account.address, asset) == FUNDS - 4 * 10
    assert await ledger.balance_of(bob.account.address, asset) == FUNDS + 4 * 10
