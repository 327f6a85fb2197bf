"""Persister write rates: memory, LevelDB and RocksDB, direct or threaded, with or without fsync.

    python tests/benchmarks/persister_rates.py [--quick] [--json OUT]

One update is three persistence events (``staged``, ``sig_added``, ``enabled``), as the
client writes them; "256 channels" runs that many channels' updates concurrently (group commit
applies to threaded stores). Prints a table; never asserts a time. The figures and the choice
of defaults they support are in ``docs/persistence.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
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


async def measure(make: Callable[[str], Persister], channels: int, per: int) -> dict[str, float]:
    """Updates/s and events/s of ``channels`` concurrent channels, ``per`` updates each."""
    tmp = tempfile.mkdtemp(prefix="perun-bench-")
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
    out: dict[str, Callable[[str], Persister]] = {"memory": lambda _d: MemoryPersister()}
    try:
        from perun_leveldb import LevelDBPersister

        out["leveldb"] = lambda d: LevelDBPersister(d)
        out["leveldb threaded"] = lambda d: LevelDBPersister(d, threaded=True)
        out["leveldb sync direct"] = lambda d: LevelDBPersister(d, sync=True, threaded=False)
        out["leveldb sync"] = lambda d: LevelDBPersister(d, sync=True)
    except ImportError:
        pass
    try:
        from perun_rocksdb import RocksDBPersister

        out["rocksdb"] = lambda d: RocksDBPersister(d)
        out["rocksdb threaded"] = lambda d: RocksDBPersister(d, threaded=True)
        out["rocksdb sync direct"] = lambda d: RocksDBPersister(d, sync=True, threaded=False)
        out["rocksdb sync"] = lambda d: RocksDBPersister(d, sync=True)
    except ImportError:
        pass
    return out


async def main(quick: bool) -> list[dict[str, Any]]:
    rows = []
    per1, per256 = (200, 2) if quick else (2000, 16)
    print(f"{'store':22s} {'1 channel':>22s} {'256 channels':>22s}   (updates/s, events/s)")
    for name, make in _stores().items():
        one = await measure(make, 1, per1)
        many = await measure(make, 256, per256)
        rows.append({"store": name, "one_channel": one, "channels_256": many})
        print(
            f"{name:22s} {one['updates_per_s']:10.0f} {one['events_per_s']:11.0f} "
            f"{many['updates_per_s']:10.0f} {many['events_per_s']:11.0f}"
        )
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer updates (CI smoke run)")
    ap.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    args = ap.parse_args()
    result = asyncio.run(main(args.quick))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
