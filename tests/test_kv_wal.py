"""perun_core.persistence.kv_wal: telling a torn log tail from a complete record whose length
field is damaged, on logs written here in the engines' format (the plugins' tests check the
same on logs written by LevelDB and RocksDB themselves)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from perun_core.errors import PersistenceError, StoreCorruptError
from perun_core.persistence.kv_wal import (
    BLOCK_SIZE,
    check_logs,
    crc32c,
    find_log_damage,
    live_manifest,
    log_files,
    log_records,
)

FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def write_log(payloads: list[bytes]) -> bytes:
    """A log in the engines' format: 32 KiB blocks, zero trailers, fragmented records."""
    out = bytearray()
    for payload in payloads:
        left, first = payload, True
        while True:
            room = BLOCK_SIZE - len(out) % BLOCK_SIZE
            if room < 7:
                out += b"\0" * room
                room = BLOCK_SIZE
            n = min(len(left), room - 7)
            end = n == len(left)
            rtype = (FULL if end else FIRST) if first else (LAST if end else MIDDLE)
            frag = left[:n]
            out += struct.pack("<IHB", _mask(crc32c(bytes([rtype]) + frag)), n, rtype) + frag
            left, first = left[n:], False
            if end:
                break
    return bytes(out)


def _payloads(n: int, size: int = 300) -> list[bytes]:
    return [bytes([i % 251]) * size for i in range(n)]


def _save(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "000003.log"
    path.write_bytes(data)
    return str(path)


def _set_length(data: bytes, offset: int, length: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<H", out, offset + 4, length)
    return bytes(out)


def test_crc32c_matches_the_standard_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


def test_a_whole_log_has_no_damage_and_its_records_are_listed(tmp_path: Path) -> None:
    data = write_log(_payloads(250))  # 250 x 307 bytes: two blocks and a bit
    path = _save(tmp_path, data)
    assert find_log_damage(path) is None
    recs = log_records(path)
    assert len(recs) == 250 + 2  # two records are split across a block boundary
    assert {r.type for r in recs} == {FULL, FIRST, LAST}
    assert recs[0].offset == 0 and recs[1].offset == 307
    assert log_files(str(tmp_path)) == [path]


@pytest.mark.parametrize("cut", [1, 7, 100, 306])
def test_a_torn_last_record_is_not_damage(tmp_path: Path, cut: int) -> None:
    data = write_log(_payloads(20))
    assert find_log_damage(_save(tmp_path, data[:-cut])) is None


def test_a_torn_header_is_not_damage(tmp_path: Path) -> None:
    data = write_log(_payloads(20))
    assert find_log_damage(_save(tmp_path, data + b"\x01\x02\x03")) is None


@pytest.mark.parametrize("which", [0, 9, 19])
def test_a_complete_record_whose_length_runs_past_the_end_is_damage(
    tmp_path: Path, which: int
) -> None:
    data = write_log(_payloads(20))
    bad = _set_length(data, which * 307, 300 | 0xFF00)
    damage = find_log_damage(_save(tmp_path, bad))
    assert damage is not None
    assert f"byte {which * 307}" in damage and "300 payload bytes" in damage


def test_a_damaged_length_that_stays_inside_the_file_is_left_to_the_engine(
    tmp_path: Path,
) -> None:
    # The record's checksum then fails at the wrong length; the engines report that.
    data = write_log(_payloads(20))
    assert find_log_damage(_save(tmp_path, _set_length(data, 0, 200))) is None


def test_only_the_last_block_can_hide_a_record(tmp_path: Path) -> None:
    data = write_log(_payloads(250))  # three blocks
    recs = log_records(_save(tmp_path, data))
    early = next(r for r in recs if r.offset + r.header + r.length < BLOCK_SIZE - 400)
    # past the end of the first block, not the file: the engine reports "bad record length"
    assert find_log_damage(_save(tmp_path, _set_length(data, early.offset, 60000))) is None
    last_block = [r for r in recs if r.offset >= 2 * BLOCK_SIZE]
    assert last_block
    late = last_block[0]
    damage = find_log_damage(_save(tmp_path, _set_length(data, late.offset, 60000)))
    assert damage is not None and f"byte {late.offset}" in damage


def test_an_empty_or_zero_padded_log_has_no_damage(tmp_path: Path) -> None:
    assert find_log_damage(_save(tmp_path, b"")) is None
    data = write_log(_payloads(3))
    assert find_log_damage(_save(tmp_path, data + b"\0" * 500)) is None


def test_check_logs_raises_typed_errors_naming_the_directory(tmp_path: Path) -> None:
    data = write_log(_payloads(20))
    _save(tmp_path, data)
    check_logs(str(tmp_path), "LevelDB")  # a whole log: fine
    _save(tmp_path, _set_length(data, 0, 0xFF2C))
    with pytest.raises(StoreCorruptError, match=r"LevelDB database .* is corrupt") as info:
        check_logs(str(tmp_path), "LevelDB")
    assert info.value.path == str(tmp_path)
    (tmp_path / "000003.log").unlink()
    (tmp_path / "000009.log").mkdir()  # not a readable file
    with pytest.raises(PersistenceError, match="cannot read the RocksDB log") as err:
        check_logs(str(tmp_path), "RocksDB")
    assert not isinstance(err.value, StoreCorruptError) and err.value.path == str(tmp_path)


@pytest.mark.parametrize("rtype", [5, 6, 7, 8, 11])
def test_a_record_of_a_recycled_logs_type_is_damage_anywhere(tmp_path: Path, rtype: int) -> None:
    data = bytearray(write_log(_payloads(250)))
    recs = log_records(_save(tmp_path, bytes(data)))
    early = recs[5]  # in the first of three blocks
    data[early.offset + 6] = rtype
    damage = find_log_damage(_save(tmp_path, bytes(data)))
    assert damage is not None and f"byte {early.offset}" in damage and f"type {rtype}" in damage


def test_the_live_manifest_is_the_one_current_names_and_is_checked(tmp_path: Path) -> None:
    assert live_manifest(str(tmp_path)) is None  # no CURRENT
    data = write_log(_payloads(3, 60))
    (tmp_path / "MANIFEST-000005").write_bytes(data)
    (tmp_path / "MANIFEST-000002").write_bytes(b"stale")
    (tmp_path / "CURRENT").write_text("MANIFEST-000005\n")
    assert live_manifest(str(tmp_path)) == str(tmp_path / "MANIFEST-000005")
    check_logs(str(tmp_path), "RocksDB")
    (tmp_path / "MANIFEST-000005").write_bytes(_set_length(data, 67, 0xFF00))
    with pytest.raises(StoreCorruptError, match="MANIFEST-000005"):
        check_logs(str(tmp_path), "RocksDB")
    (tmp_path / "CURRENT").write_text("../elsewhere\n")  # not a manifest: the engine reports it
    assert live_manifest(str(tmp_path)) is None
