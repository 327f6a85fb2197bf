"""Storage fault campaign: byte flips in the files of a killed LevelDB/RocksDB store.

    python tests/storage/storage_campaign.py [--flips N] [--stores leveldb rocksdb]
        [--seed S] [--updates U] [--json OUT] [--details]

A writer process (this file, ``writer`` mode) runs a fixed, seeded workload of persister
events on a real store: channels are created, funded, updated (``staged``, ``sig_added``,
``enabled``), disputed (``phase_changed``), discarded and removed. It acknowledges each event
on stdout after the call returned. The campaign runs it twice on one directory: the first run
closes the store (its records end up in table files), the second is killed with SIGKILL after
its last acknowledgement (its records are only in the write-ahead log, and they overwrite
channels of the first run). That directory is the pristine copy.

Every trial copies the pristine directory, damages one byte of one WAL, table or manifest
file (XOR with a seeded non-zero mask), opens the copy through the plugin registry and
restores it the way a client does (``active_peers``, ``restore_peer`` for each, then
``restore_channel`` for every channel the workload touched). The outcome is

- **harmless**: it opens and every record equals the last acknowledged one (replayed on a
  :class:`~perun_core.persistence.MemoryPersister`), removed channels stay removed;
- **typed**: opening or restoring raises a :class:`~perun_core.errors.PersistenceError`
  (``StoreCorruptError`` for damage);
- **silent**: it opens and restores without error, but a record is older than the last
  acknowledged write, missing, or holds different content (a silent rollback);
- **untyped**: any other exception.

A torn tail (the WAL cut inside the record of a write that never returned) is tried too: it
must open with every acknowledged record (harmless). The campaign prints one JSON object with
the counts per store and per file kind; ``silent`` and ``untyped`` must be 0. Exit status 1 if
they are not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.channel.types import Address
from perun_core.errors import PersistenceError
from perun_core.interfaces.persister import ChannelRecord, Persister
from perun_core.persistence.memory import MemoryPersister
from perun_core.plugins import load_plugins
from perun_core.testing.persister import (
    ALICE_WIRE,
    BOB_WIRE,
    CAROL_WIRE,
    created,
    params,
    sig,
    state,
)

HERE = Path(__file__).resolve()

# --- the workload -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One persister call: ``getattr(persister, method)(*args)``."""

    method: str
    args: tuple[Any, ...]

    async def apply(self, p: Persister) -> None:
        """Run the event on ``p``."""
        await getattr(p, self.method)(*self.args)


@dataclass
class Workload:
    """A seeded sequence of persister events over a few channels and the IDs it touches."""

    events: list[Event]
    split: int  # events[:split] run in the first (closed) writer, the rest in the killed one
    channel_ids: list[bytes]


