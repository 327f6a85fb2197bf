"""Tell a torn write-ahead-log tail from a damaged record, before LevelDB or RocksDB replays it.

Both engines write their log in the same format: 32 KiB blocks of records, each with a header
of a masked CRC-32C (over the type byte and the payload), a little-endian ``u16`` payload
length and a type byte (RocksDB's recyclable records add a 4-byte log number, covered by the
checksum). When replaying, both treat a record that runs past the end of the file as a *torn
tail* -- the last write of a process or machine that died while writing it -- and drop it
without an error, as they must: that write never returned.

A damaged length byte in a complete record of the file's last block looks exactly like that,
and the engine then silently drops the record and every record after it in the block: writes
that were acknowledged long ago, i.e. a silent rollback (a log shorter than 32 KiB is all
"last block"). :func:`find_log_damage` tells the two apart: a torn record's bytes end before
its payload does, so no prefix of them matches its checksum, while a complete record with a
damaged length still matches at its real length.

It also refuses a record of a *recycled* log's type (5-8 and 11: RocksDB's recyclable
records, whose header adds the log number) in a log of a store that never recycles its logs:
one damaged type byte can make one, and RocksDB then loops forever while replaying it (seen
with the RocksDB of rocksdict 0.3.29); LevelDB knows no such types.

Every other damage to a log record (checksum, type, a length inside the file) is reported by
the engines themselves when opened with paranoid checks (LevelDB) or in
``tolerate_corrupted_tail_records`` mode (RocksDB).

The manifest (the log of version edits that ``CURRENT`` names) has the same format and the
same weaknesses -- RocksDB looped forever on a manifest record whose type byte was damaged --
so :func:`check_logs` checks it too.
"""

from __future__ import annotations

import glob
import os
import struct
from typing import NamedTuple

from perun_core.errors import PersistenceError, StoreCorruptError

__all__ = [
    "LogRecord",
    "check_logs",
    "crc32c",
    "find_log_damage",
    "live_manifest",
    "log_files",
    "log_records",
]

BLOCK_SIZE = 32768
"""The log's block size (both engines)."""

_HEADER = struct.Struct("<IHB")  # masked crc, length, type
_RECYCLABLE_TYPES = frozenset({5, 6, 7, 8, 11})  # RocksDB's recycled-log records
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF


def _table() -> list[int]:
    out = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        out.append(c)
    return out


_CRC_TABLE = _table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, as the engines compute it (before masking)."""
    r = _U32
    for b in data:
        r = _CRC_TABLE[(r ^ b) & 0xFF] ^ (r >> 8)
    return r ^ _U32


def _unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32


def _complete_prefix(covered: bytes, fixed: int, want: int) -> int | None:
    """The payload length at which ``covered`` (type byte, log number, payload bytes) first
    matches the checksum ``want``; ``None`` if no prefix does. ``fixed`` header bytes are
    always covered."""
    r = _U32
    for i, b in enumerate(covered):
        r = _CRC_TABLE[(r ^ b) & 0xFF] ^ (r >> 8)
        if i + 1 >= fixed and r ^ _U32 == want:
            return i + 1 - fixed
    return None


class LogRecord(NamedTuple):
    """One physical record of a log file (for tests and tools)."""

    offset: int  # of its header in the file
    header: int  # header size: 7, or 11 for RocksDB's recyclable records
    length: int  # payload bytes, as its length field says
    type: int


def log_records(path: str) -> list[LogRecord]:
    """Every record of the log file at ``path``, walking its blocks as the engines do (block
    trailers and zero padding skipped; a record running past its block ends the block)."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    for start in range(0, len(data), BLOCK_SIZE):
        block = data[start : start + BLOCK_SIZE]
        off = 0
        while len(block) - off >= _HEADER.size:
            _, length, rtype = _HEADER.unpack_from(block, off)
            if rtype == 0 and length == 0:
                break
            header = 11 if rtype in _RECYCLABLE_TYPES else _HEADER.size
            out.append(LogRecord(start + off, header, length, rtype))
            off += header + length
    return out


def log_files(directory: str) -> list[str]:
    """The write-ahead logs (``NNNNNN.log``) in a LevelDB or RocksDB directory."""
    return sorted(glob.glob(os.path.join(glob.escape(directory), "*.log")))


def find_log_damage(path: str) -> str | None:
    """A description of a record in the log file at ``path`` that the engine would replay
    wrongly without an error: a complete record whose length field is damaged so that it
    looks like a torn tail, or a record of a recycled log's type. ``None`` if there is none
    (a genuinely torn last record is not damage).

    Only the last block of the file can hide a record behind a damaged length: a record that
    runs past the end of an earlier block is reported as corrupt by the engine itself.
    """
    size = os.path.getsize(path)
    if size == 0:
        return None
    last = (size - 1) // BLOCK_SIZE * BLOCK_SIZE
    name = os.path.basename(path)
    with open(path, "rb") as f:
        for start in range(0, size, BLOCK_SIZE):
            block = f.read(BLOCK_SIZE)
            off = 0
            while len(block) - off >= _HEADER.size:
                masked, length, rtype = _HEADER.unpack_from(block, off)
                if rtype == 0 and length == 0:
                    break  # zero padding: the engines skip the rest of the block
                if rtype in _RECYCLABLE_TYPES:
                    return (
                        f"the record at byte {start + off} of {name} has type {rtype}, a "
                        "recycled log's, in a log that is not recycled (a damaged type byte)"
                    )
                end = off + _HEADER.size + length
                if end <= len(block):
                    off = end
                    continue
                if start != last:
                    break  # past the end of its block: the engine reports it
                # The record runs past the end of the file: torn, unless a prefix is complete.
                real = _complete_prefix(block[off + 6 :], 1, _unmask(masked))
                if real is None:
                    return None
                return (
                    f"the record at byte {start + off} of {name} is complete ({real} payload "
                    f"bytes match its checksum) but its length field says {length}: the "
                    "engine would drop it and every later record as a torn tail"
                )
    return None


def live_manifest(directory: str) -> str | None:
    """The manifest that ``CURRENT`` names in a LevelDB or RocksDB directory (a log of version
    edits, in the same record format); ``None`` if there is no readable one (the engine itself
    reports a missing or damaged ``CURRENT``)."""
    try:
        with open(os.path.join(directory, "CURRENT"), "rb") as f:
            name = f.read(256).decode("ascii").rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None
    path = os.path.join(directory, name)
    if not name.startswith("MANIFEST-") or "/" in name or not os.path.isfile(path):
        return None
    return path


def check_logs(directory: str, engine: str) -> None:
    """Check the write-ahead logs and the live manifest of the database at ``directory``
    before ``engine`` (``"LevelDB"``, ``"RocksDB"``, for messages) replays them.

    Raises:
        StoreCorruptError: a log holds a record the engine would replay wrongly without an
            error (see :func:`find_log_damage`).
        PersistenceError: a log cannot be read.
    """
    files = log_files(directory)
    manifest = live_manifest(directory)
    if manifest is not None:
        files.append(manifest)
    try:
        damage = next(filter(None, map(find_log_damage, files)), None)
    except OSError as e:
        raise PersistenceError(
            f"cannot read the {engine} log in {directory}: {e}", path=directory
        ) from None
    if damage is not None:
        raise StoreCorruptError(
            f"the {engine} database at {directory} is corrupt: {damage}. Restore the "
            "directory from a backup.",
            path=directory,
        )
