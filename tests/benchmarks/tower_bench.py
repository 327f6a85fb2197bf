"""Watchtower benchmark: ingest rate, memory per watched channel, restore time.

    python tests/benchmarks/tower_bench.py [--channels 100000] [--json OUT]

One tower (``perun_watchtower.Watchtower``) in this process on a real TCP listener with a
LevelDB store (every write fsynced, group-committed) and an in-process sim ledger; one client
identity sends one fully signed state for each of ``--channels`` channels over an
authenticated TCP connection, ``--window`` requests in flight. Every state's two signatures
are verified by the tower, as always. Reported (JSON on stdout, never asserted):

``ingest_states_per_s``   acknowledged states per second (each durably written first);
``restore_seconds``       a fresh process opening the store and watching every channel again;
``memory_per_channel_bytes``  that process's RSS growth from the restore, per channel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from perun_leveldb.store import LevelDBStore
from perun_sim import SimBackend
from perun_tcp import TcpBus
from perun_watchtower import TowerConfig, Watchtower

from perun_core.channel.allocation import Allocation
from perun_core.channel.params import make_params
from perun_core.channel.state import State, Transaction
from perun_core.watcher import tower_wire
from perun_core.watcher.tower_wire import WatchAck, WatchRequest
from perun_core.wire.messages import Envelope

SEED = b"tower-bench"


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _limits(n: int) -> TowerConfig:
    return TowerConfig(
        max_channels_per_client=n + 1,
        max_channels=n + 1,
        max_bytes_per_client=1 << 40,
        states_per_second=1e9,
        burst=1 << 30,
    )


async def ingest(db: Path, n: int, window: int) -> dict[str, Any]:
    tower_wire.register()
    backend = SimBackend.from_config({"clock": "manual", "seeds": [SEED + b"-tower"]})
    wallet = backend.wallet()
    tower_acct = await wallet.unlock(wallet.accounts()[0])
    alice, bob = wallet.new_account(), wallet.new_account()
    asset = backend.default_assets()[0]
    t0 = time.perf_counter()
    requests = []
    for i in range(n):
        p = make_params(
            backend, challenge_duration=3600, participants=(alice.address, bob.address), nonce=i
        )
        st = State(p.id, 1, Allocation((asset,), ((60, 40),)), None, b"", False)
        tx = Transaction(st, (backend.sign_state(alice, st), backend.sign_state(bob, st)))
        requests.append(WatchRequest(i + 1, p, tx))
    prep = time.perf_counter() - t0
    tower_bus = TcpBus.from_backend(tower_acct, backend)
    await tower_bus.listen("127.0.0.1", 0)
    tower = Watchtower(
        backend=backend,
        account=tower_acct,
        bus=tower_bus,
        store=LevelDBStore(db),
        config=_limits(n),
    )
    await tower.start()
    client = TcpBus.from_backend(alice, backend)
    client.add_peer(tower_acct.address, str(tower_bus.advertised_endpoints()[0]))
    sub = client.subscribe(alice.address)
    acked = 0
    free = asyncio.Semaphore(window)

    async def read() -> None:
        nonlocal acked
        while acked < n:
            env = await sub.next()
            assert env is not None
            assert isinstance(env.msg, WatchAck), env.msg
            acked += 1
            free.release()

    t1 = time.perf_counter()
    reader = asyncio.ensure_future(read())
    for req in requests:
        await free.acquire()
        await client.publish(Envelope(alice.address, tower_acct.address, req))
    await reader
    seconds = time.perf_counter() - t1
    await client.close()
    await tower.close()
    await tower_bus.close()
    await backend.close()
    return {
        "channels": n,
        "window": window,
        "prepare_seconds": round(prep, 2),
        "ingest_seconds": round(seconds, 2),
        "ingest_states_per_s": round(n / seconds, 1),
        "db_bytes": sum(f.stat().st_size for f in db.iterdir()),
    }


async def restore(db: Path, n: int) -> dict[str, Any]:
    """In a fresh process: open the store and watch every channel again."""
    tower_wire.register()
    backend = SimBackend.from_config({"clock": "manual", "seeds": [SEED + b"-tower"]})
    wallet = backend.wallet()
    tower_acct = await wallet.unlock(wallet.accounts()[0])
    bus = TcpBus.from_backend(tower_acct, backend)
    before = _rss()
    t0 = time.perf_counter()
    tower = Watchtower(
        backend=backend, account=tower_acct, bus=bus, store=LevelDBStore(db), config=_limits(n)
    )
    await tower.start()
    seconds = time.perf_counter() - t0
    grown = _rss() - before
    watched = tower.watcher.watched
    await tower.close()
    await bus.close()
    await backend.close()
    return {
        "restored": watched,
        "restore_seconds": round(seconds, 2),
        "memory_per_channel_bytes": round(grown / max(watched, 1)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--channels", type=int, default=100_000)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--json", default=None, help="also write the result here")
    ap.add_argument("--restore-only", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.restore_only:
        print(json.dumps(asyncio.run(restore(Path(args.restore_only), args.channels))))
        return 0
    with tempfile.TemporaryDirectory(prefix="tower-bench-") as tmp:
        db = Path(tmp) / "tower.db"
        result = asyncio.run(ingest(db, args.channels, args.window))
        out = subprocess.run(
            [sys.executable, __file__, "--channels", str(args.channels), "--restore-only", str(db)],
            check=True,
            capture_output=True,
            text=True,
        )
        result.update(json.loads(out.stdout.strip().splitlines()[-1]))
    text = json.dumps({"tower": result}, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
