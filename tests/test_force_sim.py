"""The force-execution scenarios on perun-sim (manual ledger clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from perun_sim.backend import SimBackend
from perun_sim.encoding import sim_app_id

from perun_core.testing.force import AcceptAllApp, ForceExecutionConformance
from perun_core.testing.parties import PartyFactory
from perun_core.wire.local_bus import LocalBus


@pytest.fixture
async def parties(backend) -> AsyncIterator[PartyFactory]:  # type: ignore[no-untyped-def]
    factory = PartyFactory(backend, LocalBus())
    yield factory
    await factory.close()


@pytest.fixture
def force_app(backend: SimBackend) -> bytes:
    """A test app on the sim ledger that accepts every transition (like TrivialApp)."""
    app = AcceptAllApp(sim_app_id("test/accept-all"))
    backend.ledger.apps.register(app)
    return app.app_id


class TestForceOnSim(ForceExecutionConformance):
    """App progression and its hostile cases on the sim ledger."""
