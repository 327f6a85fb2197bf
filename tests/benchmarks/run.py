"""perun-py benchmarks: one command, one table, one JSON file.

    python tests/benchmarks/run.py [--quick] [--json OUT] [--only SECTION ...]
    ./dev bench [--quick] [--json OUT]

Sections (all in one run; ``--only`` picks some):

``crypto``     the machine's limit: sign, verify (public-key recovery) and state-encoding costs
               of the sim scheme (secp256k1/SHA3 through coincurve) and of the Ethereum one
               (ABI + Keccak + EIP-191 through coincurve), and from them the update ceiling
               for two parties: an update costs 2 signatures + 2 verifications (each over the
               state's encoding), split over the 2 cores of the two processes.
``inprocess``  sequential updates on one channel, both clients in this process
               (``LocalBus`` with ``encode=True``: every message goes through the wire codec).
``tcp``        two OS processes over the TCP bus (``perun-tcp``) on a sim ledger served by a
               third: sequential updates on one channel (rate, p50/p99 latency) and pipelined
               updates over 256 and 1,024 channels; every signature is verified by the
               receiving client as always. The sequential run is repeated with both
               processes on busy-polling loops (``--busy-poll US``, ``perun_core.eventloop``).
               Repeated with each persister: memory, LevelDB and RocksDB (default options:
               every write fsynced, group-committed; ``--persisters leveldb:nosync ...``
               measures the fast mode that survives a killed process but not a power loss).
``gas``        gas per operation on anvil (the ``perun-eth`` gas test's scenario) beside the
               reference figures in docs/plugins/ethereum-contracts.md.
``scale``      100,000 channels in one client: persister write rate, restore time from
               LevelDB and memory per idle channel (measured in a fresh process).
``tower``      one watchtower (perun-watchtower) ingesting one state for each of as many
               channels as ``scale`` (100,000) over TCP into LevelDB, then restoring them in
               a fresh process: states per second, restore seconds, memory per channel
               (``tests/benchmarks/tower_bench.py``; skipped without perun-watchtower).
``startup``    a fresh ``perun plugins`` with every installed plugin and with the built-ins
               only, and ``import perun_core``: wall and CPU seconds (median of the runs).

``--quick`` uses small sizes (CI smoke run, < 60 s). Nothing here asserts a time: the
targets of issue 8 are evaluated and *reported* (``targets`` in the JSON), never enforced.
The figures and how to read them are in ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # persister_rates, bench_peer

from bench_peer import GC_ENV, LOOP_ENV, run_loop  # noqa: E402
from perun_sim import SimBackend  # noqa: E402

from perun_core import eventloop  # noqa: E402
from perun_core.channel import Address, Allocation, Params, Phase, State, Transaction  # noqa: E402
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal  # noqa: E402
from perun_core.interfaces import ChannelRecord, Persister  # noqa: E402
from perun_core.interfaces.bus import Bus, Subscription  # noqa: E402
from perun_core.persistence import MemoryPersister  # noqa: E402
from perun_core.plugins import load_plugins  # noqa: E402
from perun_core.wire.codec import encode_envelope  # noqa: E402
from perun_core.wire.local_bus import LocalBus  # noqa: E402
from perun_core.wire.messages import Envelope  # noqa: E402

SECTIONS = ("crypto", "inprocess", "tcp", "gas", "scale", "tower", "startup")
PERSISTERS = ("memory", "leveldb", "rocksdb")
PERSISTER_CHOICES = (
    *PERSISTERS,
    "leveldb:nosync",
    "rocksdb:nosync",
    "leveldb:sync",
    "rocksdb:sync",
)
KIB = 1024


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each section does."""

    crypto_iters: int
    seq_updates: int
    pipelined_channels: tuple[int, ...]
    pipelined_updates: int  # per pipelined run, spread over its channels
    repeats: int  # pipelined runs per channel count; the median is reported
    scale_channels: int
    rates_per_channel: int  # persister_rates: updates per channel, 256 channels
    startup_runs: int  # fresh processes per startup figure


FULL = Sizes(  # sizes of the full run
    crypto_iters=4000,
    seq_updates=4000,
    pipelined_channels=(256, 1024),
    pipelined_updates=24_576,
    repeats=3,
    scale_channels=100_000,
    rates_per_channel=16,
    startup_runs=15,
)
QUICK = Sizes(
    crypto_iters=300,
    seq_updates=200,
    pipelined_channels=(16, 64),
    pipelined_updates=1024,
    repeats=1,
    scale_channels=2_000,
    rates_per_channel=2,
    startup_runs=3,
)


# --- output -------------------------------------------------------------------------------


def row(name: str, value: float | str, unit: str = "", note: str = "") -> None:
    """Print one line of the table."""
    if isinstance(value, float):
        text = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    else:
        text = str(value)
    print(f"  {name:<46} {text:>14} {unit:<10} {note}", flush=True)


def heading(title: str) -> None:
    print(f"\n{title}", flush=True)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    versions: dict[str, str] = {}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("coincurve", "msgspec", "plyvel", "rocksdict", "perun-core"):
        with contextlib.suppress(PackageNotFoundError):
            versions[dist] = version(dist)
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": versions,
    }


# --- crypto: the machine's limit -------------------------------------------------------------


