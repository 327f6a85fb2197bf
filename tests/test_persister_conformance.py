"""The persister conformance suite against the built-in in-memory persister, and the
key-value layer under it (``KeyValueStore`` semantics of ``MemoryKV``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from perun_core.interfaces import Persister
from perun_core.persistence import KVPersister, MemoryKV, MemoryPersister
from perun_core.plugins import load_plugins
from perun_core.testing.persister import PersisterConformance


class TestMemoryPersister(PersisterConformance):
    @pytest.fixture
    async def persister(self) -> AsyncIterator[Persister]:
        p = MemoryPersister()
        yield p
        await p.close()


class TestKVPersisterOverAFreshMemoryKV(PersisterConformance):
    """Reopen = a new KVPersister over the same store: nothing may live only in the object."""

    @pytest.fixture
    async def persister(self) -> AsyncIterator[Persister]:
        self.kv = MemoryKV()
        yield KVPersister(self.kv)

    @pytest.fixture
    def reopen(self):  # type: ignore[no-untyped-def]
        async def fresh(p: Persister) -> Persister:
            await p.close()
            return KVPersister(self.kv)

        return fresh


def test_memory_is_registered_as_the_kv_persister() -> None:
    factory = load_plugins(only=["builtins"]).persister("memory")
    p = factory()
    assert isinstance(p, KVPersister) and isinstance(p.store, MemoryKV)
