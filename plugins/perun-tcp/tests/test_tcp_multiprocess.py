"""Two OS processes over TCP: thousands of envelopes, and a peer process that restarts."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from perun_sim.wallet import SimAccount
from perun_tcp import Endpoint, TcpBus
from tcp_helpers import identity, make_bus

from perun_core.channel.types import Address
from perun_core.interfaces.bus import Subscription
from perun_core.testing.bus import numbered, recv
from perun_core.testing.waiting import until

PEER_SCRIPT = Path(__file__).with_name("tcp_echo_peer.py")


class PeerProcess:
    """A ``tcp_echo_peer.py`` child process (ended by its own handle, never by name)."""

    def __init__(self, proc: asyncio.subprocess.Process, endpoint: Endpoint) -> None:
        self.proc = proc
        self.endpoint = endpoint

    @classmethod
    async def start(cls, seed: str, listen: str, count: int, start: int = 0) -> PeerProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PEER_SCRIPT),
            "--seed",
            seed,
            "--listen",
            listen,
            "--count",
            str(count),
            "--start",
            str(start),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        except BaseException:
            proc.kill()
            await proc.wait()
            raise
        assert line.startswith("READY "), f"peer process said {line!r}"
        return cls(proc, Endpoint.parse(line.split(" ", 1)[1]))

    async def finish(self) -> tuple[int, str]:
        """Close its stdin, wait for the exit code and the rest of its output."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        out = await asyncio.wait_for(self.proc.stdout.read(), 30)
        return await asyncio.wait_for(self.proc.wait(), 30), out.decode()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def alice_bus() -> AsyncIterator[tuple[TcpBus, SimAccount]]:
    alice = identity("alice")
    bus = make_bus(alice, dial_attempts=4)
    yield bus, alice
    await bus.close()


async def _exchange(
    bus: TcpBus, sub: Subscription, me: Address, peer: Address, start: int, count: int
) -> None:
    """Send ``count`` numbered envelopes (pipelined) and check every echo, in order."""

    async def send() -> None:
        for i in range(start, start + count):
            await bus.publish(numbered(me, peer, i))

    async def take() -> None:
        for i in range(start, start + count):
            assert await recv(sub, timeout=30) == numbered(peer, me, i)

    await asyncio.gather(send(), take())


async def test_two_processes_exchange_thousands_of_envelopes(
    alice_bus: tuple[TcpBus, SimAccount],
) -> None:
    bus, alice = alice_bus
    bob = identity("bob")
    peer = await PeerProcess.start("bob", "tcp://127.0.0.1:0", count=1500)
    try:
        bus.add_peer(bob.address, peer.endpoint)
        sub = bus.subscribe(alice.address)
        await _exchange(bus, sub, alice.address, bob.address, 0, 1500)
        code, out = await peer.finish()
        assert code == 0 and "DONE 1500" in out, out
    finally:
        await peer.kill()


async def test_peer_process_restart_recovers_the_connection(
    alice_bus: tuple[TcpBus, SimAccount], tmp_path: Path
) -> None:
    bus, alice = alice_bus
    bob = identity("bob")
    connects: asyncio.Queue[Address] = asyncio.Queue()

    async def on_connect(peer: Address) -> None:
        connects.put_nowait(peer)

    bus.on_connect(alice.address, on_connect)
    sub = bus.subscribe(alice.address)
    first = await PeerProcess.start("bob", "tcp://127.0.0.1:0", count=300)
    second: PeerProcess | None = None
    try:
        bus.add_peer(bob.address, first.endpoint)
        await _exchange(bus, sub, alice.address, bob.address, 0, 200)
        assert await asyncio.wait_for(connects.get(), 5) == bob.address
        # The peer process dies without a goodbye; the kernel closes its sockets.
        await first.kill()
        await until(lambda: bob.address not in bus.connected_peers)
        # It comes back on the same port; the next publish redials and everything flows.
        second = await PeerProcess.start("bob", str(first.endpoint), count=300, start=200)
        await _exchange(bus, sub, alice.address, bob.address, 200, 300)
        assert await asyncio.wait_for(connects.get(), 5) == bob.address  # on_connect again
        code, out = await second.finish()
        assert code == 0 and "DONE 300" in out, out
    finally:
        await first.kill()
        if second is not None:
            await second.kill()