def _time_us(fn: Callable[[], object], n: int) -> float:
    """Best of three runs of ``n`` calls, microseconds per call (the least disturbed run)."""
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n * 1e6)
    return best


def crypto(sizes: Sizes) -> dict[str, Any]:
    """Per-operation costs and the two-party update ceiling derived from them."""
    from perun_sim import crypto as sim_crypto
    from perun_sim import encoding as sim_enc

    heading("crypto (µs per operation; best of 3)")
    n = sizes.crypto_iters
    backend = SimBackend()
    a = backend.wallet().add_seed(b"bench-crypto-a")
    b = backend.wallet().add_seed(b"bench-crypto-b")
    asset = backend.default_assets()[0]
    params = Params(
        challenge_duration=60,
        participants=(a.address, b.address),
        nonce=secrets.randbits(255),
        app=backend.payment_app_id(),
    ).with_id(backend)
    state = State(params.id, 12_345, Allocation((asset,), ((10**18, 2 * 10**18),)), app=params.app)
    sig = backend.sign_state(a, state)
    digest = sim_enc.hash_state(state)
    sim = {
        "encode_state_us": _time_us(lambda: sim_enc.encode_state(state), n),
        "hash_state_us": _time_us(lambda: sim_enc.hash_state(state), n),
        "sign_digest_us": _time_us(lambda: a.sign_digest(digest), n),
        "recover_digest_us": _time_us(lambda: sim_crypto.recover_address(digest, sig), n),
        "sign_state_us": _time_us(lambda: backend.sign_state(a, state), n),
        "verify_state_us": _time_us(lambda: backend.verify_state(a.address, state, sig), n),
    }
    for k, v in sim.items():
        row(f"sim {k[:-3]}", v, "µs")
    # An update: the proposer signs, the responder verifies and signs, the proposer verifies.
    per_update = 2 * sim["sign_state_us"] + 2 * sim["verify_state_us"]
    cores = min(2, os.cpu_count() or 1)
    two_process = cores * 1e6 / per_update
    ceiling = {
        "per_update_cpu_us": per_update,
        "two_process_updates_per_s": two_process,
        "one_core_updates_per_s": 1e6 / per_update,
        "cores": cores,
        "formula": "cores / (2 sign_state + 2 verify_state)",
    }
    row("update: 2 sign + 2 verify (CPU)", per_update, "µs")
    row(f"ceiling, two processes on {cores} cores", two_process, "upd/s")
    row("ceiling, one core", 1e6 / per_update, "upd/s")
    out: dict[str, Any] = {"sim": sim, "ceiling": ceiling}
    try:
        from perun_eth import encoding as eth
    except ImportError as err:
        out["eth"] = {"skipped": f"perun-eth not installed ({err})"}
        return out
    key = eth.private_key(eth.keccak256(b"bench-eth"))
    eaddr = eth.address_of(key)
    eparams = Params(
        challenge_duration=60,
        participants=(eaddr, Address(b"\x22" * 20)),
        nonce=secrets.randbits(255),
        backend="eth",
    )
    eparams = Params(
        challenge_duration=60,
        participants=eparams.participants,
        nonce=eparams.nonce,
        backend="eth",
        id=eth.channel_id(eparams),
    )
    from perun_core.channel import Asset

    easset = Asset(31337, b"\x33" * 20)
    estate = State(eparams.id, 12_345, Allocation((easset,), ((10**18, 2 * 10**18),)))
    esig = eth.sign_state(key, estate)
    edigest = eth.signed_digest(estate)
    e: dict[str, float] = {
        "encode_state_us": _time_us(lambda: eth.encode_state(estate), n),
        "signed_digest_us": _time_us(lambda: eth.signed_digest(estate), n),
        "sign_digest_us": _time_us(lambda: eth.sign_digest(key, edigest), n),
        "recover_digest_us": _time_us(lambda: eth.recover_digest(edigest, esig), n),
        "sign_state_us": _time_us(lambda: eth.sign_state(key, estate), n),
        "verify_state_us": _time_us(lambda: eth.verify_state(eaddr, estate, esig), n),
    }
    for k, v in e.items():
        row(f"eth {k[:-3]}", v, "µs")
    e_update = 2 * e["sign_state_us"] + 2 * e["verify_state_us"]
    e["ceiling_two_process_updates_per_s"] = cores * 1e6 / e_update
    row("eth ceiling, two processes", e["ceiling_two_process_updates_per_s"], "upd/s")
    out["eth"] = e
    return out


# --- shared client plumbing ----------------------------------------------------------------


def _config() -> ClientConfig:
    # Generous timeouts: a loaded machine must slow the benchmark down, not fail it.
    return ClientConfig(update_timeout=60, proposal_timeout=120, busy_timeout=300)


async def _open_channels(
    client: Client, peer: Address, asset: Any, count: int, deposit: int, parallel: int = 32
) -> list[Channel]:
    sem = asyncio.Semaphore(parallel)

    async def one() -> Channel:
        async with sem:
            return await client.propose_channel(
                LedgerChannelProposal(
                    peer=peer, allocation=Allocation((asset,), ((deposit, deposit),))
                )
            )

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def _sequential(ch: Channel, n: int, warmup: int = 50) -> dict[str, float]:
    for _ in range(warmup):
        await ch.send(1)
    lat: list[float] = []
    cpu = _cpu_seconds()
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        await ch.send(1)
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu
    lat.sort()
    return {
        "updates": n,
        "seconds": wall,
        "updates_per_s": n / wall,
        "p50_ms": _percentile(lat, 0.50) * 1e3,
        "p99_ms": _percentile(lat, 0.99) * 1e3,
        "max_ms": lat[-1] * 1e3,
        "cpu_this_process_s": cpu,
    }


