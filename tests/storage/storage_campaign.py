"""Storage fault campaign on real LevelDB and RocksDB stores: byte flips, torn tails, SIGKILL,
a full disk and a read-only log.

    python tests/storage/storage_campaign.py [--flips N] [--kills N] [--disk-full N]
        [--stores leveldb rocksdb] [--modes sync nosync] [--seed S] [--json OUT] [--details]

A writer process (this file, ``writer`` mode) runs a fixed, seeded workload of persister
events on a real store: channels are created, funded, updated (``staged``, ``sig_added``,
``enabled``), disputed (``phase_changed``), discarded and removed. It acknowledges each event
on stdout after the call returned. Every trial ends by opening the store through the plugin
registry and restoring it the way a client does (``active_peers``, ``restore_peer`` for each,
then ``restore_channel`` for every channel the workload touched), compared with the workload
replayed on a :class:`~perun_core.persistence.MemoryPersister`. The outcome is

- **harmless**: it opens and every record equals the last acknowledged one (removed channels
  stay removed; after a kill or a failed write, the one unacknowledged event in flight may be
  there or not);
- **typed**: opening or restoring raises a :class:`~perun_core.errors.PersistenceError`
  (``StoreCorruptError`` for damage);
- **silent**: it opens and restores without error, but a record is older than the last
  acknowledged write, missing, or holds different content (a silent rollback), or a failed
  store accepted a write;
- **untyped**: any other exception;
- **hang**: no answer within 60 s. The opens and restores of damaged stores run in a worker
  process, which is killed and replaced then (RocksDB looped forever on one damaged WAL type
  byte before the stores refused such records).

The trials, per store and mode (``sync``: the default, fsync and group commit; ``nosync``):

``flips``      The writer runs twice on one directory: the first run closes the store (its
               records end up in table files), the second is killed with SIGKILL after its
               last acknowledgement (its records, which update channels of the first run, are
               only in the write-ahead log). Each trial copies that directory, XORs one byte of
               a WAL, table or manifest file with a seeded non-zero mask, and restores.
``torn_tails`` The same directory with the WAL cut inside its last record (a write that never
               completed): must be harmless against the workload without its last event.
``kills``      The writer runs the whole workload on a fresh store and is killed with SIGKILL
               after a random number of acknowledgements.
``disk_full``  Eight channels pay concurrently into a store on a small tmpfs that fills up
               (seeded fill levels); once a write fails, the space comes back; every channel's
               next write must be refused (``StoreFailedError``); the reopened store must hold
               every acknowledged payment and take writes again. Skipped where mounting is not
               permitted (it needs root).
``read_only``  The same with the log made immutable (``chattr +i``, which stops root too)
               instead of a full disk. Skipped where the file system has no such flag.

The report is one JSON object with the counts per store, mode and trial family, and the totals
(``flips_tried``, ``typed_errors``, ``harmless``, ``silent``, ``untyped``, ``hangs``,
``failures``); all but the first three must be 0. Exit status 1 if they are not.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import fcntl
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
from perun_core.errors import PersistenceError, StoreFailedError
from perun_core.interfaces.persister import ChannelRecord, Persister
from perun_core.persistence.kv_wal import log_files
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
    parts = {"first": wl.events[: wl.split], "second": wl.events[wl.split :], "all": wl.events}
    events = parts[part]
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


# --- the trial worker ------------------------------------------------------------------------


async def _serve_trials(name: str, options: dict[str, Any], wl: Workload) -> None:
    """Worker mode: for each line ``{"path": P, "events": N}`` on stdin, open the store at P,
    restore it and compare it with the workload's first N events; answer one JSON line."""
    factory = load_plugins(only=[name]).persister(name)

    def open_store(path: str) -> Persister:
        made: Persister = factory(path=path, **options)
        return made

    wants: dict[int, Expected] = {}
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        req = json.loads(line)
        n = req["events"]
        if n not in wants:
            wants[n] = await expected_after(wl.events[:n], wl)
        out = await restore_and_compare(open_store, req["path"], wants[n])
        print(json.dumps({"kind": out.kind, "detail": out.detail}), flush=True)