def workload(seed: int, updates: int) -> Workload:
    """The events: six channels in the first part, updates on all of them in the second (so
    the WAL holds newer versions of records that are in table files), two more channels, a
    dispute, a discarded update and a removal."""
    rng = random.Random(seed)
    events: list[Event] = []
    versions: dict[int, int] = {}
    peer_sets = [(ALICE_WIRE, BOB_WIRE), (ALICE_WIRE, CAROL_WIRE), (BOB_WIRE,)]

    def create(n: int) -> None:
        p = params(n)
        events.append(Event("channel_created", (created(p, peer_sets[n % len(peer_sets)]),)))
        events.append(Event("sig_added", (p.id, 0, 1, sig("bob", 0))))
        v0 = Transaction(state(p, 0), (sig("me", 0), sig("bob", 0)))
        events.append(Event("enabled", (p.id, v0, Phase.FUNDING)))
        events.append(Event("phase_changed", (p.id, Phase.ACTING, 0, False)))
        versions[n] = 0

    def update(n: int) -> None:
        p = params(n)
        v = versions[n] + 1
        a = rng.randrange(0, 21)
        tx = Transaction.unsigned(state(p, v, a, 20 - a), 2).with_sig(0, sig("me", v))
        events.append(Event("staged", (p.id, tx, Phase.SIGNING)))
        if rng.random() < 0.1:  # the peer refused: the update is discarded
            events.append(Event("staged", (p.id, None, Phase.ACTING)))
            return
        events.append(Event("sig_added", (p.id, v, 1, sig("bob", v))))
        events.append(Event("enabled", (p.id, tx.with_sig(1, sig("bob", v)), Phase.ACTING)))
        versions[n] = v

    first = list(range(1, 7))
    for n in first:
        create(n)
    for _ in range(max(1, updates // 4)):
        update(rng.choice(first))
    split = len(events)
    for n in (7, 8):
        create(n)
    live = [*first, 7, 8]
    for i in range(updates):
        update(rng.choice(live))
        if i == updates // 2:  # a dispute: the floor rises, the channel needs a sync
            n = live[0]
            events.append(
                Event("phase_changed", (params(n).id, Phase.REGISTERED, versions[n], True))
            )
        if i == updates // 3:
            gone = live.pop(1)
            events.append(Event("channel_removed", (params(gone).id,)))
    ids = [params(n).id for n in range(1, 9)]
    return Workload(events, split, ids)


# --- the writer process -----------------------------------------------------------------------


async def _write(name: str, path: str, options: dict[str, Any], wl: Workload, part: str) -> None:
    p = load_plugins(only=[name]).persister(name)(path=path, **options)
    events = wl.events[: wl.split] if part == "first" else wl.events[wl.split :]
    for i, ev in enumerate(events):
        await ev.apply(p)
        sys.stdout.write(f"ack {i}\n")
        sys.stdout.flush()
    if part == "first":
        await p.close()
        print("done", flush=True)
        return
    print("done", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # until killed


def _run_writer(
    name: str, path: str, options: dict[str, Any], seed: int, updates: int, part: str
) -> int:
    """Run one writer process; returns the events it acknowledged (kills it in the second
    part after its last acknowledgement)."""
    child = subprocess.Popen(
        [
            sys.executable,
            str(HERE),
            "writer",
            name,
            path,
            json.dumps(options),
            str(seed),
            str(updates),
            part,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    acked = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("ack "):
                acked += 1
            elif line.strip() == "done":
                break
        else:
            raise RuntimeError(f"the {name} writer died (exit {child.wait()})")
        if part == "second":
            child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    return acked


# --- expectations and checks -----------------------------------------------------------------


@dataclass
class Expected:
    """What a correct restore returns: every channel's record (``None``: removed) and every
    peer's channel list."""

    records: dict[bytes, ChannelRecord | None]
    by_peer: dict[Address, list[bytes]]


async def expected_after(events: Sequence[Event], wl: Workload) -> Expected:
    """Replay ``events`` on the in-memory persister (the reference)."""
    ref = MemoryPersister()
    for ev in events:
        await ev.apply(ref)
    records = {cid: await ref.restore_channel(cid) for cid in wl.channel_ids}
    by_peer = {}
    for peer in await ref.active_peers():
        by_peer[peer] = [r.channel_id for r in await ref.restore_peer(peer)]
    return Expected(records, by_peer)


@dataclass
class Outcome:
    """One trial's classification and, for anything but harmless, what happened."""

    kind: str  # harmless | typed | silent | untyped
    detail: str = ""


async def restore_and_compare(
    open_store: Callable[[str], Persister], path: str, want: Expected
) -> Outcome:
    """Open the store at ``path``, restore like a client, compare with ``want``."""
    try:
        p = open_store(path)
    except PersistenceError as e:
        return Outcome("typed", f"open: {type(e).__name__}")
    except Exception as e:
        return Outcome("untyped", f"open: {type(e).__name__}: {e}")
    try:
        peers = await p.active_peers()
        by_peer = {peer: [r.channel_id for r in await p.restore_peer(peer)] for peer in peers}
        got = {cid: await p.restore_channel(cid) for cid in want.records}
    except PersistenceError as e:
        return Outcome("typed", f"restore: {type(e).__name__}")
    except Exception as e:
        return Outcome("untyped", f"restore: {type(e).__name__}: {e}")
    finally:
        with contextlib.suppress(Exception):
            await p.close()
    if by_peer != want.by_peer:
        return Outcome("silent", f"peer index {_peer_diff(by_peer, want.by_peer)}")
    for cid, rec in want.records.items():
        if got[cid] != rec:
            return Outcome(
                "silent",
                f"channel {int.from_bytes(cid, 'big')}: {_describe(got[cid])} "
                f"instead of {_describe(rec)}",
            )
    return Outcome("harmless")


def _describe(rec: ChannelRecord | None) -> str:
    if rec is None:
        return "no record"
    cur = rec.current.state.version if rec.current else None
    stg = rec.staging.state.version if rec.staging else None
    return f"{rec.phase} current v{cur} staging v{stg} floor {rec.version_floor}"


def _peer_diff(got: dict[Address, list[bytes]], want: dict[Address, list[bytes]]) -> str:
    def short(d: dict[Address, list[bytes]]) -> dict[str, list[int]]:
        return {k.raw.hex()[:4]: [int.from_bytes(c, "big") for c in v] for k, v in d.items()}

    return f"{short(got)} instead of {short(want)}"


# --- damage ----------------------------------------------------------------------------------

KINDS = {
    "wal": ("*.log",),
    "table": ("*.ldb", "*.sst"),
    "manifest": ("MANIFEST-*", "CURRENT"),
}
"""File kinds the campaign damages (both engines use these names)."""


def files_of(path: str, kind: str) -> list[str]:
    """The files of ``kind`` in the store directory, sorted by name."""
    out = [f for pat in KINDS[kind] for f in glob.glob(os.path.join(path, pat))]
    return sorted(f for f in out if os.path.getsize(f) > 0)


def flip(path: str, offset: int, mask: int) -> None:
    """XOR the byte at ``offset`` of the file at ``path`` with ``mask``."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))


def plan_flips(pristine: str, count: int, rng: random.Random) -> list[tuple[str, str, int, int]]:
    """``count`` flips ``(kind, file name, offset, mask)`` spread evenly over the kinds that
    have files, uniformly over their bytes; every byte when ``count`` covers them all."""
    kinds = {k: files_of(pristine, k) for k in KINDS}
    kinds = {k: v for k, v in kinds.items() if v}
    out: list[tuple[str, str, int, int]] = []
    per = max(1, count // max(1, len(kinds)))
    for kind, files in kinds.items():
        spots = [(os.path.basename(f), o) for f in files for o in range(os.path.getsize(f))]
        chosen = spots if per >= len(spots) else rng.sample(spots, per)
        out += [(kind, name, off, rng.randrange(1, 256)) for name, off in chosen]
    return out


# --- the campaign ----------------------------------------------------------------------------


@dataclass
class StoreReport:
    """Counts of one store's campaign."""

    store: str
    options: dict[str, Any]
    events: int = 0
    flips: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    typed_errors: Counter[str] = field(default_factory=Counter)
    torn_tails: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # silent and untyped trials
    seconds: float = 0.0

    def as_json(self, details: bool) -> dict[str, Any]:
        """The report as plain data."""
        out: dict[str, Any] = {
            "store": self.store,
            "options": self.options,
            "events": self.events,
            "flips_tried": self.flips,
            "harmless": self.outcomes["harmless"],
            "typed_errors": self.outcomes["typed"],
            "silent": self.outcomes["silent"],
            "untyped": self.outcomes["untyped"],
            "by_kind": {k: dict(v) for k, v in self.by_kind.items()},
            "typed_by_error": dict(self.typed_errors),
            "torn_tails": dict(self.torn_tails),
            "seconds": round(self.seconds, 1),
        }
        out["failures"] = self.failures if details else self.failures[:10]
        return out


@contextlib.contextmanager
def _tempdir() -> Iterator[str]:
    # In memory where possible: every trial opens a store, and opening one fsyncs (a
    # no-op on tmpfs); the outcome of a damaged byte does not depend on the file system.
    shm = "/dev/shm"
    where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    d = tempfile.mkdtemp(prefix="perun-storage-campaign-", dir=where)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def make_pristine(
    name: str, options: dict[str, Any], seed: int, updates: int, where: str
) -> Workload:
    """Run the two writers on ``where``; check that every event was acknowledged."""
    wl = workload(seed, updates)
    first = _run_writer(name, where, options, seed, updates, "first")
    second = _run_writer(name, where, options, seed, updates, "second")
    if (first, second) != (wl.split, len(wl.events) - wl.split):
        raise RuntimeError(
            f"{name} writers acknowledged {first}+{second} of {len(wl.events)} events"
        )
    return wl


async def run_store(
    name: str, options: dict[str, Any], *, flips: int, seed: int, updates: int
) -> StoreReport:
    """The campaign on one store."""
    t0 = time.perf_counter()
    rep = StoreReport(name, options)
    factory = load_plugins(only=[name]).persister(name)

    def open_store(path: str) -> Persister:
        return factory(path=path, **options)

    with _tempdir() as tmp:
        pristine = os.path.join(tmp, "pristine")
        wl = make_pristine(name, options, seed, updates, pristine)
        rep.events = len(wl.events)
        want = await expected_after(wl.events, wl)
        work = os.path.join(tmp, "work")

        def fresh() -> str:
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(pristine, work)
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(work, "LOCK"))  # left by the killed writer; harmless
            return work

        # The undamaged copy must restore exactly, or nothing below means anything.
        base = await restore_and_compare(open_store, fresh(), want)
        if base.kind != "harmless":
            raise RuntimeError(f"{name}: the undamaged store does not restore: {base}")

        rng = random.Random(seed)
        for kind, fname, off, mask in plan_flips(pristine, flips, rng):
            flip(os.path.join(fresh(), fname), off, mask)
            out = await restore_and_compare(open_store, work, want)
            rep.flips += 1
            rep.outcomes[out.kind] += 1
            rep.by_kind.setdefault(kind, Counter())[out.kind] += 1
            if out.kind == "typed":
                rep.typed_errors[out.detail] += 1
            elif out.kind != "harmless":
                rep.failures.append(f"{kind} {fname}@{off}^{mask:#04x}: {out.kind}: {out.detail}")

        # Torn tails: the WAL cut inside its last record (every workload event writes more
        # than 60 bytes), as if the final event's write had never completed. Every earlier
        # event was acknowledged and must be there.
        before_last = await expected_after(wl.events[:-1], wl)
        wal = os.path.basename(files_of(pristine, "wal")[-1])
        size = os.path.getsize(os.path.join(pristine, wal))
        for cut in (size - 1, size - 7, size - 20, size - 60):
            os.truncate(os.path.join(fresh(), wal), cut)
            out = await restore_and_compare(open_store, work, before_last)
            rep.torn_tails[out.kind] += 1
            if out.kind != "harmless":
                rep.failures.append(
                    f"torn tail {wal} cut at {cut}/{size}: {out.kind}: {out.detail}"
                )
    rep.seconds = time.perf_counter() - t0
    return rep


async def campaign(
    stores: Sequence[str], *, flips: int, seed: int, updates: int, sync: bool
) -> list[StoreReport]:
    """Run the campaign on each installed store of ``stores``."""
    installed = load_plugins().persisters
    reports = []
    for name in stores:
        if name not in installed:
            raise SystemExit(f"the {name} persister is not installed (perun-{name})")
        options: dict[str, Any] = {"sync": True} if sync else {}
        reports.append(await run_store(name, options, flips=flips, seed=seed, updates=updates))
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the campaign and print its JSON report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "writer":
        name, path, options, seed, updates, part = argv[1:7]
        wl = workload(int(seed), int(updates))
        asyncio.run(_write(name, path, json.loads(options), wl, part))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flips", type=int, default=2000, help="flips per store (default 2000)")
    ap.add_argument("--stores", nargs="+", default=["leveldb", "rocksdb"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--updates", type=int, default=40, help="updates in the killed writer")
    ap.add_argument("--sync", action="store_true", help="open the stores with sync=True")
    ap.add_argument("--json", metavar="OUT", help="also write the report to OUT")
    ap.add_argument("--details", action="store_true", help="list every failing trial")
    args = ap.parse_args(argv)
    reports = asyncio.run(
        campaign(
            args.stores, flips=args.flips, seed=args.seed, updates=args.updates, sync=args.sync
        )
    )
    result = {
        "flips_tried": sum(r.flips for r in reports),
        "typed_errors": sum(r.outcomes["typed"] for r in reports),
        "harmless": sum(r.outcomes["harmless"] for r in reports),
        "silent": sum(r.outcomes["silent"] for r in reports),
        "untyped": sum(r.outcomes["untyped"] for r in reports),
        "stores": [r.as_json(args.details) for r in reports],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    bad = result["silent"] or result["untyped"] or any(r.failures for r in reports)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
