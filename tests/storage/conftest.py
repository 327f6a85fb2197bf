"""Fixtures of the storage fault tests: small tmpfs mounts (a disk that fills up) and the
immutable flag (files and directories that cannot be written, even by root)."""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from perun_core.plugins import load_plugins

sys.path.insert(0, str(Path(__file__).resolve().parent))  # storage_campaign

STORES = ("leveldb", "rocksdb")

_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_IMMUTABLE_FL = 0x10


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
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs (a small disk that fills up) needs root")
        try:
            r = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except FileNotFoundError:
            pytest.skip("no mount command: cannot mount a tmpfs")
        if r.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here: {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        r = subprocess.run(["umount", str(where)], capture_output=True, timeout=30)
        if r.returncode != 0:  # still busy (a failing test left a file open): detach it
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


def _set_immutable(path: Path, on: bool) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        flags = array.array("l", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        flags[0] = flags[0] | _FS_IMMUTABLE_FL if on else flags[0] & ~_FS_IMMUTABLE_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
    finally:
        os.close(fd)


@pytest.fixture
def immutable() -> Iterator[Callable[[Path, bool], None]]:
    """``immutable(path, on)`` sets or clears the immutable flag (``chattr +i``): no process,
    root included, can then write the file (or create files in the directory). Cleared at
    teardown. Skips where the file system or the privileges do not allow it."""
    flagged: set[Path] = set()

    def set_(path: Path, on: bool) -> None:
        try:
            _set_immutable(path, on)
        except OSError as e:
            pytest.skip(f"cannot set the immutable flag on {path} ({e.strerror})")
        (flagged.add if on else flagged.discard)(path)

    yield set_
    for path in flagged:
        with contextlib.suppress(OSError):
            _set_immutable(path, False)
