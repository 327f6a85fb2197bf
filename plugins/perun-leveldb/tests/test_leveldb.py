"""perun-leveldb: the persister and key-value conformance suites on real LevelDB directories,
locked and corrupt databases, kill -9, and the plugin registration."""

from __future__ import annotations

import glob
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from perun_leveldb import LevelDBPersister, LevelDBStore

from perun_core.errors import StoreCorruptError
from perun_core.interfaces import Persister
from perun_core.persistence import KeyValueStore, KVPersister
from perun_core.persistence.kv_wal import log_files
from perun_core.plugins import load_plugins
from perun_core.testing.persister import (
    DurableStoreConformance,
    KeyValueStoreConformance,
    PersisterConformance,
    assert_same_record,
    created,
    open_and_pay,
    params,
)

# sync: the default (fsync per batch in a worker thread with group commit);
# nosync: writes reach the OS on the event loop
MODES: dict[str, dict[str, Any]] = {"nosync": {"sync": False}, "sync": {}}


@pytest.fixture(params=sorted(MODES))
def mode(request: pytest.FixtureRequest) -> dict[str, Any]:
    return MODES[request.param]


class TestLevelDBPersister(PersisterConformance):
    @pytest.fixture
    async def persister(self, tmp_path: Path, mode: dict[str, Any]) -> AsyncIterator[Persister]:
        self.path, self.mode, self.opened = tmp_path / "db", mode, []
        p = LevelDBPersister(self.path, **mode)
        self.opened.append(p)
        yield p
        for q in self.opened:
            await q.close()

    @pytest.fixture
    def reopen(self) -> Callable[[Persister], Awaitable[Persister]]:
        async def reopen(p: Persister) -> Persister:
            await p.close()
            q = LevelDBPersister(self.path, **self.mode)
            self.opened.append(q)
            return q

        return reopen


class TestLevelDBStore(KeyValueStoreConformance):
    @pytest.fixture
    async def kv(self, tmp_path: Path, mode: dict[str, Any]) -> AsyncIterator[KeyValueStore]:
        self.path, self.mode, self.opened = tmp_path / "db", mode, []
        store = LevelDBStore(self.path, **mode)
        self.opened.append(store)
        yield store
        for s in self.opened:
            await s.close()

    @pytest.fixture
    def kv_reopen(self) -> Callable[[KeyValueStore], Awaitable[KeyValueStore]]:
        async def reopen(store: KeyValueStore) -> KeyValueStore:
            await store.close()
            again = LevelDBStore(self.path, **self.mode)
            self.opened.append(again)
            return again

        return reopen


def _flip_log_bytes(path: str) -> None:
    """Bit rot in the middle of the write-ahead log (where the records are)."""
    logs = [f for f in glob.glob(os.path.join(path, "*.log")) if os.path.getsize(f) > 256]
    assert logs, f"no write-ahead log with data in {os.listdir(path)}"
    with open(logs[0], "r+b") as f:
        data = bytearray(f.read())
        mid = len(data) // 2
        data[mid : mid + 32] = bytes(b ^ 0x5A for b in data[mid : mid + 32])
        f.seek(0)
        f.write(data)


class TestLevelDBDurability(DurableStoreConformance):
    @pytest.fixture
    def persister_name(self) -> str:
        return "leveldb"

    @pytest.fixture
    def store_options(self, mode: dict[str, Any]) -> dict[str, Any]:
        return mode

    @pytest.fixture
    def wal_files(self) -> Callable[[str], list[str]]:
        return log_files

    @pytest.fixture
    def corrupt_store(self) -> Callable[[str], None]:
        return _flip_log_bytes


async def test_a_current_file_naming_a_missing_manifest_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "db"
    store = LevelDBPersister(path)
    await store.channel_created(created(params(1)))
    await store.close()
    (path / "CURRENT").write_text("MANIFEST-999999\n")
    with pytest.raises(StoreCorruptError, match="corrupt") as info:
        LevelDBPersister(path)
    assert info.value.path == str(path)


async def test_registered_factory_builds_a_kv_persister_over_leveldb(tmp_path: Path) -> None:
    plugins = load_plugins(only=["leveldb"])
    assert plugins.persisters.provider_of("leveldb") == "leveldb"
    p = plugins.persister("leveldb")(path=tmp_path / "db")
    try:
        assert isinstance(p, KVPersister) and p.name == "leveldb"
        # the default: every write fsynced, in a worker thread (group commit)
        assert isinstance(p.store, LevelDBStore) and p.store.sync and p.store.threaded
        await p.channel_created(created(params(1)))
    finally:
        await p.close()
    again = plugins.persister("leveldb")(path=str(tmp_path / "db"), sync=False)
    try:
        assert isinstance(again, KVPersister)
        assert not again.store.sync and not again.store.threaded  # type: ignore[attr-defined]
        assert await again.restore_channel(params(1).id) is not None
    finally:
        await again.close()


async def test_opened_by_name_from_its_typed_config(tmp_path: Path) -> None:
    from perun_leveldb.persister import LevelDBConfig

    from perun_core.errors import ConfigError
    from perun_core.testing.persister import assert_same_record, created, params

    persisters = load_plugins().persisters
    cls = persisters.part_class("leveldb")
    assert cls is LevelDBPersister and cls.durable
    with pytest.raises(ConfigError, match="path"):
        await persisters.open("leveldb", {})  # the directory is required
    with pytest.raises(ConfigError, match="synch"):
        await persisters.open("leveldb", {"path": str(tmp_path / "db"), "synch": True})
    store = await persisters.open("leveldb", {"path": str(tmp_path / "db"), "sync": "true"})
    assert isinstance(store, LevelDBPersister) and store.store.sync is True
    record = created(params(1))
    await store.channel_created(record)
    await store.close()
    again = await LevelDBPersister.open(LevelDBConfig(path=str(tmp_path / "db")))
    assert_same_record(await again.restore_channel(record.channel_id), record)
    await again.close()


async def test_a_damaged_table_block_is_corrupt_not_a_different_record(tmp_path: Path) -> None:
    """Reads verify the checksum of every table block they load: a damaged byte in a stored
    signature is ``StoreCorruptError``, never a record with another signature (issue 14, F3)."""
    path = tmp_path / "db"
    store = LevelDBPersister(path)
    want = [await open_and_pay(store, params(n)) for n in range(1, 6)]
    await store.close()
    await LevelDBPersister(path).close()  # the reopen moves the log into a table file
    [table] = glob.glob(os.path.join(path, "*.ldb"))
    data = bytearray(Path(table).read_bytes())
    at = data.find(b"me-signs-v1")  # a literal in the (snappy-compressed) block
    assert at > 0, "the signature is not stored as is"
    data[at + 3] ^= 0x01  # "me-signs-v1" -> "me-rigns-v1"
    Path(table).write_bytes(data)
    again = LevelDBPersister(path)
    try:
        with pytest.raises(StoreCorruptError, match="corrupt"):
            for rec in want:
                assert_same_record(await again.restore_channel(rec.channel_id), rec)
    finally:
        await again.close()
