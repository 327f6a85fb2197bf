"""The dispute and watchtower suite on perun-sim (in-process bus, manual ledger clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from perun_core.testing.dispute import DisputeConformance
from perun_core.testing.parties import PartyFactory
from perun_core.wire.local_bus import LocalBus


@pytest.fixture
async def parties(backend) -> AsyncIterator[PartyFactory]:  # type: ignore[no-untyped-def]
    factory = PartyFactory(backend, LocalBus())
    yield factory
    await factory.close()


class TestDisputeOnSim(DisputeConformance):
    """Runs every dispute scenario on the sim ledger."""
