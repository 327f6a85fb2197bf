"""Resource limits: what strangers can make a bus hold, and that honest peers get through.

Each test keeps a payment channel between two clients (Alice and Bob, over their own
TcpBuses) paying in the background while Bob's listener is attacked, and checks that it kept
paying throughout and that its one connection was never replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from perun_sim import SimBackend
from perun_sim.crypto import verify_message
from perun_sim.wallet import SimAccount
from perun_tcp import TcpBus, frame
from perun_tcp import handshake as hs
from tcp_helpers import QUICK, closed_by_peer, identity, make_bus, open_raw

from perun_core.channel.allocation import Allocation
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal
from perun_core.persistence.memory import MemoryPersister
from perun_core.testing.bus import numbered, recv
from perun_core.testing.waiting import until
from perun_core.wire import codec
from perun_core.wire.messages import WIRE_VERSION, AuthHello

STRANGERS_SCRIPT = Path(__file__).with_name("tcp_strangers.py")
MiB = 1 << 20


@dataclass
class Payments:
    """A channel paying back and forth in the background."""

    ch_a: Channel
    ch_b: Channel
    done: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def run(self) -> None:
        while True:
            await (self.ch_a if self.done % 2 == 0 else self.ch_b).send(1)
            self.done += 1

    async def progress(self, n: int = 3) -> None:
        """Until ``n`` more payments went through (they keep going during an attack)."""
        target = self.done + n
        await until(lambda: self.done >= target or (self.task is not None and self.task.done()))
        if self.task is not None and self.task.done():
            self.task.result()  # a failed payment fails the test with its own error


@dataclass
class Honest:
    alice: SimAccount
    bob: SimAccount
    a: TcpBus
    b: TcpBus
    pay: Payments


@contextlib.asynccontextmanager
async def honest_channel(**bob_options: object) -> AsyncIterator[Honest]:
    """Alice and Bob with clients on one sim ledger, paying; Bob's bus gets ``bob_options``."""
    ledger = SimBackend.from_config({"clock": "manual"})
    asset = ledger.default_assets()[0]
    accounts = [ledger.wallet().add_seed(n) for n in (b"alice", b"bob")]
    buses = [make_bus(accounts[0]), make_bus(accounts[1], **bob_options)]
    clients: list[Client] = []
    incoming: asyncio.Queue[Channel] = asyncio.Queue()
    try:
        for acct, bus in zip(accounts, buses, strict=True):
            await ledger.faucet(acct.address, asset, 10**9)
            await bus.listen("127.0.0.1", 0)
            client = Client(
                account=acct,
                backend=ledger,
                bus=bus,
                funder=ledger.funder(acct),
                adjudicator=ledger.adjudicator(acct),
                persister=MemoryPersister(),
                config=ClientConfig(update_timeout=10, proposal_timeout=10),
            )
            client.on_proposal(lambda p, r: r.accept())
            client.on_new_channel(incoming.put_nowait)
            await client.start()
            clients.append(client)
        a, b = buses
        a.add_peer(accounts[1].address, b.endpoints[0])
        b.add_peer(accounts[0].address, a.endpoints[0])
        prop = LedgerChannelProposal(
            peer=accounts[1].address, allocation=Allocation((asset,), ((10**6, 10**6),))
        )
        ch_a = await clients[0].propose_channel(prop)
        ch_b = await asyncio.wait_for(incoming.get(), 10)
        pay = Payments(ch_a, ch_b)
        pay.task = asyncio.create_task(pay.run())
        honest = Honest(accounts[0], accounts[1], a, b, pay)
        await pay.progress()
        yield honest
        await pay.progress()  # still paying after the attack
        pay.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pay.task
        await until(lambda: ch_a.state == ch_b.state)
        assert ch_a.state.version >= pay.done
        # Every payment went over the one connection of the pair: it was never replaced.
        assert a.connection_count(accounts[1].address) == 1
        assert sum(1 for c in b._all if c.peer == accounts[0].address) == 1
        assert (next(c for c in b._all if c.peer == accounts[0].address)).seq == 1
    finally:
        for client in clients:
            await client.close()
        for bus in buses:
            await bus.close()
        await ledger.close()


@contextlib.contextmanager
def open_files_limit(at_least: int) -> Iterator[None]:
    """Raise this process's soft limit of open files (skip if the hard limit is too low)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < at_least:
        pytest.skip(f"needs {at_least} open files, the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < at_least:
        resource.setrlimit(resource.RLIMIT_NOFILE, (at_least, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def rss() -> int:
    """This process's resident memory in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# --- unauthenticated connections ---------------------------------------------------------------


