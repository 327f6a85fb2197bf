"""perun-sim runs every conformance suite of perun_core.testing that applies to a chain."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from perun_sim import SimBackend

from perun_core.channel.types import Asset
from perun_core.testing.adjudicator import AdjudicatorConformance
from perun_core.testing.chain import ChainConformance
from perun_core.testing.client import TwoPartyConformance
from perun_core.testing.dispute import DisputeConformance
from perun_core.testing.funder import FunderConformance
from perun_core.testing.parties import PartyFactory
from perun_core.wire.local_bus import LocalBus


class _OnSim:
    @pytest.fixture
    async def backend(self) -> AsyncIterator[SimBackend]:
        b = SimBackend.from_config({"clock": "manual", "secondary_grace": 0.05})
        yield b
        await b.close()

    @pytest.fixture
    def asset(self, backend: SimBackend) -> Asset:
        return backend.default_assets()[0]  # the faucet funds it; the sim ledger has no fees

    @pytest.fixture
    async def parties(self, backend: SimBackend) -> AsyncIterator[PartyFactory]:
        factory = PartyFactory(backend, LocalBus())
        yield factory
        await factory.close()


class TestSimChain(_OnSim, ChainConformance):
    pass


class TestSimFunder(_OnSim, FunderConformance):
    pass


class TestSimAdjudicator(_OnSim, AdjudicatorConformance):
    pass


class TestSimTwoParty(_OnSim, TwoPartyConformance):
    pass


class TestSimDispute(_OnSim, DisputeConformance):
    pass