async def _pipelined(channels: list[Channel], total: int) -> dict[str, float]:
    per = max(1, total // len(channels))
    await asyncio.gather(*(ch.send(1) for ch in channels))  # warm every channel

    async def drive(ch: Channel) -> None:
        for _ in range(per):
            await ch.send(1)

    cpu = _cpu_seconds()
    start = time.perf_counter()
    await asyncio.gather(*(drive(ch) for ch in channels))
    wall = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu
    n = per * len(channels)
    return {
        "channels": len(channels),
        "updates": n,
        "seconds": wall,
        "updates_per_s": n / wall,
        "cpu_this_process_s": cpu,
    }


# --- in-process -------------------------------------------------------------------------------


async def inprocess(sizes: Sizes) -> dict[str, Any]:
    """Sequential updates on one channel, both clients in this process, wire codec included."""
    heading("in-process (LocalBus encode=True, memory persister, one channel)")
    backend = SimBackend.from_config({"clock": "manual"})
    asset = backend.default_assets()[0]
    bus = LocalBus(encode=True)
    clients = []
    for name in (b"bench-in-a", b"bench-in-b"):
        acct = backend.wallet().add_seed(name)
        await backend.faucet(acct.address, asset, 10**30)
        c = Client(
            account=acct,
            backend=backend,
            bus=bus,
            funder=backend.funder(acct),
            adjudicator=backend.adjudicator(acct),
            config=_config(),
        )
        c.on_proposal(lambda p, r: r.accept())
        await c.start()
        clients.append(c)
    try:
        (ch,) = await _open_channels(clients[0], clients[1].address, asset, 1, 10**18)
        seq = await _sequential(ch, sizes.seq_updates)
        _check_versions(ch, clients[1].channel(ch.id))
    finally:
        for c in clients:
            await c.close()
        await backend.close()
    row("sequential", seq["updates_per_s"], "upd/s")
    row("latency p50 / p99", f"{seq['p50_ms']:.3f} / {seq['p99_ms']:.3f}", "ms")
    return {"sequential": seq}


def _check_versions(mine: Channel, theirs: Channel) -> None:
    # Not a timing check: both sides must agree on every update the benchmark counted.
    if mine.state != theirs.state:
        raise RuntimeError(f"the parties disagree: {mine.state} vs {theirs.state}")


# --- two processes over TCP ------------------------------------------------------------------


class _Child:
    """A child process speaking JSON lines (the served ledger or the benchmark peer)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *argv: str, ready_timeout: float = 60) -> tuple[_Child, str]:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        child = cls(proc)
        try:
            line = await asyncio.wait_for(child._line(), ready_timeout)
        except BaseException:
            await child.kill()
            raise
        return child, line

    async def _line(self) -> str:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child {self.proc.pid} exited ({await self.proc.wait()})")
        return line.decode()

    async def call(self, cmd: str, timeout: float = 60, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        answer: dict[str, Any] = json.loads(await asyncio.wait_for(self._line(), timeout))
        if not answer.get("ok"):
            raise RuntimeError(f"child {cmd} failed: {answer}")
        return answer

    async def quit(self, timeout: float = 20) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call("quit", timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), timeout)
        await self.kill()

    async def terminate(self, timeout: float = 10) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()  # SIGTERM to its PID
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), timeout)
        await self.kill()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


async def _ledger_process() -> tuple[_Child, str]:
    child, line = await _Child.start(
        sys.executable, "-m", "perun_sim.server", "--manual-clock", "--port", "0"
    )
    if "listening on" not in line:
        await child.kill()
        raise RuntimeError(f"the ledger server said {line!r}")
    return child, line.rsplit(" ", 1)[1].strip()


def _persister(spec: str, path: str) -> Persister:
    from persister_rates import parse_persister

    name, options = parse_persister(spec)
    if name == "memory":
        return MemoryPersister()
    made: Persister = load_plugins().persister(name)(path=path, **options)
    return made


async def _sequential_busy_poll(
    ch: Channel, n: int, peer: _Child, spin_us: float
) -> dict[str, Any] | None:
    """The sequential run again, both processes polling ``spin_us`` before they sleep.

    ``None`` when switched off (``--busy-poll 0``) or the loop cannot poll (uvloop).
    """
    loop = asyncio.get_running_loop()
    if spin_us <= 0 or not eventloop.set_busy_poll(loop, spin_us):
        return None
    try:
        if not (await peer.call("busy_poll", us=spin_us))["ok"]:
            return None
        c0 = await peer.call("rusage")
        res = await _sequential(ch, n)
        c1 = await peer.call("rusage")
        res["cpu_peer_process_s"] = _cpu_of(c1) - _cpu_of(c0)
        res["busy_poll_us"] = spin_us
        return res
    finally:
        eventloop.set_busy_poll(loop, 0)
        await peer.call("busy_poll", us=0)


async def tcp_pair(
    sizes: Sizes,
    persister: str,
    ledger_url: str,
    ceiling: float,
    tmp: str,
    busy_poll_us: float = 0,
) -> dict[str, Any]:
    """One pair of processes with ``persister`` on both sides: sequential, then pipelined."""
    from perun_tcp import TcpBus

    heading(f"two processes over TCP, persister {persister}")
    backend = SimBackend.from_config({"url": ledger_url})
    await backend.connect()
    account = backend.wallet().add_seed(f"bench-alice-{persister}-{secrets.token_hex(4)}".encode())
    asset = backend.default_assets()[0]
    n_channels = max(sizes.pipelined_channels)
    deposit = 10**15
    await backend.faucet(account.address, asset, deposit * (n_channels + 1))
    bus = TcpBus.from_backend(account, backend, handshake_timeout=30, close_timeout=2)
    await bus.listen("127.0.0.1", 0)
    db_dir = Path(tmp, persister.replace(":", "-"))
    db_dir.mkdir(parents=True, exist_ok=True)
    client = Client(
        account=account,
        backend=backend,
        bus=bus,
        funder=backend.funder(account),
        adjudicator=backend.adjudicator(account),
        persister=_persister(persister, str(db_dir / "alice.db")),
        config=_config(),
    )
    await client.start()
    argv = [
        sys.executable,
        str(HERE / "bench_peer.py"),
        "--ledger",
        ledger_url,
        "--peer",
        account.address.hex(),
        "--peer-endpoint",
        str(bus.endpoints[0]),
        "--persister",
        persister,
        "--funds",
        str(deposit * (n_channels + 1)),
    ]
    if persister != "memory":
        argv += ["--db", str(db_dir / "bob.db")]
    bob: _Child | None = None
    try:
        bob, hello = await _Child.start(*argv)
        info = json.loads(hello)
        bob_addr = Address.from_hex(info["address"])
        bus.add_peer(bob_addr, info["endpoint"])
        t = time.perf_counter()
        chans = await _open_channels(client, bob_addr, asset, n_channels, deposit)
        opened = time.perf_counter() - t
        row(f"opened {n_channels} channels (set-up, not a target)", opened, "s")
        gc.collect()
        bob_cpu0 = await bob.call("rusage")
        seq = await _sequential(chans[0], sizes.seq_updates)
        bob_cpu1 = await bob.call("rusage")
        seq["cpu_peer_process_s"] = _cpu_of(bob_cpu1) - _cpu_of(bob_cpu0)
        row("sequential, one channel", seq["updates_per_s"], "upd/s")
        row("latency p50 / p99", f"{seq['p50_ms']:.3f} / {seq['p99_ms']:.3f}", "ms")
        seq_poll = await _sequential_busy_poll(chans[0], sizes.seq_updates, bob, busy_poll_us)
        if seq_poll is not None:
            row(
                f"sequential, busy-polling loops ({busy_poll_us:g} µs)",
                seq_poll["updates_per_s"],
                "upd/s",
            )
            row(
                "latency p50 / p99",
                f"{seq_poll['p50_ms']:.3f} / {seq_poll['p99_ms']:.3f}",
                "ms",
            )
        pipelined = []
        for k in sizes.pipelined_channels:
            runs = []
            for _ in range(sizes.repeats):
                gc.collect()
                c0 = await bob.call("rusage")
                one = await _pipelined(chans[:k], sizes.pipelined_updates)
                c1 = await bob.call("rusage")
                one["cpu_peer_process_s"] = _cpu_of(c1) - _cpu_of(c0)
                cpu = one["cpu_this_process_s"] + one["cpu_peer_process_s"]
                one["cpu_us_per_update"] = cpu / one["updates"] * 1e6
                one["cpu_utilisation"] = cpu / one["seconds"]
                runs.append(one)
            # The median run (a shared machine's figures scatter by +-15 %).
            res: dict[str, Any] = dict(
                sorted(runs, key=lambda r: r["updates_per_s"])[len(runs) // 2]
            )
            res["ratio_to_ceiling"] = res["updates_per_s"] / ceiling
            res["runs_updates_per_s"] = [r["updates_per_s"] for r in runs]
            pipelined.append(res)
            row(
                f"pipelined, {k} channels",
                res["updates_per_s"],
                "upd/s",
                f"{res['ratio_to_ceiling']:.0%} of ceiling, "
                f"{res['cpu_us_per_update']:.0f} µs CPU/update, {res['cpu_utilisation']:.2f} cores",
            )
        # Both processes must hold every update: the sum of versions matches.
        count = await bob.call("count")
        mine = sum(c.state.version for c in client.channels)
        if count["versions"] != mine or count["channels"] != len(client.channels):
            raise RuntimeError(f"the peer process disagrees: {count} vs {mine}")
        return {
            "opened_channels": n_channels,
            "open_s": opened,
            "sequential": seq,
            "sequential_busy_poll": seq_poll,
            "pipelined": pipelined,
        }
    finally:
        if bob is not None:
            await bob.quit()
        await client.close()
        await bus.close()
        await backend.close()


def _cpu_of(r: dict[str, Any]) -> float:
    return float(r["user"]) + float(r["system"])


async def tcp(
    sizes: Sizes, ceiling: float, persisters: list[str], busy_poll_us: float = 0
) -> dict[str, Any]:
    """Every persister's two-process run, on one served ledger."""
    out: dict[str, Any] = {}
    available = load_plugins().persisters
    ledger, url = await _ledger_process()
    tmp = tempfile.mkdtemp(prefix="perun-bench-")
    try:
        for name in persisters:
            if name.partition(":")[0] not in available:
                out[name] = {"skipped": f"persister plugin {name!r} not installed"}
                heading(f"two processes over TCP, persister {name}: skipped (not installed)")
                continue
            # Busy polling is measured once, with the in-memory persister.
            poll = busy_poll_us if name == "memory" else 0
            out[name] = await tcp_pair(sizes, name, url, ceiling, tmp, poll)
    finally:
        await ledger.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    mem = out.get("memory", {})
    for name in out:
        res = out[name]
        if name == "memory":
            continue
        if "pipelined" in res and "pipelined" in mem:
            for r, m in zip(res["pipelined"], mem["pipelined"], strict=True):
                r["ratio_to_memory"] = r["updates_per_s"] / m["updates_per_s"]
            res["sequential"]["ratio_to_memory"] = (
                res["sequential"]["updates_per_s"] / mem["sequential"]["updates_per_s"]
            )
    return out


# --- gas ----------------------------------------------------------------------------------


def gas() -> dict[str, Any]:
    """Gas per operation of the perun-eth gas test's scenario, beside the reference."""
    heading("gas per operation on anvil (ours, reference, ratio)")
    tests = ROOT / "plugins" / "perun-eth" / "tests"
    try:
        from perun_eth.testing import AnvilNode, AnvilNotFoundError, deploy_contracts, find_anvil
    except ImportError as e:
        print("  skipped: perun-eth not installed")
        return {"skipped": f"perun-eth not installed ({e})"}
    try:
        find_anvil()
    except AnvilNotFoundError as e:
        print(f"  skipped: {e}")
        return {"skipped": str(e)}
    sys.path.insert(0, str(tests))
    try:
        import test_gas  # type: ignore[import-not-found]  # the gas test's scenario, as is
        from eth_helpers import Chain  # type: ignore[import-not-found]
        from gas_reference import REFERENCE  # type: ignore[import-not-found]
        from web3 import Web3
    finally:
        sys.path.remove(str(tests))
    with AnvilNode() as node:
        w3 = Web3(Web3.HTTPProvider(node.url))
        dep = deploy_contracts(w3, w3.eth.accounts[0], token_holders=w3.eth.accounts[:4])
        chain = Chain(node, w3, dep)
        # The test asserts "no more than the reference"; here we only report.
        with contextlib.suppress(AssertionError):
            test_gas.test_gas_per_operation(chain)
        chain.gas.update(_app_gas(node, dep))
    ops = []
    for name, used in chain.gas.items():
        ref = REFERENCE.get(name)
        ratio = used / ref if ref else None
        ops.append({"operation": name, "gas": used, "reference": ref, "ratio": ratio})
        note = f"{ratio:.3f}x" if ratio is not None else ""
        row(name, f"{used:,}", f"{ref or 0:,}", note)
    runtime = [o for o in ops if o["ratio"] is not None and not o["operation"].startswith("deploy")]
    worst = max(runtime, key=lambda o: o["ratio"]) if runtime else None
    if worst is not None:
        row("worst operation (not counting deployments)", worst["ratio"], "x", worst["operation"])
    return {
        "operations": ops,
        "max_ratio": worst["ratio"] if worst else None,
        "max_ratio_operation": worst["operation"] if worst else None,
    }


def _app_gas(node: Any, dep: Any) -> dict[str, int]:
    """Gas of ``progress`` with the perun-apps apps (tic-tac-toe move, HTLC claim/refund), if
    perun-apps is installed (its contracts are then part of ``dep``)."""
    if not {"tictactoe", "htlc"} <= set(getattr(dep, "apps", {})):
        print("  (perun-apps not installed: no app gas)")
        return {}
    tests = ROOT / "plugins" / "perun-apps" / "tests"
    sys.path.insert(0, str(tests))
    try:
        import test_apps_gas  # type: ignore[import-not-found]  # the apps' gas scenario
    finally:
        sys.path.remove(str(tests))
    gas: dict[str, int] = test_apps_gas.measure_on(node, dep)
    return gas


# --- scale ---------------------------------------------------------------------------------


def _records(n: int, peers: int) -> Iterator[ChannelRecord]:
    """``n`` funded, idle channel records of one client, signed by both parties."""
    backend = SimBackend()
    wallet = backend.wallet()
    me = wallet.add_seed(b"bench-scale-me")
    others = [wallet.add_seed(f"bench-scale-peer-{i}".encode()) for i in range(peers)]
    asset = backend.default_assets()[0]
    for i in range(n):
        other = others[i % peers]
        params = Params(
            challenge_duration=3600,
            participants=(me.address, other.address),
            nonce=i + 1,
            app=backend.payment_app_id(),
        ).with_id(backend)
        st = State(params.id, 7, Allocation((asset,), ((10**18 - 7, 10**18 + 7),)), params.app)
        tx = Transaction(st, (backend.sign_state(me, st), backend.sign_state(other, st)))
        yield ChannelRecord(params, 0, (me.address, other.address), Phase.ACTING, tx)


class _SilentSubscription(Subscription):
    def __init__(self) -> None:
        self._closed = asyncio.Event()

    async def next(self) -> Envelope | None:
        await self._closed.wait()
        return None

    def close(self) -> None:
        self._closed.set()


class _SilentPeersBus(Bus):
    """Every peer is reachable and takes what we send, but never answers.

    The scale test's restored client sends each channel's sync message (see docs/protocols.md)
    and then holds the channel idle, waiting for the peer, as after a restart with the peers
    online but slow; an unreachable peer would leave a failed send behind instead.
    """

    name = "silent"

    def __init__(self) -> None:
        self.sent = 0

    async def publish(self, envelope: Envelope) -> None:
        encode_envelope(envelope)  # what a real bus would do with it
        self.sent += 1

    def subscribe(self, address: Address) -> Subscription:
        return _SilentSubscription()


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // KIB


async def _restore_child(path: str, persister: str, watch: bool) -> dict[str, Any]:
    """Run in a fresh process: restore every channel of ``path`` into one client."""
    backend = SimBackend.from_config({"clock": "manual"})
    me = backend.wallet().add_seed(b"bench-scale-me")
    store = load_plugins().persister(persister)(path=path)
    bus = _SilentPeersBus()
    client = Client(
        account=me,
        backend=backend,
        bus=bus,
        funder=backend.funder(me),
        adjudicator=backend.adjudicator(me),
        persister=store,
        config=ClientConfig(watch=watch),
    )
    gc.collect()
    rss0 = _rss_kib()
    t = time.perf_counter()
    await client.start()
    start_s = time.perf_counter() - t
    # Restored: every channel is loaded, its sync message sent and its watcher subscribed.
    # (The client's background work is private; a benchmark may look.)
    n = len(client.channels)
    while bus.sent < n:
        await asyncio.sleep(0.005)
    while any(not task.done() for task in client._engine.tasks):
        await asyncio.sleep(0.005)
    for _ in range(3):
        await asyncio.sleep(0)  # the watchers' first steps (subscribing)
    restore_s = time.perf_counter() - t
    n = len(client.channels)
    gc.collect()
    rss1 = _rss_kib()
    sample = client.channels[n // 2]
    ok = sample.phase == Phase.ACTING and sample.state.version == 7
    await client.close()
    await store.close()
    return {
        "channels": n,
        "restore_s": restore_s,
        "start_returned_s": start_s,
        "sync_messages_sent": bus.sent,
        "rss_before_kib": rss0,
        "rss_after_kib": rss1,
        "bytes_per_channel": (rss1 - rss0) * KIB / max(1, n),
        "sample_ok": ok,
        "watch": watch,
    }


async def scale(sizes: Sizes) -> dict[str, Any]:
    """Write N channel records to LevelDB, restore them in a fresh process, measure memory."""
    n = sizes.scale_channels
    heading(f"scale: {n:,} channels in one client")
    name = "leveldb"
    out: dict[str, Any] = {"channels": n, "persister": name}
    if name in load_plugins().persisters:
        await _scale_restore(n, name, out)
    else:
        out["skipped"] = "perun-leveldb not installed: restoring needs a durable store"
        print("  restore: skipped (perun-leveldb not installed)")
    # Update events through the persister, 256 channels at once (persister_rates.py).
    from persister_rates import _stores, measure

    stores = _stores()
    rates = {}
    for sname in ("memory", "leveldb sync", "leveldb nosync", "rocksdb sync", "rocksdb nosync"):
        if sname in stores:
            rates[sname] = await measure(stores[sname], 256, sizes.rates_per_channel)
            row(f"persister update events ({sname}, 256 ch)", rates[sname]["events_per_s"], "ev/s")
    out["update_events_256_channels"] = rates
    return out


async def _scale_restore(n: int, name: str, out: dict[str, Any]) -> None:
    tmp = tempfile.mkdtemp(prefix="perun-bench-scale-")
    try:
        t = time.perf_counter()
        records = list(_records(n, peers=16))
        row("built and signed the records (set-up)", time.perf_counter() - t, "s")
        path = str(Path(tmp, "scale.db"))
        # The bulk load is set-up for the restore (one channel after the other: an fsync each
        # would take minutes), so it runs without fsync; the restore opens with the defaults.
        store = load_plugins().persister(name)(path=path, sync=False)
        t = time.perf_counter()
        for rec in records:
            await store.channel_created(rec)
        write_s = time.perf_counter() - t
        await store.close()
        del records
        out["write_records_per_s"] = n / write_s
        row(
            f"persister write rate ({name} sync=False, channel_created)",
            out["write_records_per_s"],
            "rec/s",
        )
        for watch in (True, False):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--restore-child",
                path,
                "--restore-persister",
                name,
                *([] if watch else ["--restore-no-watch"]),
                stdout=asyncio.subprocess.PIPE,
            )
            stdout, _ = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"the restore process failed ({proc.returncode})")
            res = json.loads(stdout.decode().strip().splitlines()[-1])
            if res["channels"] != n or not res["sample_ok"]:
                raise RuntimeError(f"restore lost channels: {res}")
            key = "restore" if watch else "restore_no_watcher"
            out[key] = res
            what = "watchtower on" if watch else "watchtower off"
            row(f"restore from {name} ({what})", res["restore_s"], "s")
            row(f"memory per idle channel ({what})", res["bytes_per_channel"], "bytes")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- startup -----------------------------------------------------------------------------------


