"""Persister write rates: memory, LevelDB and RocksDB, with and without fsync, direct or threaded.

    python tests/benchmarks/persister_rates.py [--quick] [--json OUT] [--dir DIR]

One update is three persistence events (``staged``, ``sig_added``, ``enabled``), as the
client writes them; "256 channels" runs that many channels' updates concurrently (group commit
applies to threaded stores). ``sync`` is the stores' default (every write fsynced: survives a
power loss); ``nosync`` only hands writes to the OS (survives a killed process). The table
starts with the latency of one ``fsync`` of a small file on the same file system (``--dir``,
default the system's temporary directory), which bounds the ``sync`` rates. Prints a table;
never asserts a time. The figures and the choice of defaults they support are in
``docs/persistence.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from perun_core.channel import Address, Allocation, Asset, Params, Phase, State, Transaction
from perun_core.interfaces import ChannelRecord, Persister
from perun_core.persistence import MemoryPersister

ETH = Asset(1, b"ETH")
PARTS = (Address(b"\xaa" * 20), Address(b"\xbb" * 20))
PEERS = (Address(b"\xa1" * 20), Address(b"\xb1" * 20))
SIG = b"\x11" * 65


def _record(n: int) -> ChannelRecord:
    p = Params(challenge_duration=60, participants=PARTS, nonce=n, id=n.to_bytes(32, "big"))
    v0 = Transaction(State(p.id, 0, Allocation((ETH,), ((10**18, 10**18),))), (SIG, SIG))
    return ChannelRecord(p, 0, PEERS, Phase.ACTING, v0)


async def _updates(store: Persister, cid: bytes, count: int) -> None:
    for v in range(1, count + 1):
        alloc = Allocation((ETH,), ((10**18 - v, 10**18 + v),))
        tx = Transaction(State(cid, v, alloc), (SIG, None))
        await store.staged(cid, tx, Phase.SIGNING)
        await store.sig_added(cid, v, 1, SIG)
        await store.enabled(cid, tx.with_sig(1, SIG), Phase.ACTING)


def parse_persister(spec: str) -> tuple[str, dict[str, Any]]:
    """A persister spec of the benchmarks: ``NAME`` (the plugin's defaults) or ``NAME:sync`` /
    ``NAME:nosync`` (``sync=True`` / ``sync=False``) -> the plugin name and its options."""
    name, _, mode = spec.partition(":")
    if mode not in ("", "sync", "nosync"):
        raise ValueError(f"persister spec {spec!r}: the mode is sync or nosync, not {mode!r}")
    return name, ({} if not mode else {"sync": mode == "sync"})


def fsync_latency(where: str | None = None, n: int = 50) -> dict[str, float]:
    """Median and p99 milliseconds of appending 200 bytes to a file and fsyncing it."""
    fd, path = tempfile.mkstemp(prefix="perun-fsync-", dir=where)
    try:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, b"x" * 200)
            os.fsync(fd)
            times.append((time.perf_counter() - t) * 1e3)
    finally:
        os.close(fd)
        os.remove(path)
    times.sort()
    return {"p50_ms": statistics.median(times), "p99_ms": times[int(0.99 * (n - 1))]}


async def measure(
    make: Callable[[str], Persister], channels: int, per: int, where: str | None = None
) -> dict[str, float]:
    """Updates/s and events/s of ``channels`` concurrent channels, ``per`` updates each."""
    tmp = tempfile.mkdtemp(prefix="perun-bench-", dir=where)
    store = make(tmp)
    try:
        recs = [_record(i + 1) for i in range(channels)]
        for r in recs:
            await store.channel_created(r)
        t = time.perf_counter()
        await asyncio.gather(*(_updates(store, r.channel_id, per) for r in recs))
        dt = time.perf_counter() - t
    finally:
        await store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"updates_per_s": channels * per / dt, "events_per_s": 3 * channels * per / dt}


def _stores() -> dict[str, Callable[[str], Persister]]:
    """Every store and mode measured: ``sync`` (the default: fsync, threaded, group commit),
    ``nosync`` (direct, the fast mode), and the two other combinations for comparison."""
    out: dict[str, Callable[[str], Persister]] = {"memory": lambda _d: MemoryPersister()}
    try:
        from perun_leveldb import LevelDBPersister

        out["leveldb sync"] = lambda d: LevelDBPersister(d)
        out["leveldb nosync"] = lambda d: LevelDBPersister(d, sync=False)
        out["leveldb nosync threaded"] = lambda d: LevelDBPersister(d, sync=False, threaded=True)
        out["leveldb sync direct"] = lambda d: LevelDBPersister(d, threaded=False)
    except ImportError:
        pass
    try:
        from perun_rocksdb import RocksDBPersister

        out["rocksdb sync"] = lambda d: RocksDBPersister(d)
        out["rocksdb nosync"] = lambda d: RocksDBPersister(d, sync=False)
        out["rocksdb nosync threaded"] = lambda d: RocksDBPersister(d, sync=False, threaded=True)
        out["rocksdb sync direct"] = lambda d: RocksDBPersister(d, threaded=False)
    except ImportError:
        pass
    return out


async def main(quick: bool, where: str | None = None) -> dict[str, Any]:
    """Measure every store; returns ``{"fsync": ..., "rows": [...]}``."""
    rows = []
    per1, per256 = (200, 2) if quick else (2000, 16)
    fs = fsync_latency(where)
    print(f"fsync of 200 bytes here: p50 {fs['p50_ms']:.3f} ms, p99 {fs['p99_ms']:.3f} ms")
    print(f"{'store':24s} {'1 channel':>22s} {'256 channels':>22s}   (updates/s, events/s)")
    for name, make in _stores().items():
        one = await measure(make, 1, per1, where)
        many = await measure(make, 256, per256, where)
        rows.append({"store": name, "one_channel": one, "channels_256": many})
        print(
            f"{name:24s} {one['updates_per_s']:10.0f} {one['events_per_s']:11.0f} "
            f"{many['updates_per_s']:10.0f} {many['events_per_s']:11.0f}"
        )
    return {"fsync": fs, "rows": rows}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer updates (CI smoke run)")
    ap.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    ap.add_argument("--dir", help="where the stores go (default: the temporary directory)")
    args = ap.parse_args()
    result = asyncio.run(main(args.quick, args.dir))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