async def test_2000_silent_connections_cannot_crowd_out_anyone() -> None:
    """2,000 dialers that never say a word: Bob holds at most ``max_unauthenticated`` of them
    at a time (newcomers displace the oldest), a new honest peer still gets in at once, and
    the channel pays throughout."""
    with open_files_limit(2600):
        async with honest_channel(max_unauthenticated=64) as h:
            b = h.b
            ep = str(b.endpoints[0])
            silent: list[asyncio.StreamWriter] = []
            try:
                for _ in range(10):
                    opened = await asyncio.gather(*(open_raw(ep) for _ in range(200)))
                    silent += [w for _, w in opened]
                    assert b.handshakes <= 64
                    await h.pay.progress(1)
                await until(lambda: b.displaced >= 2000 - 64)
                assert b.handshakes <= 64
                # A new honest peer's handshake takes milliseconds: it displaces a silent one.
                carol = identity("carol")
                c = make_bus(carol)
                try:
                    c.add_peer(h.bob.address, ep)
                    await c.publish(numbered(carol.address, h.bob.address, 1))
                    await until(lambda: carol.address in b.connected_peers)
                finally:
                    await c.close()
            finally:
                for w in silent:
                    w.close()
            await until(lambda: b.handshakes == 0)


async def test_unproven_hellos_never_delay_dialing_the_peer_they_claim_to_be() -> None:
    """Twenty dialers claim to be Alice but never prove it. Bob's dial to the real Alice
    goes ahead at once, while their handshakes are still open (Bob's handshake timeout is
    long, so waiting for them would take minutes)."""
    alice, bob = identity("alice"), identity("bob")
    a, b = make_bus(alice), make_bus(bob, handshake_timeout=60.0)
    claimants: list[asyncio.StreamWriter] = []
    try:
        ep_a, ep_b = await a.listen(), await b.listen()
        b.add_peer(alice.address, ep_a)
        sub_a = a.subscribe(alice.address)
        for i in range(20):
            _, writer = await open_raw(str(ep_b))
            claimants.append(writer)
            hello = AuthHello(WIRE_VERSION, alice.address, bob.address, bytes([i]) * 32)
            writer.write(frame(codec.encode(hello)))
        await until(lambda: b.handshakes == 20)
        async with asyncio.timeout(10):
            await b.publish(numbered(bob.address, alice.address, 7))
            assert await recv(sub_a) == numbered(bob.address, alice.address, 7)
        assert b.handshakes == 20  # the claimants are still waiting for their answers
    finally:
        for w in claimants:
            w.close()
        await a.close()
        await b.close()


async def test_when_every_slot_is_authenticated_a_newcomer_is_refused() -> None:
    alice, bob = identity("alice"), identity("bob")
    b = make_bus(bob, max_connections=3, max_unauthenticated=1)
    writers: list[asyncio.StreamWriter] = []
    try:
        ep = str(await b.listen())
        for i in range(3):
            reader, writer = await open_raw(ep)
            await hs.dial(reader, writer, identity(f"s{i}"), b._verify, bob.address, 2.0)
            writers.append(writer)
        await until(lambda: b.connections == 3)
        reader, writer = await open_raw(ep)
        assert await closed_by_peer(reader, writer) == b""  # closed before a word
        assert b.refused == 1 and b.connections == 3
        writers[0].close()
        await until(lambda: b.connections == 2)
        reader, writer = await open_raw(ep)  # room again
        await hs.dial(reader, writer, alice, b._verify, bob.address, 2.0)
        writers.append(writer)
        await until(lambda: alice.address in b.connected_peers)
    finally:
        for w in writers:
            w.close()
        await b.close()


# --- authenticated strangers -------------------------------------------------------------------


