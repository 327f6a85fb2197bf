"""The chain conformance suites of perun_core.testing on a ledger served over loopback TCP.

The backend under test is a client of the served ledger (``from_config({"url": ...})``);
the ledger itself, its rules and its clock live in the server. (The dispute suite runs on
the served ledger in ``test_sim_served.py``.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from perun_sim import SimBackend, SimClock, SimLedger
from perun_sim.server import LedgerServer

from perun_core.channel.types import Asset
from perun_core.testing.adjudicator import AdjudicatorConformance
from perun_core.testing.chain import ChainConformance
from perun_core.testing.client import TwoPartyConformance
from perun_core.testing.funder import FunderConformance
from perun_core.testing.parties import PartyFactory
from perun_core.wire.local_bus import LocalBus


class _OnServedSim:
    @pytest.fixture
    async def server(self) -> AsyncIterator[LedgerServer]:
        async with LedgerServer(SimLedger(clock=SimClock.manual(0))) as server:
            await server.listen_tcp()
            yield server

    @pytest.fixture
    def backend_config(self, server: LedgerServer) -> Mapping[str, Any]:
        return {"url": server.urls[0], "secondary_grace": 0.05}

    @pytest.fixture
    async def backend(self, backend_config: Mapping[str, Any]) -> AsyncIterator[SimBackend]:
        b = SimBackend.from_config(backend_config)
        await b.connect()
        yield b
        await b.close()

    @pytest.fixture
    def asset(self, backend: SimBackend) -> Asset:
        return backend.default_assets()[0]

    @pytest.fixture
    async def parties(self, backend: SimBackend) -> AsyncIterator[PartyFactory]:
        factory = PartyFactory(backend, LocalBus())
        yield factory
        await factory.close()


class TestServedSimChain(_OnServedSim, ChainConformance):
    pass


class TestServedSimFunder(_OnServedSim, FunderConformance):
    pass


class TestServedSimAdjudicator(_OnServedSim, AdjudicatorConformance):
    pass


class TestServedSimTwoParty(_OnServedSim, TwoPartyConformance):
    pass
