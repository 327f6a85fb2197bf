"""Fixtures of the perun-sim tests: a manual-clock ledger, Alice and Bob, channel builders."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import settings
from perun_sim import SimAccount, SimBackend, SimClock, SimLedger
from sim_helpers import START, Chan, D

from perun_core.channel import (
    Asset,
    make_params,
)

# Speed is measured by the benchmarks, never by timed assertions: hypothesis examples get no
# deadline (on a loaded machine one example once took 0.4 s and failed the run).
settings.register_profile("perun", deadline=None)
settings.load_profile("perun")


@pytest.fixture
def clock() -> SimClock:
    return SimClock.manual(START)


@pytest.fixture
def ledger(clock: SimClock) -> SimLedger:
    return SimLedger(clock=clock)


@pytest.fixture
def backend(ledger: SimLedger) -> SimBackend:
    return SimBackend(ledger, secondary_grace=0.05)


@pytest.fixture
def alice(backend: SimBackend) -> SimAccount:
    return backend.wallet().add_seed(b"alice")


@pytest.fixture
def bob(backend: SimBackend) -> SimAccount:
    return backend.wallet().add_seed(b"bob")


@pytest.fixture
def eth(backend: SimBackend) -> Asset:
    return backend.default_assets()[0]


@pytest.fixture
def prn(backend: SimBackend) -> Asset:
    return backend.asset("PRN")


@pytest.fixture
def make_chan(backend: SimBackend, alice: SimAccount, bob: SimAccount, eth: Asset):
    """Build a channel between Alice and Bob (kwargs go to make_params)."""

    def make(
        *,
        assets: Sequence[Asset] | None = None,
        accounts: Sequence[SimAccount] | None = None,
        nonce: int = 1,
        challenge_duration: int = D,
        **kw: object,
    ) -> Chan:
        accs = list(accounts) if accounts is not None else [alice, bob]
        params = make_params(
            backend,
            challenge_duration=challenge_duration,
            participants=[a.address for a in accs],
            nonce=nonce,
            **kw,  # type: ignore[arg-type]
        )
        return Chan(backend, params, accs, tuple(assets) if assets else (eth,))

    return make


@pytest.fixture
def chan(make_chan) -> Chan:  # type: ignore[no-untyped-def]
    return make_chan()