class Strangers:
    """``tcp_strangers.py`` in a child process (ended through its stdin, or by its own PID)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, endpoint: str, peer: SimAccount, count: int, size: int) -> Strangers:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(STRANGERS_SCRIPT),
            "--endpoint",
            endpoint,
            "--peer",
            peer.address.raw.hex(),
            "--count",
            str(count),
            "--size",
            str(size),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        except BaseException:
            proc.kill()
            await proc.wait()
            raise
        assert line == f"READY {count}", f"strangers said {line!r}"
        return cls(proc)

    async def leave(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            assert await asyncio.wait_for(self.proc.wait(), 30) == 0
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
async def test_unfinished_frames_of_300_strangers_are_freed_when_they_leave() -> None:
    """300 authenticated strangers each hold a 1 MiB frame one byte short of complete, twice.
    Bob holds what they sent while they are connected (within his limits), and gives it all
    back when they leave: with the cyclic garbage collector off, so nothing may wait for it."""
    count, size = 300, MiB
    gc.collect()
    gc.disable()
    try:
        async with honest_channel() as h:
            b = h.b
            baseline = rss()
            for _round in range(2):
                strangers = await Strangers.start(str(b.endpoints[0]), h.bob, count, size)
                try:
                    await until(lambda: b.buffered_bytes >= count * size, timeout=30)
                    assert b.connections == count + 1
                    held = rss() - baseline
                    assert held > count * size // 2  # really held: the measure can see it
                    await h.pay.progress()
                finally:
                    await strangers.leave()
                await until(lambda: b.connections == 1, timeout=10)
                assert b.buffered_bytes == 0
                await h.pay.progress()
                after = rss() - baseline
                assert after < held // 4, f"{after / MiB:.0f} MiB still held of {held / MiB:.0f}"
    finally:
        gc.enable()


async def test_a_frame_dripping_in_is_closed_at_the_frame_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Strangers send a frame a byte at a time, each byte in time for the idle timeout but
    the frame never in time: Bob closes them at ``frame_timeout``."""
    async with honest_channel(frame_timeout=0.5) as h:
        ep = str(h.b.endpoints[0])
        dripping: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for i in range(5):
            reader, writer = await open_raw(ep)
            await hs.dial(reader, writer, identity(f"drip{i}"), h.b._verify, h.bob.address, 2.0)
            writer.write((1000).to_bytes(4, "big"))
            dripping.append((reader, writer))

        async def drip() -> None:
            while True:
                for _, writer in dripping:
                    if not writer.is_closing():
                        writer.write(b"\x00")
                await asyncio.sleep(0.05)

        dripper = asyncio.create_task(drip())
        try:
            with caplog.at_level(logging.WARNING, logger="perun_tcp"):
                for reader, writer in dripping:
                    # Closed by Bob: an end of stream, or a reset (he had unread bytes).
                    with contextlib.suppress(ConnectionResetError):
                        await closed_by_peer(reader, writer, timeout=5)
                await h.pay.progress()
        finally:
            dripper.cancel()
        assert sum("FrameTimeoutError" in r.getMessage() for r in caplog.records) == 5
        await until(lambda: h.b.connections == 1)


# --- out of file descriptors -------------------------------------------------------------------


def _lower_fd_limit_to_free(free: int) -> None:
    """Set the soft limit so that exactly ``free`` descriptor numbers are unused below it."""
    probe = os.open(os.devnull, os.O_RDONLY)  # the lowest free number: listdir's own one
    os.close(probe)
    used = {int(fd) for fd in os.listdir("/proc/self/fd")} - {probe}
    limit = 0
    while limit - sum(1 for fd in used if fd < limit) < free:
        limit += 1
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts /proc/self/fd")
async def test_out_of_file_descriptors_an_honest_dialer_is_not_kept_waiting() -> None:
    """At the process's descriptor limit Bob cannot accept. He drops his oldest
    unauthenticated connection and accepts the dialer at once; with none to drop he
    refuses the dialer at once. (asyncio's own servers stop accepting for a second instead,
    again and again, until the silent dialers' handshakes time out: a minute here.)"""
    bob, carol, dave = identity("bob"), identity("carol"), identity("dave")
    b = make_bus(bob, handshake_timeout=60.0, max_unauthenticated=100)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    silent: list[asyncio.StreamWriter] = []
    writers: list[asyncio.StreamWriter] = []
    try:
        ep = await b.listen()
        for _ in range(10):
            _, w = await open_raw(str(ep))
            silent.append(w)
        await until(lambda: b.handshakes == 10)
        listener = b._servers[0][0]
        _lower_fd_limit_to_free(1)  # room for Carol's end of the connection, not for Bob's
        reader, writer = await open_raw(str(ep))
        writers.append(writer)
        await hs.dial(reader, writer, carol, b._verify, bob.address, 5.0)
        await until(lambda: carol.address in b.connected_peers)
        assert listener.exhausted >= 1 and b.displaced >= 1
        # Nobody left to drop: the dialer is refused at once (not left in the backlog).
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for w in silent:
            w.close()
        await until(lambda: b.handshakes == 0)
        await asyncio.sleep(0.05)  # the closed sockets' descriptors are released
        _lower_fd_limit_to_free(1)
        exhausted = listener.exhausted
        reader, writer = await open_raw(str(ep))
        assert await closed_by_peer(reader, writer) == b""
        assert listener.exhausted > exhausted
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        # Back to normal: Dave gets in.
        reader, writer = await open_raw(str(ep))
        writers.append(writer)
        await hs.dial(reader, writer, dave, b._verify, bob.address, 5.0)
        await until(lambda: dave.address in b.connected_peers)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for w in silent + writers:
            w.close()
        await b.close()


def test_limits_are_checked() -> None:
    bob = identity("bob")
    for bad in (
        {"max_unauthenticated": 0},
        {"max_connections": 10, "max_unauthenticated": 11},
        {"frame_timeout": 0},
    ):
        with pytest.raises(ValueError):
            TcpBus(bob, verify_message, **{**QUICK, **bad})
