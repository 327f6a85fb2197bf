"""Real LevelDB and RocksDB stores on a disk that fills up and with a log that becomes
read-only (issue 14, F1): every write either is acknowledged and survives, or raises a typed
error; after the first failure the store refuses every call (``StoreFailedError``) until it is
reopened; after the space or the permission comes back, the reopened store holds every
acknowledged payment exactly and takes writes again.

The full disk is a small tmpfs (skipped where mounting is not permitted); the read-only log
uses the immutable flag (``chattr +i``), which stops root too. The trials themselves are the
storage campaign's (``storage_campaign.disk_fault_trial``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from storage_campaign import (
    MODES,
    FaultUnavailable,
    check_reopened,
    create_channels,
    disk_fault_trial,
    fill,
    pay_until_failure,
)

from perun_core.errors import PersistenceError, StoreFailedError
from perun_core.interfaces.persister import Persister
from perun_core.plugins import load_plugins

pytestmark = pytest.mark.timeout(120)


def _opener(name: str, mode: str) -> Callable[[str], Persister]:
    factory = load_plugins(only=[name]).persister(name)

    def open_store(path: str) -> Persister:
        made: Persister = factory(path=path, **MODES[mode])
        return made

    return open_store


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("family", ["disk_full", "read_only"])
async def test_a_failed_write_fails_the_store_closed_and_loses_nothing_acknowledged(
    store_name: str, mode: str, family: str, tmp_path: Path
) -> None:
    try:
        out = await disk_fault_trial(_opener(store_name, mode), family, tmp_path / "disk")
    except FaultUnavailable as e:
        pytest.skip(str(e))
    assert out.kind == "harmless", out.detail


async def test_the_first_error_says_the_disk_is_full_and_the_rest_are_refused(
    store_name: str, tmpfs: Callable[[int], Path]
) -> None:
    disk = tmpfs(8 << 20)
    open_store = _opener(store_name, "sync")
    p = open_store(str(disk / "db"))
    acked = await create_channels(p)
    filler = fill(disk, leave=400_000)
    errors = await pay_until_failure(p, acked)
    filler.unlink()
    await p.close()
    # One group commit failed on the full disk (every channel in it got that error); every
    # channel whose write came later, or queued behind it, was refused by the failed store.
    first = [e for e in errors if not isinstance(e, StoreFailedError)]
    assert first and all("no space left" in str(e).lower() for e in first), errors
    assert all(e.path == str(disk / "db") for e in errors)
    assert sum(acked.values()) > 100  # the disk held plenty before it filled up
    out = await check_reopened(open_store, str(disk / "db"), acked)
    assert out.kind == "harmless", out.detail


async def test_a_store_in_a_read_only_directory_refuses_to_open_with_a_typed_error(
    store_name: str, tmp_path: Path, immutable: Callable[[Path, bool], None]
) -> None:
    path = tmp_path / "db"
    open_store = _opener(store_name, "sync")
    p = open_store(str(path))
    acked = await create_channels(p)
    await p.close()
    immutable(path, True)  # no new files: an open needs a new log
    with pytest.raises(PersistenceError) as info:
        open_store(str(path))
    assert info.value.path == str(path)
    immutable(path, False)
    out = await check_reopened(open_store, str(path), acked)
    assert out.kind == "harmless", out.detail
