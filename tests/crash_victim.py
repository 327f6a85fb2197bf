"""The set-up the SIGKILL tests share: a served sim ledger with a manual clock, Alice (a
client in the test process, on TCP) and a victim client in its own OS process
(:mod:`perun_core.testing.crash` over LevelDB) that can be killed at a persistence event and
spawned again on the same store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from perun_sim import SimBackend, SimClock, SimLedger
from perun_sim.server import LedgerServer
from perun_tcp import TcpBus

from perun_core.channel.types import Asset
from perun_core.client import Channel, Client, ClientConfig
from perun_core.interfaces.wallet import Account
from perun_core.testing.crash import CRASH_ENV, TRACE_ENV, CrashPoint
from perun_core.testing.peer import PeerProcess


@dataclass
class World:
    """One crash test's parts (see :func:`victim_world`)."""

    server: LedgerServer
    backend: SimBackend
    asset: Asset
    account: Account  # Alice's
    bus: TcpBus
    client: Client  # Alice's
    url: str
    tmp: Path
    name: str  # seeds the victim's key
    funds: int
    channels: asyncio.Queue[Channel] = field(default_factory=asyncio.Queue)

    async def spawn(self, crash: CrashPoint | None, n: int, listen: str) -> PeerProcess:
        """Start the victim (the ``n``-th start: trace file ``trace{n}``, funded on the first)
        on the one LevelDB store; ``crash`` arms a kill point."""
        env = {TRACE_ENV: str(self.tmp / f"trace{n}")}
        if crash is not None:
            env[CRASH_ENV] = str(crash)
        v = await PeerProcess.spawn(
            ledger_url=self.url,
            peer=self.account.address,
            peer_endpoint=str(self.bus.endpoints[0]),
            listen=listen,
            funds=self.funds if n == 0 else 0,
            seed=f"victim-{self.name}",
            persister="leveldb",
            db=str(self.tmp / "victim.db"),
            module="perun_core.testing.crash",
            env=env,
        )
        self.bus.add_peer(v.address, v.endpoint)
        return v


@asynccontextmanager
async def victim_world(
    name: str, tmp: Path, funds: int, config: ClientConfig
) -> AsyncIterator[World]:
    """Ledger, Alice (funded with ``funds``, accepting every proposal) and the means to spawn
    the victim; everything is closed on exit (the victims are the test's to close)."""
    async with LedgerServer(SimLedger(clock=SimClock.manual(0))) as server:
        url = await server.listen_tcp("127.0.0.1", 0)
        backend = SimBackend(server.ledger)
        asset = backend.default_assets()[0]
        account = backend.wallet().add_seed(f"alice-{name}".encode())
        await backend.faucet(account.address, asset, funds)
        bus = TcpBus.from_backend(account, backend, handshake_timeout=5.0, close_timeout=1.0)
        await bus.listen("127.0.0.1", 0)
        client = Client(account=account, backend=backend, bus=bus, config=config)
        world = World(server, backend, asset, account, bus, client, url, tmp, name, funds)
        client.on_proposal(lambda p, r: r.accept())
        client.on_new_channel(world.channels.put_nowait)
        try:
            await client.start()
            yield world
        finally:
            await client.close()
            await bus.close()
            await backend.close()
