"""The fund-safety scenarios on perun-sim (manual ledger clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from perun_core.testing.parties import PartyFactory
from perun_core.testing.safety import FundSafetyConformance
from perun_core.wire.local_bus import LocalBus


@pytest.fixture
async def parties(backend) -> AsyncIterator[PartyFactory]:  # type: ignore[no-untyped-def]
    factory = PartyFactory(backend, LocalBus())
    yield factory
    await factory.close()


class TestFundSafetyOnSim(FundSafetyConformance):
    """Every finding of the fund-safety review, on the sim ledger."""
