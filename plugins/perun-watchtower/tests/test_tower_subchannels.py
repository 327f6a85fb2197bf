"""The tower protects a sub-channel while its owner is offline.

Alice and Mallory share a ledger channel with a sub-channel in it; Alice's client hands the
states of both to a tower (in this process, on a real TCP listener, with a real LevelDB
store) and then goes offline. Mallory registers the ledger channel's current state with the
sub-channel's *first* state, in which she owned more. The tower registers the tree again
with the newest sub-channel state before the window closes, and Alice, back later, withdraws
exactly her latest balance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from perun_leveldb.store import LevelDBStore
from perun_sim import SimBackend
from perun_tcp import TcpBus
from perun_watchtower import TowerConfig, Watchtower

from perun_core.channel.allocation import Allocation
from perun_core.channel.phase import Phase
from perun_core.channel.state import SignedState
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal
from perun_core.interfaces.adjudicator import AdjudicatorReq, RegisteredEvent
from perun_core.persistence.memory import MemoryPersister
from perun_core.testing.waiting import until
from perun_core.watcher import tower_wire
from perun_core.watcher.remote import RemoteWatcher

FUNDS = 1_000
CHALLENGE = 60


@pytest.fixture
async def backend() -> AsyncIterator[SimBackend]:
    b = SimBackend.from_config({"clock": "manual"})
    yield b
    await b.close()


async def test_tower_refutes_a_stale_sub_channel_state(backend: SimBackend, tmp_path: Path) -> None:
    tower_wire.register()
    asset = backend.default_assets()[0]
    wallet = backend.wallet()
    tower_acct, alice_acct, mallory_acct = (wallet.new_account() for _ in range(3))
    for a in (alice_acct, mallory_acct):
        await backend.faucet(a.address, asset, FUNDS)
    tower_bus = TcpBus.from_backend(tower_acct, backend)
    await tower_bus.listen("127.0.0.1", 0)
    tower = Watchtower(
        backend=backend,
        account=tower_acct,
        bus=tower_bus,
        store=LevelDBStore(tmp_path / "tower.db"),
        config=TowerConfig(),
    )
    await tower.start()
    buses: list[TcpBus] = []
    clients: list[Client] = []
    try:

        async def client(acct: object, cfg: ClientConfig, towers: list[RemoteWatcher]) -> Client:
            bus = TcpBus.from_backend(acct, backend)  # type: ignore[arg-type]
            await bus.listen("127.0.0.1", 0)
            buses.append(bus)
            c = Client(
                account=acct,  # type: ignore[arg-type]
                backend=backend,
                bus=bus,
                persister=MemoryPersister(),
                config=cfg,
                watchers=towers,
            )
            c.on_proposal(lambda p, r: r.accept())
            await c.start()
            clients.append(c)
            return c

        endpoint = str(tower_bus.advertised_endpoints()[0])
        remote = RemoteWatcher(tower.address, endpoint)
        # Alice's own watcher is off: only the tower protects her.
        alice = await client(alice_acct, ClientConfig(watch=False, auto_settle=False), [remote])
        mallory = await client(mallory_acct, ClientConfig(watch=False, auto_settle=False), [])
        buses[0].add_peer(mallory.address, str(buses[1].advertised_endpoints()[0]))
        buses[1].add_peer(alice.address, str(buses[0].advertised_endpoints()[0]))
        got: list[Channel] = []
        alice.on_new_channel(got.append)
        led_m = await mallory.propose_channel(
            LedgerChannelProposal(
                peer=alice.address,
                allocation=Allocation((asset,), ((100, 100),)),
                challenge_duration=CHALLENGE,
            )
        )
        sub_m = await led_m.propose_sub_channel([[40, 10]])
        first = sub_m.transaction
        assert first is not None
        for _ in range(3):
            await sub_m.send(10)  # Mallory pays Alice 30 in the sub-channel
        await until(lambda: any(c.id == sub_m.id for c in got))
        led_a = next(c for c in got if c.id == led_m.id)
        sub_a = next(c for c in got if c.id == sub_m.id)
        await until(lambda: sub_a.balances[0] == (10, 40))
        # Alice goes offline once the tower holds both channels' latest states.
        await until(lambda: sub_a.protected_version == 3 and led_a.protected_version == 1)
        alice_store = alice.persister
        await alice.close()
        # Mallory registers the current tree with her favourite sub-channel state.
        adj_m = backend.adjudicator(mallory_acct)
        led_tx = led_m.transaction
        assert led_tx is not None
        stale = {sub_m.id: SignedState.from_tx(sub_m.params, first)}
        await adj_m.register(AdjudicatorReq(led_m.params, led_tx, 0), stale)
        sub = await adj_m.subscribe(sub_m.params)
        try:
            while True:
                ev = await sub.next()
                assert isinstance(ev, RegisteredEvent)
                if ev.version == 3:
                    break  # the tower's refutation
        finally:
            await sub.close()
        await backend.advance_time(2 * CHALLENGE + 1)
        await mallory.close()  # Mallory will not help Alice settle
        # Alice returns (her store kept her channels) and withdraws her latest balance.
        bus = TcpBus.from_backend(alice_acct, backend)
        await bus.listen("127.0.0.1", 0)
        buses.append(bus)
        returned = Client(
            account=alice_acct,
            backend=backend,
            bus=bus,
            persister=alice_store,
            config=ClientConfig(update_timeout=1, sync_timeout=1),
        )
        await returned.start()
        clients.append(returned)
        sub_back = returned.channel(sub_m.id)
        await sub_back.settle()
        assert sub_back.phase == Phase.WITHDRAWN
        # Alice: 100 free in the ledger channel - 10 into the sub-channel + 40 out of it.
        assert await backend.balance_of(alice_acct.address, asset) == FUNDS - 100 + 90 + 40
    finally:
        for c in clients:
            await c.close()
        await tower.close()
        for b in buses:
            await b.close()
        await tower_bus.close()
