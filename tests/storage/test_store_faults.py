"""Real LevelDB and RocksDB stores on a disk that fills up and on files that become read-only:
every write either is acknowledged and survives, or raises a typed error; after the first
failure the store refuses every call until it is reopened; after the space or the permission
comes back, the reopened store holds every acknowledged write and takes writes again.

The full disk is a small tmpfs (these tests skip where mounting is not permitted); the
read-only files use the immutable flag (``chattr +i``), which stops root too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import fill

from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.errors import PersistenceError, StoreFailedError
from perun_core.interfaces.persister import Persister
from perun_core.persistence.kv_wal import log_files
from perun_core.plugins import load_plugins
from perun_core.testing.persister import created, params, sig, state

pytestmark = pytest.mark.timeout(120)

MODES: dict[str, dict[str, Any]] = {"sync": {}, "nosync": {"sync": False}}
CHANNELS = 8


def _open(name: str, path: Path, options: dict[str, Any]) -> Persister:
    made: Persister = load_plugins(only=[name]).persister(name)(path=path, **options)
    return made


async def _update(p: Persister, nonce: int, v: int) -> None:
    """One payment on channel ``nonce`` at version ``v``: staged, countersigned, enabled."""
    ch = params(nonce)
    tx = Transaction.unsigned(state(ch, v, v % 20, 20 - v % 20), 2)
    await p.staged(ch.id, tx.with_sig(0, sig("me", v)), Phase.SIGNING)
    await p.sig_added(ch.id, v, 1, sig("bob", v))
    await p.enabled(ch.id, tx.with_sig(0, sig("me", v)).with_sig(1, sig("bob", v)), Phase.ACTING)


async def _write_until_failure(p: Persister, acked: dict[int, int]) -> list[BaseException]:
    """Every channel pays concurrently until its own write fails; ``acked`` holds the last
    version each channel completed. Returns each channel's error."""

    async def channel(nonce: int) -> BaseException:
        while True:
            try:
                await _update(p, nonce, acked[nonce] + 1)
            except PersistenceError as e:
                return e
            acked[nonce] += 1
            if acked[nonce] > 50_000:
                raise AssertionError("the store never failed")

    return list(await asyncio.gather(*(channel(n) for n in acked)))


async def _check_reopened(name: str, path: Path, acked: dict[int, int]) -> None:
    """Every acknowledged update is in the reopened store, and nothing after the failed one;
    the store takes writes again."""
    p = _open(name, path, {})
    try:
        for nonce, v in acked.items():
            rec = await p.restore_channel(params(nonce).id)
            assert rec is not None and rec.current is not None and rec.current.fully_signed
            # the update whose write failed may or may not have made it; nothing later did
            assert v <= rec.current.state.version <= v + 1, (nonce, v, rec.current.state)
            if rec.staging is not None:
                assert rec.staging.state.version == rec.current.state.version + 1
        nonce, v = next(iter(acked.items()))
        rec = await p.restore_channel(params(nonce).id)
        assert rec is not None and rec.current is not None
        await _update(p, nonce, rec.current.state.version + 2)  # writes work again
    finally:
        await p.close()


async def _create_channels(p: Persister) -> dict[int, int]:
    for n in range(1, CHANNELS + 1):
        await p.channel_created(created(params(n)))
        await p.enabled(
            params(n).id, Transaction(state(params(n), 0), (sig("me", 0),) * 2), Phase.ACTING
        )
    return {n: 0 for n in range(1, CHANNELS + 1)}


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_a_full_disk_fails_the_store_closed_and_loses_nothing_acknowledged(
    store_name: str, mode: str, tmpfs: Callable[[int], Path]
) -> None:
    disk = tmpfs(8 << 20)
    path = disk / "db"
    p = _open(store_name, path, MODES[mode])
    acked = await _create_channels(p)
    filler = fill(disk, leave=600_000)  # the log fills the rest
    errors = await _write_until_failure(p, acked)
    # The first failure is the engine's (the disk is full); every other channel, whose
    # write came after it or was queued behind it, is refused by the failed store.
    assert all(isinstance(e, PersistenceError) for e in errors)
    first = [e for e in errors if not isinstance(e, StoreFailedError)]
    assert len(first) >= 1 and "space" in str(first[0]).lower(), errors
    filler.unlink()  # the space is back
    for nonce in acked:  # pre-fix, LevelDB took these and could not read them back
        with pytest.raises(StoreFailedError, match="earlier write failed"):
            await _update(p, nonce, acked[nonce] + 2)
    with pytest.raises(StoreFailedError):
        await p.restore_channel(params(1).id)
    await p.close()
    assert sum(acked.values()) > 100  # the disk held plenty before it filled up
    await _check_reopened(store_name, path, acked)


async def test_a_write_refused_by_a_read_only_log_fails_the_store_closed(
    store_name: str, tmp_path: Path, immutable: Callable[[Path, bool], None]
) -> None:
    path = tmp_path / "db"
    p = _open(store_name, path, {})
    acked = await _create_channels(p)
    for n in acked:
        await _update(p, n, 1)
        acked[n] = 1
    logs = [Path(f) for f in log_files(str(path))]
    assert logs, "no write-ahead log"
    for log in logs:
        immutable(log, True)  # permission to write is gone
    errors = await _write_until_failure(p, acked)
    assert all(isinstance(e, PersistenceError) for e in errors)
    assert any(not isinstance(e, StoreFailedError) for e in errors)
    for log in logs:
        immutable(log, False)  # and back
    with pytest.raises(StoreFailedError):
        await _update(p, 1, acked[1] + 2)
    await p.close()
    await _check_reopened(store_name, path, acked)


async def test_a_store_in_a_read_only_directory_refuses_to_open_with_a_typed_error(
    store_name: str, tmp_path: Path, immutable: Callable[[Path, bool], None]
) -> None:
    path = tmp_path / "db"
    p = _open(store_name, path, {})
    acked = await _create_channels(p)
    await p.close()
    immutable(path, True)  # no new files: an open needs a new log
    with pytest.raises(PersistenceError) as info:
        _open(store_name, path, {})
    assert info.value.path == str(path)
    immutable(path, False)
    await _check_reopened(store_name, path, acked)
