"""LevelDB (through plyvel) as a :class:`~perun_core.persistence.kv.KeyValueStore`.

Durability (``sync``):

- ``sync=True`` (default): each write batch is appended to LevelDB's write-ahead log and
  fsynced before the call returns: an acknowledged write survives a killed process, a kernel
  crash and a power loss (as far as the device honours fsync). Writes run in a worker thread
  and concurrent batches of different channels are group-committed (one fsync for many).
- ``sync=False``: each batch is appended to the log and handed to the operating system (a
  ``write(2)``) before the call returns. It survives the process being killed at any instant
  (SIGKILL, a crash, an exception); a power loss or a kernel crash can lose the writes of the
  last seconds that the OS had not written back yet.

Fail closed (see :mod:`perun_core.persistence.engine`): after a failed write (a full disk, an
I/O error) the store refuses every call with :class:`~perun_core.errors.StoreFailedError`
until it is opened again. LevelDB itself carries on after a failed log append, and the records
it appends after the partial one are unreadable on the next open.

Opening checks everything LevelDB can check (``paranoid_checks=True``: a damaged log record,
manifest or table index makes the open fail with
:class:`~perun_core.errors.StoreCorruptError` instead of silently dropping records), and
before that checks the log's last block for a complete record that LevelDB would take for a
torn tail (:mod:`perun_core.persistence.kv_wal`). Every read verifies the block checksums of
the table files it touches (``verify_checksums``), so a damaged table block is a
:class:`~perun_core.errors.StoreCorruptError`, never an older or foreign value.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any

import plyvel  # type: ignore[import-untyped]

from perun_core.errors import (
    PersistenceError,
    StoreCorruptError,
    StoreLockedError,
)
from perun_core.persistence.engine import EngineStore, Op
from perun_core.persistence.kv_wal import check_logs

__all__ = ["LevelDBStore"]


def _text(exc: BaseException) -> str:
    """plyvel puts LevelDB's status message into the exception as bytes."""
    arg = exc.args[0] if exc.args else exc
    if isinstance(arg, bytes):
        return arg.decode("utf-8", "replace")
    return str(arg)


class LevelDBStore(EngineStore):
    """A LevelDB database directory as a key-value store.

    Args:
        path: the database directory (created with its parents if ``create``).
        sync: fsync every write batch (power-loss safe, the default) instead of only handing
            it to the OS (process-kill safe); see the module docstring.
        threaded: run writes and scans in a worker thread; default: ``sync``.
        create: create the database if it does not exist.
        paranoid_checks: refuse to open a database with damaged files (turning it off lets
            LevelDB skip damaged log records silently; only for salvaging data).
        **options: further keyword arguments of ``plyvel.DB`` (e.g. ``lru_cache_size``,
            ``write_buffer_size``, ``compression``).

    Raises:
        StoreLockedError: the database is open elsewhere (another process or handle).
        StoreCorruptError: the database files are damaged.
        PersistenceError: any other failure to open (missing database, bad path or option).
    """

    name = "leveldb"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sync: bool = True,
        threaded: bool | None = None,
        create: bool = True,
        paranoid_checks: bool = True,
        **options: Any,
    ) -> None:
        where = os.fspath(path)
        super().__init__(path=where, threaded=sync if threaded is None else threaded)
        self.sync = sync
        if paranoid_checks:
            check_logs(where, "LevelDB")
        try:
            if create:
                os.makedirs(where, exist_ok=True)
            self._db = plyvel.DB(
                where, create_if_missing=create, paranoid_checks=paranoid_checks, **options
            )
        except plyvel.CorruptionError as e:
            raise StoreCorruptError(
                f"the LevelDB database at {where} is corrupt ({_text(e)}). Restore the "
                "directory from a backup; plyvel.repair_db() can salvage what is readable, but "
                "records it drops are lost.",
                path=where,
            ) from None
        except plyvel.IOError as e:
            msg = _text(e)
            if "lock" in msg.lower():
                raise StoreLockedError(
                    f"the LevelDB database at {where} is already open (by another process, or "
                    f"another handle in this one): {msg}. Close the other user first, or use "
                    "another path.",
                    path=where,
                ) from None
            raise PersistenceError(
                f"cannot open the LevelDB database at {where}: {msg}", path=where
            ) from None
        except plyvel.Error as e:
            raise PersistenceError(
                f"cannot open the LevelDB database at {where}: {_text(e)}", path=where
            ) from None
        except (OSError, TypeError) as e:
            raise PersistenceError(
                f"cannot open the LevelDB database at {where}: {e}", path=where
            ) from None

    def _translate(self, exc: Exception, action: str) -> PersistenceError:
        if isinstance(exc, plyvel.CorruptionError):
            return StoreCorruptError(
                f"the LevelDB database at {self.path} is corrupt: {action} failed "
                f"({_text(exc)}). Restore it from a backup.",
                path=self.path,
            )
        if isinstance(exc, RuntimeError) and "closed" in str(exc):
            return self._closed_error()
        return PersistenceError(
            f"LevelDB database at {self.path}: {action} failed: {_text(exc)}", path=self.path
        )

    def _engine_get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key, verify_checksums=True)
        return value

    def _engine_write(self, ops: Sequence[Op]) -> None:
        wb = self._db.write_batch(sync=self.sync)
        for k, v in ops:
            if v is None:
                wb.delete(k)
            else:
                wb.put(k, v)
        wb.write()

    def _engine_scan(self, lo: bytes, hi: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        it = self._db.iterator(start=lo, stop=hi, verify_checksums=True)
        try:
            return list(itertools.islice(it, limit))
        finally:
            it.close()

    def _engine_close(self) -> None:
        self._db.close()