class TrialWorker:
    """Opens and restores the campaign's stores in a child process, so that an engine that
    hangs on a damaged file costs a timeout and a fresh worker, not the campaign. (RocksDB
    looped forever on a WAL record whose type byte was damaged into a recycled log's type,
    before the stores learnt to refuse those.)"""

    def __init__(
        self, name: str, options: dict[str, Any], seed: int, updates: int, timeout: float = 60
    ) -> None:
        self._argv = [sys.executable, str(HERE), "worker", name, json.dumps(options)]
        self._argv += [str(seed), str(updates)]
        self.timeout = timeout
        self._proc: asyncio.subprocess.Process | None = None

    async def _started(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            self._proc = await asyncio.create_subprocess_exec(
                *self._argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
            assert self._proc.stdout is not None
            ready = await asyncio.wait_for(self._proc.stdout.readline(), self.timeout)
            if ready.strip() != b"ready":
                raise RuntimeError(f"the trial worker did not start: {ready!r}")
        return self._proc

    async def trial(self, path: str, events: int) -> Outcome:
        """Restore the store at ``path`` and compare it with the workload's first ``events``
        events; ``hang`` if no answer comes within the timeout."""
        proc = await self._started()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps({"path": path, "events": events}).encode() + b"\n")
        await proc.stdin.drain()
        try:
            answer = await asyncio.wait_for(proc.stdout.readline(), self.timeout)
        except TimeoutError:
            await self.close()
            return Outcome("hang", f"no answer from the open and restore in {self.timeout:g} s")
        if not answer:
            code = await proc.wait()
            self._proc = None
            return Outcome("untyped", f"the trial worker died (exit {code})")
        got = json.loads(answer)
        return Outcome(got["kind"], got["detail"])

    async def close(self) -> None:
        """Stop the worker (by its PID, with SIGKILL if it hangs)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


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


# --- kills ---------------------------------------------------------------------------------


def _kill_writer_after(
    name: str, path: str, options: dict[str, Any], seed: int, updates: int, acks: int
) -> int:
    """Run the whole workload in a writer and SIGKILL it once it acknowledged ``acks``
    events; returns how many it acknowledged (the ones already in the pipe count)."""
    argv = ["writer", name, path, json.dumps(options), str(seed), str(updates), "all"]
    child = subprocess.Popen(
        [sys.executable, str(HERE), *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    acked = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("ack ") and line.endswith("\n"):
                acked += 1
            if acked >= acks or line.strip() == "done":
                break
        child.send_signal(signal.SIGKILL)
        for line in child.stdout:  # a torn last line was never acknowledged
            if line.startswith("ack ") and line.endswith("\n"):
                acked += 1
    finally:
        child.kill()
        child.wait(timeout=30)
    return acked


async def kill_trial(
    worker: TrialWorker,
    name: str,
    options: dict[str, Any],
    wl: Workload,
    seed: int,
    updates: int,
    acks: int,
    where: str,
) -> Outcome:
    """Kill a writer after ``acks`` acknowledgements; the store must hold every acknowledged
    event and at most the one in flight."""
    path = os.path.join(where, "killed")
    shutil.rmtree(path, ignore_errors=True)
    acked = _kill_writer_after(name, path, options, seed, updates, acks)
    out = await worker.trial(path, acked)
    if out.kind == "silent" and acked < len(wl.events):
        ahead = await worker.trial(path, acked + 1)
        if ahead.kind == "harmless":  # the event in flight made it: allowed
            return ahead
    if out.kind != "harmless":
        out.detail = f"killed after {acked} acks: {out.detail}"
    return out


# --- a full disk and a read-only log ---------------------------------------------------------

CHANNELS = 8
"""Channels paying concurrently in the disk fault trials."""


class FaultUnavailable(Exception):
    """The fault cannot be injected here (no permission to mount, no immutable flag)."""


@contextlib.contextmanager
def tmpfs_mount(where: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``where`` (created), unmounted on exit.

    Raises:
        FaultUnavailable: mounting is not permitted (it needs root or CAP_SYS_ADMIN).
    """
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise FaultUnavailable("mounting a tmpfs (a small disk that fills up) needs root")
    try:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except FileNotFoundError:
        raise FaultUnavailable("no mount command: cannot mount a tmpfs") from None
    if r.returncode != 0:
        raise FaultUnavailable(f"mounting a tmpfs is not permitted here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        r = subprocess.run(["umount", str(where)], capture_output=True, timeout=30)
        if r.returncode != 0:  # still busy (a failed trial left a file open): detach it
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def fill(directory: Path, leave: int = 0) -> Path:
    """Fill the file system of ``directory`` with a file, leaving about ``leave`` bytes."""
    st = os.statvfs(directory)
    size = max(0, st.f_bavail * st.f_frsize - leave)
    filler = directory / "filler"
    with open(filler, "wb") as f:
        chunk = b"\0" * (1 << 16)
        with contextlib.suppress(OSError):  # ENOSPC: full
            while size > 0:
                f.write(chunk[: min(size, len(chunk))])
                size -= len(chunk)
    return filler


_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_IMMUTABLE_FL = 0x10


def set_immutable(path: Path, on: bool) -> None:
    """Set or clear the immutable flag (``chattr +i``): no process, root included, can then
    write the file or create files in the directory.

    Raises:
        FaultUnavailable: the file system or the privileges do not allow it.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        flags = array.array("l", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        flags[0] = flags[0] | _FS_IMMUTABLE_FL if on else flags[0] & ~_FS_IMMUTABLE_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
    except OSError as e:
        raise FaultUnavailable(f"cannot set the immutable flag on {path} ({e.strerror})") from None
    finally:
        os.close(fd)


def payment(nonce: int, v: int) -> Transaction:
    """Channel ``params(nonce)``'s fully signed transaction of version ``v``."""
    ch = params(nonce)
    tx = Transaction.unsigned(state(ch, v, v % 20, 20 - v % 20), 2)
    return tx.with_sig(0, sig("me", v)).with_sig(1, sig("bob", v))


async def pay(p: Persister, nonce: int, v: int) -> None:
    """One payment on channel ``nonce`` at version ``v``: staged, countersigned, enabled."""
    cid, full = params(nonce).id, payment(nonce, v)
    assert full.sigs[0] is not None and full.sigs[1] is not None
    await p.staged(
        cid, Transaction.unsigned(full.state, 2).with_sig(0, full.sigs[0]), Phase.SIGNING
    )
    await p.sig_added(cid, v, 1, full.sigs[1])
    await p.enabled(cid, full, Phase.ACTING)


async def create_channels(p: Persister) -> dict[int, int]:
    """``CHANNELS`` funded channels at version 0; returns ``{nonce: 0}``."""
    for n in range(1, CHANNELS + 1):
        await p.channel_created(created(params(n)))
        await p.enabled(params(n).id, payment(n, 0), Phase.ACTING)
    return {n: 0 for n in range(1, CHANNELS + 1)}


async def pay_until_failure(p: Persister, acked: dict[int, int]) -> list[PersistenceError]:
    """Every channel pays concurrently until its own write fails; ``acked`` holds the last
    version each channel completed. Returns each channel's error."""

    async def channel(nonce: int) -> PersistenceError:
        while True:
            try:
                await pay(p, nonce, acked[nonce] + 1)
            except PersistenceError as e:
                return e
            acked[nonce] += 1
            if acked[nonce] > 50_000:
                raise RuntimeError("the store never failed")

    return list(await asyncio.gather(*(channel(n) for n in acked)))


async def check_failed_store(p: Persister, acked: dict[int, int]) -> Outcome:
    """After its first failure, the store must refuse every write and read."""
    for nonce, v in acked.items():
        try:
            await pay(p, nonce, v + 2)
        except StoreFailedError:
            continue
        except PersistenceError as e:
            return Outcome("typed", f"not refused as failed: {type(e).__name__}: {e}")
        return Outcome("silent", f"a failed store accepted channel {nonce}'s payment")
    try:
        await p.restore_channel(params(1).id)
    except StoreFailedError:
        return Outcome("harmless")
    return Outcome("silent", "a failed store answered a read")


async def check_reopened(
    open_store: Callable[[str], Persister], path: str, acked: dict[int, int]
) -> Outcome:
    """Every acknowledged payment is in the reopened store, exactly, and nothing after the
    payment whose write failed; the store takes writes again."""
    try:
        p = open_store(path)
    except PersistenceError as e:
        return Outcome("typed", f"reopen: {type(e).__name__}: {e}")
    try:
        for nonce, v in acked.items():
            rec = await p.restore_channel(params(nonce).id)
            have = rec.current if rec is not None else None
            got = have.state.version if have is not None else None
            # the payment whose write failed may or may not have made it; nothing later did
            if have is None or have not in (payment(nonce, v), payment(nonce, v + 1)):
                return Outcome("silent", f"channel {nonce}: v{got} instead of v{v}")
            if rec is not None and rec.staging is not None and rec.staging.state.version != got + 1:
                return Outcome("silent", f"channel {nonce}: staged v{rec.staging.state.version}")
        nonce = next(iter(acked))
        rec = await p.restore_channel(params(nonce).id)
        assert rec is not None and rec.current is not None
        await pay(p, nonce, rec.current.state.version + 2)  # writes work again
    except PersistenceError as e:
        return Outcome("typed", f"after reopen: {type(e).__name__}: {e}")
    finally:
        with contextlib.suppress(PersistenceError):
            await p.close()
    return Outcome("harmless")


async def disk_fault_trial(
    open_store: Callable[[str], Persister], kind: str, where: Path, leave: int = 600_000
) -> Outcome:
    """One ``disk_full`` or ``read_only`` trial in the directory ``where``.

    Raises:
        FaultUnavailable: the fault cannot be injected here.
    """
    with contextlib.ExitStack() as stack:
        disk = stack.enter_context(tmpfs_mount(where, 8 << 20)) if kind == "disk_full" else where
        path = str(disk / "db")
        p = open_store(path)
        try:
            acked = await create_channels(p)
            if kind == "disk_full":
                filler = fill(disk, leave)
                undo: Callable[[], None] = filler.unlink
            else:
                for n in acked:
                    await pay(p, n, 1)
                    acked[n] = 1
                logs = [Path(f) for f in log_files(path)]

                def undo() -> None:
                    for log in logs:
                        with contextlib.suppress(OSError, FaultUnavailable):
                            set_immutable(log, False)

                stack.callback(undo)  # also when the trial fails
                for log in logs:
                    set_immutable(log, True)

            errors = await pay_until_failure(p, acked)
            undo()  # the space, or the permission, is back
            if all(isinstance(e, StoreFailedError) for e in errors):
                return Outcome("typed", "every error was StoreFailedError: where is the first?")
            refused = await check_failed_store(p, acked)
        finally:
            with contextlib.suppress(PersistenceError):
                await p.close()
        if refused.kind != "harmless":
            return refused
        return await check_reopened(open_store, path, acked)
    raise AssertionError("unreachable")


# --- the campaign ----------------------------------------------------------------------------


@dataclass
class StoreReport:
    """Counts of one store's campaign in one mode."""

    store: str
    mode: str
    events: int = 0
    flips: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    typed_errors: Counter[str] = field(default_factory=Counter)
    torn_tails: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    disk_full: Counter[str] = field(default_factory=Counter)
    read_only: Counter[str] = field(default_factory=Counter)
    skipped: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # every trial that was not harmless/typed
    seconds: float = 0.0

    def families(self) -> dict[str, Counter[str]]:
        """Outcome counts per trial family."""
        return {
            "flips": self.flips,
            "torn_tails": self.torn_tails,
            "kills": self.kills,
            "disk_full": self.disk_full,
            "read_only": self.read_only,
        }

    def count(self, kind: str) -> int:
        """Trials of every family with outcome ``kind``."""
        return sum(c[kind] for c in self.families().values())

    def note(self, family: str, what: str, out: Outcome) -> None:
        """Count one trial's outcome."""
        self.families()[family][out.kind] += 1
        if out.kind == "typed":
            self.typed_errors[":".join(out.detail.split(":")[:2])] += 1
        elif out.kind != "harmless":
            self.failures.append(f"{family} {what}: {out.kind}: {out.detail}")

    def as_json(self, details: bool) -> dict[str, Any]:
        """The report as plain data."""
        out: dict[str, Any] = {
            "store": self.store,
            "mode": self.mode,
            "events": self.events,
            "flips_tried": sum(self.flips.values()),
            "harmless": self.count("harmless"),
            "typed_errors": self.count("typed"),
            "silent": self.count("silent"),
            "untyped": self.count("untyped"),
            "hangs": self.count("hang"),
        }
        out.update({k: dict(v) for k, v in self.families().items()})
        out["flips_by_file_kind"] = {k: dict(v) for k, v in self.by_kind.items()}
        out["typed_by_error"] = dict(self.typed_errors)
        out["skipped"] = self.skipped
        out["seconds"] = round(self.seconds, 1)
        out["failures"] = self.failures if details else self.failures[:10]
        return out


@contextlib.contextmanager
def _tempdir(in_memory: bool = True) -> Iterator[str]:
    # In memory where possible: every trial opens a store, and opening one fsyncs (a
    # no-op on tmpfs); the outcome of a damaged byte does not depend on the file system.
    shm = "/dev/shm"
    where = shm if in_memory and os.path.isdir(shm) and os.access(shm, os.W_OK) else None
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


MODES: dict[str, dict[str, Any]] = {"sync": {}, "nosync": {"sync": False}}
"""The stores' modes: ``sync`` (the default) and ``nosync``."""


@dataclass(frozen=True)
class Sizes:
    """How many trials of each family one store and mode gets."""

    flips: int = 2000
    kills: int = 10
    disk_full: int = 3
    read_only: int = 1
    updates: int = 40  # updates in the workload's second part


async def run_store(name: str, mode: str, sizes: Sizes, seed: int) -> StoreReport:
    """The campaign on one store in one mode."""
    t0 = time.perf_counter()
    options = MODES[mode]
    rep = StoreReport(name, mode)
    factory = load_plugins(only=[name]).persister(name)

    def open_store(path: str) -> Persister:
        made: Persister = factory(path=path, **options)
        return made

    rng = random.Random(f"{seed}/{mode}")  # each mode flips other bytes of the same files
    worker = TrialWorker(name, options, seed, sizes.updates)
    with _tempdir() as tmp:
        pristine = os.path.join(tmp, "pristine")
        wl = make_pristine(name, options, seed, sizes.updates, pristine)
        rep.events = every = len(wl.events)
        work = os.path.join(tmp, "work")

        def fresh() -> str:
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(pristine, work)
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(work, "LOCK"))  # left by the killed writer; harmless
            return work

        try:
            # The undamaged copy must restore exactly, or nothing below means anything.
            base = await worker.trial(fresh(), every)
            if base.kind != "harmless":
                raise RuntimeError(f"{name}: the undamaged store does not restore: {base}")

            for kind, fname, off, mask in plan_flips(pristine, sizes.flips, rng):
                flip(os.path.join(fresh(), fname), off, mask)
                out = await worker.trial(work, every)
                rep.by_kind.setdefault(kind, Counter())[out.kind] += 1
                rep.note("flips", f"{kind} {fname}@{off}^{mask:#04x}", out)

            # Torn tails: the WAL cut inside its last record (every workload event writes
            # more than 60 bytes), as if the final event's write had never completed. Every
            # earlier event was acknowledged and must be there.
            wal = os.path.basename(files_of(pristine, "wal")[-1])
            size = os.path.getsize(os.path.join(pristine, wal))
            for cut in (size - 1, size - 7, size - 20, size - 60):
                os.truncate(os.path.join(fresh(), wal), cut)
                out = await worker.trial(work, every - 1)
                rep.note("torn_tails", f"{wal} cut at {cut}/{size}", out)
                if out.kind == "typed":  # refusing what a power loss leaves is a failure too
                    rep.failures.append(f"torn_tails {wal} cut at {cut}/{size}: {out.detail}")

            for _ in range(sizes.kills):
                acks = rng.randrange(1, every)
                out = await kill_trial(worker, name, options, wl, seed, sizes.updates, acks, tmp)
                rep.note("kills", f"after {acks}", out)
        finally:
            await worker.close()

    # The disk faults need a real file system (a tmpfs of their own, the immutable flag).
    for family, trials in (("disk_full", sizes.disk_full), ("read_only", sizes.read_only)):
        for i in range(trials):
            with _tempdir(in_memory=False) as tmp:
                leave = rng.randrange(200_000, 2_000_000)
                try:
                    out = await disk_fault_trial(open_store, family, Path(tmp, "disk"), leave)
                except FaultUnavailable as e:
                    rep.skipped[family] = str(e)
                    break
                rep.note(family, f"trial {i}", out)
    rep.seconds = time.perf_counter() - t0
    return rep


async def campaign(
    stores: Sequence[str], modes: Sequence[str], sizes: Sizes, seed: int
) -> list[StoreReport]:
    """Run the campaign on each store of ``stores`` in each mode."""
    installed = load_plugins().persisters
    reports = []
    for name in stores:
        if name not in installed:
            raise SystemExit(f"the {name} persister is not installed (perun-{name})")
        for mode in modes:
            reports.append(await run_store(name, mode, sizes, seed))
    return reports


def summary(reports: Sequence[StoreReport], details: bool = False) -> dict[str, Any]:
    """The campaign's JSON report: totals, then each store and mode."""
    return {
        "flips_tried": sum(r.as_json(False)["flips_tried"] for r in reports),
        "trials": sum(sum(c.values()) for r in reports for c in r.families().values()),
        "typed_errors": sum(r.count("typed") for r in reports),
        "harmless": sum(r.count("harmless") for r in reports),
        "silent": sum(r.count("silent") for r in reports),
        "untyped": sum(r.count("untyped") for r in reports),
        "hangs": sum(r.count("hang") for r in reports),
        "failures": sum(len(r.failures) for r in reports),
        "stores": [r.as_json(details) for r in reports],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the campaign and print its JSON report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "writer":
        name, path, options, seed, updates, part = argv[1:7]
        wl = workload(int(seed), int(updates))
        asyncio.run(_write(name, path, json.loads(options), wl, part))
        return 0
    if argv and argv[0] == "worker":
        name, options, seed, updates = argv[1:5]
        asyncio.run(_serve_trials(name, json.loads(options), workload(int(seed), int(updates))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = Sizes()
    ap.add_argument("--flips", type=int, default=d.flips, help="byte flips per store and mode")
    ap.add_argument("--kills", type=int, default=d.kills, help="SIGKILL trials per store/mode")
    ap.add_argument("--disk-full", type=int, default=d.disk_full, help="full-disk trials")
    ap.add_argument("--read-only", type=int, default=d.read_only, help="read-only log trials")
    ap.add_argument("--updates", type=int, default=d.updates, help="workload size")
    ap.add_argument("--stores", nargs="+", default=["leveldb", "rocksdb"])
    ap.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["sync", "nosync"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", metavar="OUT", help="also write the report to OUT")
    ap.add_argument("--details", action="store_true", help="list every failing trial")
    args = ap.parse_args(argv)
    sizes = Sizes(args.flips, args.kills, args.disk_full, args.read_only, args.updates)
    reports = asyncio.run(campaign(args.stores, args.modes, sizes, args.seed))
    result = summary(reports, args.details)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    bad = result["silent"] or result["untyped"] or result["hangs"] or result["failures"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
