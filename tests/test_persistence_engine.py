"""The key-value layer of perun_core.persistence: key ranges, MemoryKV, and EngineStore's
direct and threaded (group-commit) write paths over a small dict-backed engine."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest

from perun_core.errors import PersistenceError, StoreClosedError, StoreFailedError
from perun_core.interfaces import Persister
from perun_core.persistence import KeyValueStore, KVPersister, MemoryKV
from perun_core.persistence.engine import EngineStore, Op
from perun_core.persistence.kv import key_range, prefix_end
from perun_core.testing.persister import (
    KeyValueStoreConformance,
    PersisterConformance,
    created,
    params,
)


class DictEngine(EngineStore):
    """A blocking engine over a dict: every write takes ``delay`` seconds (like an fsync) and
    is recorded, and a write containing the key ``b"boom"`` fails."""

    name = "dict"

    def __init__(
        self, *, threaded: bool, delay: float = 0.0, data: dict[bytes, bytes] | None = None
    ) -> None:
        super().__init__(path="/nowhere", threaded=threaded)
        self.data: dict[bytes, bytes] = {} if data is None else data  # shared = "same files"
        self.writes: list[int] = []  # ops per engine write
        self.threads: set[int] = set()
        self.delay = delay
        self._lock = threading.Lock()

    def _engine_get(self, key: bytes) -> bytes | None:
        with self._lock:
            return self.data.get(key)

    def _engine_write(self, ops: Sequence[Op]) -> None:
        time.sleep(self.delay)
        if any(k == b"boom" for k, _ in ops):
            raise OSError("disk on fire")
        with self._lock:
            for k, v in ops:
                if v is None:
                    self.data.pop(k, None)
                else:
                    self.data[k] = v
            self.writes.append(len(ops))
            self.threads.add(threading.get_ident())

    def _engine_scan(self, lo: bytes, hi: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        with self._lock:
            keys = sorted(k for k in self.data if k >= lo and (hi is None or k < hi))
            return [(k, self.data[k]) for k in keys[:limit]]

    def _engine_close(self) -> None:
        pass


def test_prefix_end_and_key_range() -> None:
    assert prefix_end(b"ab") == b"ac"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"\xff\xff") is None
    assert key_range(b"p") == (b"p", b"q")
    assert key_range(b"p", start=b"a") == (b"p", b"q")
    assert key_range(b"p", start=b"pz", end=b"p~") == (b"pz", b"p~")
    assert key_range(b"", start=b"x") == (b"x", None)
    assert key_range(b"p", end=b"zz") == (b"p", b"q")


class TestMemoryKV(KeyValueStoreConformance):
    @pytest.fixture
    async def kv(self) -> AsyncIterator[KeyValueStore]:
        yield MemoryKV()


def _reopened(store: DictEngine) -> DictEngine:
    again = DictEngine(threaded=store.threaded, data=store.data)
    again.page_size = store.page_size
    return again


@pytest.mark.parametrize("threaded", [False, True])
class TestDictEngine(KeyValueStoreConformance):
    @pytest.fixture
    async def kv(self, threaded: bool) -> AsyncIterator[KeyValueStore]:
        store = DictEngine(threaded=threaded)
        store.page_size = 7  # many pages even for small scans
        yield store

    @pytest.fixture
    def kv_reopen(self) -> Callable[[KeyValueStore], Awaitable[KeyValueStore]]:
        async def reopen(store: KeyValueStore) -> KeyValueStore:
            assert isinstance(store, DictEngine)
            await store.close()
            return _reopened(store)

        return reopen


class TestKVPersisterOverAThreadedEngine(PersisterConformance):
    @pytest.fixture
    async def persister(self) -> AsyncIterator[Persister]:
        store = DictEngine(threaded=True)
        store.page_size = 3
        yield KVPersister(store)

    @pytest.fixture
    def reopen(self) -> Callable[[Persister], Awaitable[Persister]]:
        async def reopen(p: Persister) -> Persister:
            assert isinstance(p, KVPersister) and isinstance(p.store, DictEngine)
            await p.close()
            return KVPersister(_reopened(p.store))

        return reopen


async def test_direct_writes_run_on_the_loop_thread() -> None:
    store = DictEngine(threaded=False)
    await store.write_batch({b"a": b"1"})
    assert store.threads == {threading.get_ident()}


async def test_threaded_writes_group_commit_concurrent_batches() -> None:
    store = DictEngine(threaded=True, delay=0.02)
    await asyncio.gather(*(store.write_batch({b"k%02d" % i: b"v"}) for i in range(40)))
    assert len(store.data) == 40
    assert threading.get_ident() not in store.threads
    # the first batch goes alone; the others queue behind its "fsync" and share a write
    assert sum(store.writes) == 40 and len(store.writes) <= 4, store.writes


async def test_a_failed_group_fails_every_caller_and_applies_nothing() -> None:
    store = DictEngine(threaded=True, delay=0.02)
    first = asyncio.ensure_future(store.write_batch({b"first": b"1"}))
    await asyncio.sleep(0)  # the first batch is now in the engine; the next three queue
    group = [store.write_batch({b"a": b"1"}), store.write_batch({b"boom": b"!"})]
    group.append(store.write_batch({b"b": b"2"}))
    results = await asyncio.gather(*group, return_exceptions=True)
    await first
    assert all(isinstance(r, PersistenceError) for r in results), results
    assert "disk on fire" in str(results[0]) and "/nowhere" in str(results[0])
    assert store.data == {b"first": b"1"}
    # Fail closed: a failed store refuses every call until it is opened again.
    assert isinstance(store.failure, PersistenceError) and "disk on fire" in str(store.failure)
    with pytest.raises(StoreFailedError, match="earlier write failed"):
        await store.write_batch({b"c": b"3"})
    with pytest.raises(StoreFailedError):
        await store.get(b"first")
    await store.close()  # closing a failed store works
    again = DictEngine(threaded=True, data=store.data)
    await again.write_batch({b"c": b"3"})
    assert again.data == {b"first": b"1", b"c": b"3"}


async def test_batches_queued_behind_a_failed_write_are_refused() -> None:
    store = DictEngine(threaded=True, delay=0.02)
    failing = asyncio.ensure_future(store.write_batch({b"boom": b"!"}))
    await asyncio.sleep(0)  # the failing batch is in the engine; the next ones queue
    queued = [store.write_batch({b"k%d" % i: b"v"}) for i in range(3)]
    results = await asyncio.gather(failing, *queued, return_exceptions=True)
    assert isinstance(results[0], PersistenceError), results
    assert not isinstance(results[0], StoreFailedError) and "disk on fire" in str(results[0])
    assert all(isinstance(r, StoreFailedError) for r in results[1:]), results
    assert store.data == {} and store.writes == []  # nothing reached the engine after it


async def test_a_failed_direct_write_fails_the_store_closed() -> None:
    store = DictEngine(threaded=False)
    await store.write_batch({b"a": b"1"})
    with pytest.raises(PersistenceError, match="disk on fire"):
        await store.write_batch({b"boom": b"!"})
    with pytest.raises(StoreFailedError, match="disk on fire") as info:
        await store.write_batch({b"b": b"2"})
    assert info.value.path == "/nowhere" and "open it again" in str(info.value)
    with pytest.raises(StoreFailedError):
        [kv async for kv in store.iterate()]
    assert store.data == {b"a": b"1"}
    await store.close()
    with pytest.raises(StoreClosedError):  # closed wins over failed
        await store.get(b"a")


async def test_close_finishes_queued_writes_then_refuses_more() -> None:
    store = DictEngine(threaded=True, delay=0.01)
    pending = [asyncio.ensure_future(store.write_batch({b"k%d" % i: b"v"})) for i in range(5)]
    await asyncio.sleep(0)
    await store.close()
    await asyncio.gather(*pending)
    assert len(store.data) == 5
    with pytest.raises(StoreClosedError, match="closed"):
        await store.write_batch({b"late": b"v"})
    with pytest.raises(StoreClosedError):
        await store.get(b"k1")
    with pytest.raises(StoreClosedError):
        [kv async for kv in store.iterate()]


async def test_a_cancelled_caller_does_not_take_its_group_down() -> None:
    store = DictEngine(threaded=True, delay=0.02)
    first = asyncio.ensure_future(store.write_batch({b"first": b"1"}))
    await asyncio.sleep(0)
    cancelled = asyncio.ensure_future(store.write_batch({b"x": b"1"}))
    other = asyncio.ensure_future(store.write_batch({b"y": b"2"}))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(first, other)
    assert store.data[b"y"] == b"2"  # the group went through; x may or may not have landed


async def test_kv_persister_recovers_its_sequence_from_the_store() -> None:
    kv = MemoryKV()
    first = KVPersister(kv)
    for n in (5, 3):
        await first.channel_created(created(params(n)))
    second = KVPersister(kv)  # a restart: the counter comes from the store
    await second.channel_created(created(params(1)))
    got = [r.channel_id for r in await second.restore_peer(created(params(1)).peers[1])]
    assert got == [params(5).id, params(3).id, params(1).id]
