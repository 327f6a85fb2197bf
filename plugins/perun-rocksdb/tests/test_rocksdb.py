"""perun-rocksdb: the persister and key-value conformance suites on real RocksDB directories,
locked and corrupt databases, kill -9, and the plugin registration."""

from __future__ import annotations

import glob
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from perun_rocksdb import RocksDBPersister, RocksDBStore

from perun_core.errors import StoreCorruptError
from perun_core.interfaces import Persister
from perun_core.persistence import KeyValueStore, KVPersister
from perun_core.persistence.kv_wal import log_files
from perun_core.plugins import load_plugins
from perun_core.testing.persister import (
    DurableStoreConformance,
    KeyValueStoreConformance,
    PersisterConformance,
    created,
    params,
)

# sync: the default (fsync per batch in a worker thread with group commit);
# nosync: writes reach the OS on the event loop
MODES: dict[str, dict[str, Any]] = {"nosync": {"sync": False}, "sync": {}}


@pytest.fixture(params=sorted(MODES))
def mode(request: pytest.FixtureRequest) -> dict[str, Any]:
    return MODES[request.param]


class TestRocksDBPersister(PersisterConformance):
    @pytest.fixture
    async def persister(self, tmp_path: Path, mode: dict[str, Any]) -> AsyncIterator[Persister]:
        self.path, self.mode, self.opened = tmp_path / "db", mode, []
        p = RocksDBPersister(self.path, **mode)
        self.opened.append(p)
        yield p
        for q in self.opened:
            await q.close()

    @pytest.fixture
    def reopen(self) -> Callable[[Persister], Awaitable[Persister]]:
        async def reopen(p: Persister) -> Persister:
            await p.close()
            q = RocksDBPersister(self.path, **self.mode)
            self.opened.append(q)
            return q

        return reopen


class TestRocksDBStore(KeyValueStoreConformance):
    @pytest.fixture
    async def kv(self, tmp_path: Path, mode: dict[str, Any]) -> AsyncIterator[KeyValueStore]:
        self.path, self.mode, self.opened = tmp_path / "db", mode, []
        store = RocksDBStore(self.path, **mode)
        self.opened.append(store)
        yield store
        for s in self.opened:
            await s.close()

    @pytest.fixture
    def kv_reopen(self) -> Callable[[KeyValueStore], Awaitable[KeyValueStore]]:
        async def reopen(store: KeyValueStore) -> KeyValueStore:
            await store.close()
            again = RocksDBStore(self.path, **self.mode)
            self.opened.append(again)
            return again

        return reopen


def _flip_table_footer(path: str) -> None:
    """Bit rot in the footer of a table file (close() flushes the records into tables)."""
    tables = [f for f in glob.glob(os.path.join(path, "*.sst")) if os.path.getsize(f) > 64]
    assert tables, f"no table file in {os.listdir(path)}"
    with open(tables[0], "r+b") as f:
        data = bytearray(f.read())
        data[-40:] = bytes(b ^ 0x5A for b in data[-40:])
        f.seek(0)
        f.write(data)


class TestRocksDBDurability(DurableStoreConformance):
    @pytest.fixture
    def persister_name(self) -> str:
        return "rocksdb"

    @pytest.fixture
    def store_options(self, mode: dict[str, Any]) -> dict[str, Any]:
        return mode

    @pytest.fixture
    def wal_files(self) -> Callable[[str], list[str]]:
        return log_files

    @pytest.fixture
    def corrupt_store(self) -> Callable[[str], None]:
        return _flip_table_footer


async def test_a_current_file_naming_a_missing_manifest_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "db"
    store = RocksDBPersister(path)
    await store.channel_created(created(params(1)))
    await store.close()
    (path / "CURRENT").write_text("MANIFEST-999999\n")
    with pytest.raises(StoreCorruptError, match="corrupt") as info:
        RocksDBPersister(path)
    assert info.value.path == str(path)


async def test_registered_factory_builds_a_kv_persister_over_rocksdb(tmp_path: Path) -> None:
    plugins = load_plugins(only=["rocksdb"])
    assert plugins.persisters.provider_of("rocksdb") == "rocksdb"
    p = plugins.persister("rocksdb")(path=tmp_path / "db")
    try:
        assert isinstance(p, KVPersister) and p.name == "rocksdb"
        # the default: every write fsynced, in a worker thread (group commit)
        assert isinstance(p.store, RocksDBStore) and p.store.sync and p.store.threaded
        await p.channel_created(created(params(1)))
    finally:
        await p.close()
    again = plugins.persister("rocksdb")(path=str(tmp_path / "db"), sync=False)
    try:
        assert isinstance(again, KVPersister)
        assert not again.store.sync and not again.store.threaded  # type: ignore[attr-defined]
        assert await again.restore_channel(params(1).id) is not None
    finally:
        await again.close()


async def test_opened_by_name_from_its_typed_config(tmp_path: Path) -> None:
    from perun_rocksdb.persister import RocksDBConfig

    from perun_core.errors import ConfigError
    from perun_core.testing.persister import assert_same_record, created, params

    persisters = load_plugins().persisters
    cls = persisters.part_class("rocksdb")
    assert cls is RocksDBPersister and cls.durable
    with pytest.raises(ConfigError, match="path"):
        await persisters.open("rocksdb", {})  # the directory is required
    with pytest.raises(ConfigError, match="synch"):
        await persisters.open("rocksdb", {"path": str(tmp_path / "db"), "synch": True})
    store = await persisters.open("rocksdb", {"path": str(tmp_path / "db"), "sync": "true"})
    assert isinstance(store, RocksDBPersister) and store.store.sync is True
    record = created(params(1))
    await store.channel_created(record)
    await store.close()
    again = await RocksDBPersister.open(RocksDBConfig(path=str(tmp_path / "db")))
    assert_same_record(await again.restore_channel(record.channel_id), record)
    await again.close()
