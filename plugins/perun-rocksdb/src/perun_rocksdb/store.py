"""RocksDB (through rocksdict, in raw mode) as a :class:`~perun_core.persistence.kv.KeyValueStore`.

Durability (``sync``):

- ``sync=True`` (default): each write batch is appended to RocksDB's write-ahead log and
  fsynced before the call returns: an acknowledged write survives a killed process, a kernel
  crash and a power loss (as far as the device honours fsync). Writes run in a worker thread
  and concurrent batches of different channels are group-committed (one fsync for many).
- ``sync=False``: each batch is appended to the log and handed to the operating system before
  the call returns (RocksDB flushes its WAL buffer on every write unless ``manual_wal_flush``
  is set, which this store never does). It survives the process being killed at any instant;
  a power loss or a kernel crash can lose the writes the OS had not written back yet.

Fail closed (see :mod:`perun_core.persistence.engine`): after a failed write the store refuses
every call with :class:`~perun_core.errors.StoreFailedError` until it is opened again.

The WAL is replayed in ``tolerate_corrupted_tail_records`` mode: only a torn last record (a
write that never returned) is dropped; any other damaged record makes the open fail with
:class:`~perun_core.errors.StoreCorruptError`. (RocksDB's ``point_in_time`` mode, used before,
stops replaying at the first damaged record *without an error*: one flipped byte could restore
an empty store.) Before opening, the WAL's last block is checked for a complete record that
RocksDB would take for a torn tail (:mod:`perun_core.persistence.kv_wal`). Reads verify block
checksums; paranoid checks are on.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from typing import Any

import rocksdict

from perun_core.errors import (
    PersistenceError,
    StoreCorruptError,
    StoreLockedError,
)
from perun_core.persistence.engine import EngineStore, Op
from perun_core.persistence.kv_wal import check_logs

__all__ = ["RocksDBStore"]


def _is_lock_error(msg: str) -> bool:
    low = msg.lower()
    return low.startswith("io error") and "lock" in low


class RocksDBStore(EngineStore):
    """A RocksDB database directory as a key-value store.

    Args:
        path: the database directory (created with its parents if ``create``).
        sync: fsync every write batch (power-loss safe, the default) instead of only handing
            it to the OS (process-kill safe); see the module docstring.
        threaded: run writes and scans in a worker thread; default: ``sync``.
        create: create the database if it does not exist.
        options: a ``rocksdict.Options`` to start from (tuning); raw mode, ``create``,
            paranoid checks, the WAL recovery mode and no log recycling are set on it.

    Raises:
        StoreLockedError: the database is open elsewhere (another process or handle).
        StoreCorruptError: the database files are damaged.
        PersistenceError: any other failure to open (missing database, bad path).
    """

    name = "rocksdb"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sync: bool = True,
        threaded: bool | None = None,
        create: bool = True,
        options: Any = None,
    ) -> None:
        where = os.fspath(path)
        super().__init__(path=where, threaded=sync if threaded is None else threaded)
        self.sync = sync
        opts = options if options is not None else rocksdict.Options(raw_mode=True)
        if options is not None and not isinstance(options, rocksdict.Options):
            raise PersistenceError(
                f"RocksDB store at {where}: options must be a rocksdict.Options, got "
                f"{type(options).__name__}",
                path=where,
            )
        opts.create_if_missing(create)
        opts.set_paranoid_checks(True)
        opts.set_wal_recovery_mode(rocksdict.DBRecoveryMode.tolerate_corrupted_tail_records())
        # Never recycled logs: their records' type is what the WAL check refuses as damage.
        opts.set_recycle_log_file_num(0)
        self._wo = rocksdict.WriteOptions()
        self._wo.sync = sync
        self._ro = rocksdict.ReadOptions()
        self._ro.set_verify_checksums(True)
        check_logs(where, "RocksDB")
        try:
            if create:
                os.makedirs(where, exist_ok=True)
            self._db = rocksdict.Rdict(where, opts)
        except Exception as e:  # noqa: BLE001 - rocksdict raises plain Exception with RocksDB's status text
            msg = str(e)
            if _is_lock_error(msg):
                raise StoreLockedError(
                    f"the RocksDB database at {where} is already open (by another process, or "
                    f"another handle in this one): {msg}. Close the other user first, or use "
                    "another path.",
                    path=where,
                ) from None
            # a CURRENT file naming a missing MANIFEST is damage too, reported as an IO error
            if msg.startswith("Corruption") or "MANIFEST" in msg:
                raise StoreCorruptError(
                    f"the RocksDB database at {where} is corrupt ({msg}). Restore the directory "
                    "from a backup; Rdict.repair() can salvage what is readable, but records "
                    "it drops are lost.",
                    path=where,
                ) from None
            raise PersistenceError(
                f"cannot open the RocksDB database at {where}: {msg}", path=where
            ) from None

    def _translate(self, exc: Exception, action: str) -> PersistenceError:
        msg = str(exc)
        if isinstance(exc, rocksdict.DbClosedError):
            return self._closed_error()
        if msg.startswith("Corruption"):
            return StoreCorruptError(
                f"the RocksDB database at {self.path} is corrupt: {action} failed ({msg}). "
                "Restore it from a backup.",
                path=self.path,
            )
        return PersistenceError(
            f"RocksDB database at {self.path}: {action} failed: {msg}", path=self.path
        )

    def _engine_get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key, read_opt=self._ro)
        return value

    def _engine_write(self, ops: Sequence[Op]) -> None:
        wb = rocksdict.WriteBatch(raw_mode=True)
        for k, v in ops:
            if v is None:
                wb.delete(k)
            else:
                wb.put(k, v)
        self._db.write(wb, write_opt=self._wo)

    def _engine_scan(self, lo: bytes, hi: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        ro = rocksdict.ReadOptions()
        ro.set_verify_checksums(True)
        if hi is not None:
            ro.set_iterate_upper_bound(hi)
        items: Iterable[tuple[bytes, bytes]] = self._db.items(from_key=lo, read_opt=ro)  # type: ignore[assignment]
        try:
            return list(itertools.islice(items, limit))
        finally:
            # an iterator keeps the database (and its lock) alive until it is released
            del items

    def _engine_close(self) -> None:
        self._db.close()