def _fresh_process(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one child process running ``argv``."""
    import subprocess

    before = os.times()
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def tower(sizes: Sizes) -> dict[str, Any]:
    """The watchtower's ingest rate, restore time and memory per channel (own processes)."""
    heading(f"watchtower ({sizes.scale_channels:,} channels, LevelDB, fsync)")
    try:
        import perun_watchtower  # noqa: F401 - only to see whether it is installed
    except ImportError:
        row("skipped", "-", "", "perun-watchtower is not installed")
        return {"skipped": "perun-watchtower is not installed"}
    with tempfile.TemporaryDirectory(prefix="perun-bench-tower-") as tmp:
        out = Path(tmp) / "tower.json"
        cmd = [sys.executable, str(HERE / "tower_bench.py"), "--channels"]
        cmd += [str(sizes.scale_channels), "--json", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        res: dict[str, Any] = json.loads(out.read_text())["tower"]
    row("ingest (acknowledged after the durable write)", res["ingest_states_per_s"], "states/s")
    row("restore in a fresh process", res["restore_seconds"], "s")
    row("memory per watched channel", float(res["memory_per_channel_bytes"]), "bytes")
    return res


def startup(sizes: Sizes) -> dict[str, Any]:
    """How long a ``perun`` command takes before it does anything: loading every installed
    plugin must cost about as little as loading none (the plugins register by reference)."""
    heading("startup (fresh processes; median)")
    base = {
        k: v for k, v in os.environ.items() if k not in ("PERUN_PLUGINS", "PERUN_DISABLE_PLUGINS")
    }
    cases = {
        "perun plugins, every installed plugin": (
            [sys.executable, "-m", "perun_core.cli", "plugins"],
            base,
        ),
        "perun plugins, built-ins only": (
            [sys.executable, "-m", "perun_core.cli", "plugins"],
            {**base, "PERUN_PLUGINS": ""},
        ),
        "python -c 'import perun_core'": ([sys.executable, "-c", "import perun_core"], base),
        "python -c pass (the interpreter alone)": ([sys.executable, "-c", "pass"], base),
    }
    out: dict[str, Any] = {"plugins": sorted(load_plugins().names()), "runs": sizes.startup_runs}
    for name, (argv, env) in cases.items():
        _fresh_process(argv, env)  # warm the file cache and the bytecode
        runs = [_fresh_process(argv, env) for _ in range(sizes.startup_runs)]
        wall = sorted(r[0] for r in runs)[len(runs) // 2]
        cpu = sorted(r[1] for r in runs)[len(runs) // 2]
        out[name] = {"wall_s": wall, "cpu_s": cpu}
        row(name, wall * 1000, "ms wall", f"{cpu * 1000:.0f} ms CPU")
    return out


# --- targets ---------------------------------------------------------------------------------


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 8's targets against this run's figures (reported, never asserted)."""
    out: list[dict[str, Any]] = []

    def add(what: str, value: float | None, goal: str, met: bool | None) -> None:
        out.append({"target": what, "value": value, "goal": goal, "met": met})

    tcp_res = result.get("tcp", {})
    mem = tcp_res.get("memory", {})
    for p in mem.get("pipelined", []):
        if p["channels"] >= 256:
            add(
                f"pipelined TCP, {p['channels']} channels",
                p["updates_per_s"],
                ">= 10,000 upd/s",
                p["updates_per_s"] >= 10_000,
            )
            add(
                f"pipelined TCP, {p['channels']} channels, share of ceiling",
                p["ratio_to_ceiling"],
                ">= 0.70",
                p["ratio_to_ceiling"] >= 0.70,
            )
    seq = mem.get("sequential")
    if seq:
        add("sequential TCP", seq["updates_per_s"], ">= 2,500 upd/s", seq["updates_per_s"] >= 2500)
        add("sequential TCP p99 latency (ms)", seq["p99_ms"], "< 2 ms", seq["p99_ms"] < 2)
    seq = mem.get("sequential_busy_poll")
    if seq:
        how = f"busy-polling loops ({seq['busy_poll_us']:g} µs)"
        rate = seq["updates_per_s"]
        add(f"sequential TCP, {how}", rate, ">= 2,500 upd/s", rate >= 2500)
        add(f"... p99 latency (ms), {how}", seq["p99_ms"], "< 2 ms", seq["p99_ms"] < 2)
    for name in ("leveldb", "rocksdb"):
        for p in tcp_res.get(name, {}).get("pipelined", []):
            if p["channels"] >= 256 and "ratio_to_memory" in p:
                add(
                    f"{name} pipelined {p['channels']} ch, share of memory rate",
                    p["ratio_to_memory"],
                    ">= 0.70",
                    p["ratio_to_memory"] >= 0.70,
                )
    g = result.get("gas", {})
    if g.get("max_ratio") is not None:
        add(
            f"gas, worst operation ({g['max_ratio_operation']})",
            g["max_ratio"],
            "<= 0.85x",
            g["max_ratio"] <= 0.85,
        )
    st = result.get("startup", {}).get("perun plugins, every installed plugin")
    if st:
        wall = st["wall_s"]
        add("perun plugins, every installed plugin (s)", wall, "< 0.4 s", wall < 0.4)
    sc = result.get("scale", {})
    if "restore" in sc and sc["channels"] >= 100_000:
        r, bare = sc["restore"], sc.get("restore_no_watcher", {})
        per = r["bytes_per_channel"]
        add("memory per idle channel, watchtower on (bytes)", per, "< 2048", per < 2048)
        if bare:
            per = bare["bytes_per_channel"]
            add("memory per idle channel, watchtower off (bytes)", per, "< 2048", per < 2048)
        t = r["start_returned_s"]
        add("restore 100,000 channels: client.start() returns (s)", t, "< 10 s", t < 10)
        t = r["restore_s"]
        add("... and every channel's sync message sent (s)", t, "< 10 s", t < 10)
    return out


# --- main ----------------------------------------------------------------------------------


async def run(
    quick: bool, only: list[str], persisters: list[str], busy_poll_us: float = 0
) -> dict[str, Any]:
    sizes = QUICK if quick else FULL
    result: dict[str, Any] = {
        "meta": {
            "quick": quick,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "load_before": _loadavg(),
            "machine": machine(),
            "sizes": {k: getattr(sizes, k) for k in sizes.__slots__},
            "event_loop": os.environ.get(LOOP_ENV, "asyncio"),
            "gc_thresholds": list(gc.get_threshold()),
            "busy_poll_us": busy_poll_us,
        }
    }
    start = time.perf_counter()
    m = result["meta"]["machine"]
    print(
        f"perun-py benchmarks ({'quick' if quick else 'full'}): {m['cpu']}, {m['cores']} cores, "
        f"Python {m['python']}, load {result['meta']['load_before']}"
    )
    c = crypto(sizes) if "crypto" in only or "tcp" in only else None
    if c is not None and "crypto" in only:
        result["crypto"] = c
    if "inprocess" in only:
        result["inprocess"] = await inprocess(sizes)
    if "tcp" in only:
        assert c is not None
        ceiling = c["ceiling"]["two_process_updates_per_s"]
        result["tcp"] = await tcp(sizes, ceiling, persisters, busy_poll_us)
    if "gas" in only:
        result["gas"] = gas()
    if "scale" in only:
        result["scale"] = await scale(sizes)
    if "tower" in only:
        result["tower"] = tower(sizes)
    if "startup" in only:
        result["startup"] = startup(sizes)
    result["targets"] = targets(result) if not quick else []
    result["meta"]["load_after"] = _loadavg()
    result["meta"]["duration_s"] = time.perf_counter() - start
    if result["targets"]:
        heading("targets (issue 8; reported, not asserted)")
        for t in result["targets"]:
            v = t["value"]
            mark = "met" if t["met"] else "NOT met"
            row(t["target"], float(v) if v is not None else "-", t["goal"], mark)
    print(
        f"\nload average before {result['meta']['load_before']}, "
        f"after {result['meta']['load_after']}; {result['meta']['duration_s']:.1f} s"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (CI smoke run, < 60 s)")
    ap.add_argument("--json", metavar="OUT", help="write every figure as JSON to OUT")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="run only these sections",
    )
    ap.add_argument(
        "--persisters",
        nargs="+",
        choices=PERSISTER_CHOICES,
        default=list(PERSISTERS),
        help="persisters of the tcp section",
    )
    ap.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default=os.environ.get(LOOP_ENV, "asyncio"),
        help="event loop of every benchmark process (uvloop: pip install uvloop)",
    )
    ap.add_argument(
        "--busy-poll",
        type=float,
        default=200,
        metavar="US",
        help="also run the sequential TCP benchmark with both processes polling US µs before "
        "they sleep (perun_core.eventloop; 0: skip)",
    )
    ap.add_argument(
        "--gc-gen0",
        type=int,
        metavar="N",
        help="generation-0 threshold of the garbage collector in every benchmark process "
        "(default: Python's, 700)",
    )
    ap.add_argument("--restore-child", help=argparse.SUPPRESS)
    ap.add_argument("--restore-persister", default="leveldb", help=argparse.SUPPRESS)
    ap.add_argument("--restore-no-watch", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # The logging plugin (perun-loguru) routes INFO records to loguru's sink; benchmarks
    # measure the protocol, not a log sink (children inherit the setting).
    os.environ.setdefault("PERUN_DISABLE_PLUGINS", "loguru")
    os.environ[LOOP_ENV] = args.loop  # children run on the same loop
    if args.gc_gen0 is not None:
        if args.gc_gen0 < 1:
            ap.error("--gc-gen0 must be at least 1")
        os.environ[GC_ENV] = str(args.gc_gen0)  # read by run_loop, here and in the children
    if args.restore_child:
        res = run_loop(
            _restore_child(args.restore_child, args.restore_persister, not args.restore_no_watch)
        )
        print(json.dumps(res))
        return 0
    result = run_loop(run(args.quick, args.only, args.persisters, args.busy_poll))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, allow_nan=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
