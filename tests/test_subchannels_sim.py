"""The sub-channel scenarios on perun-sim (manual ledger clock, in-process bus)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from perun_core.testing.parties import PartyFactory
from perun_core.testing.subchannels import (
    HostileSubChannelConformance,
    SubChannelConformance,
)
from perun_core.wire.local_bus import LocalBus


@pytest.fixture
async def parties(backend) -> AsyncIterator[PartyFactory]:  # type: ignore[no-untyped-def]
    factory = PartyFactory(backend, LocalBus())
    yield factory
    await factory.close()


class TestSubChannelsOnSim(SubChannelConformance):
    """Sub-channels, nested sub-channels and disputes of the tree on the sim ledger."""


class TestHostileSubChannelsOnSim(HostileSubChannelConformance):
    """Mallory bends the sub-channel funding and settlement updates (sim ledger)."""
