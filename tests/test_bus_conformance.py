"""The bus conformance suite (``perun_core.testing.bus``) against the in-process LocalBus."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from perun_core.channel.types import Address
from perun_core.testing.bus import BusConformance, BusPair, sized_envelope
from perun_core.wire.codec import encode_envelope
from perun_core.wire.local_bus import LocalBus

MAX = 64 * 1024


class TestLocalBusConformance(BusConformance):
    @pytest.fixture
    async def bus_pair(self) -> AsyncIterator[BusPair]:
        bus = LocalBus(max_size=MAX)
        yield BusPair(
            bus, Address(b"\xa1" * 20), bus, Address(b"\xb0" * 20), MAX, Address(b"\xee" * 20)
        )
        await bus.close()


@pytest.mark.parametrize("size", [4096, 65535, 65536, 65537, 100_000, 128 * 1024])
def test_sized_envelope_is_exact(size: int) -> None:
    env = sized_envelope(Address(b"\x01" * 20), Address(b"\x02" * 20), size)
    assert len(encode_envelope(env)) == size
