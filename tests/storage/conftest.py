"""Fixtures of the storage fault tests: the durable stores, small tmpfs mounts (a disk that
fills up) and the immutable flag (files and directories that cannot be written, even by
root). The fault injection itself lives in ``storage_campaign.py`` (one place for the tests
and the campaign command)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from perun_core.plugins import load_plugins

sys.path.insert(0, str(Path(__file__).resolve().parent))

from storage_campaign import FaultUnavailable, set_immutable, tmpfs_mount

STORES = ("leveldb", "rocksdb")


def needs_store(name: str) -> None:
    """Skip unless the persister plugin ``name`` is installed."""
    if name not in load_plugins().persisters:
        pytest.skip(f"needs the {name} persister (perun-{name})")


@pytest.fixture(params=STORES)
def store_name(request: pytest.FixtureRequest) -> str:
    """Each durable store whose plugin is installed."""
    name: str = request.param
    needs_store(name)
    return name


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``tmpfs(size_bytes)`` mounts a tmpfs of that size and returns its path; unmounted at
    teardown. Skips the test where mounting is not permitted (not root, no CAP_SYS_ADMIN)."""
    with contextlib.ExitStack() as stack:

        def mount(size: int) -> Path:
            try:
                return stack.enter_context(tmpfs_mount(tmp_path / "tmpfs", size))
            except FaultUnavailable as e:
                pytest.skip(str(e))

        yield mount


@pytest.fixture
def immutable() -> Iterator[Callable[[Path, bool], None]]:
    """``immutable(path, on)`` sets or clears the immutable flag (``chattr +i``); cleared at
    teardown. Skips where the file system or the privileges do not allow it."""
    flagged: set[Path] = set()

    def set_(path: Path, on: bool) -> None:
        try:
            set_immutable(path, on)
        except FaultUnavailable as e:
            pytest.skip(str(e))
        (flagged.add if on else flagged.discard)(path)

    yield set_
    for path in flagged:
        with contextlib.suppress(OSError, FaultUnavailable):
            set_immutable(path, False)
