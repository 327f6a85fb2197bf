"""Fixtures of the perun-tcp tests: wire identities, buses, short socket directories."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from perun_sim.wallet import SimAccount
from perun_tcp import TcpBus
from tcp_helpers import identity, make_bus

# Speed is measured by the benchmarks, never by timed assertions: hypothesis examples get no
# deadline (on a loaded machine one example once took 0.4 s and failed the run).
settings.register_profile("perun", deadline=None)
settings.load_profile("perun")


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for Unix sockets (paths are limited to about 100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="ptcp-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def alice() -> SimAccount:
    return identity("alice")


@pytest.fixture
def bob() -> SimAccount:
    return identity("bob")


@pytest.fixture
async def buses(alice: SimAccount, bob: SimAccount) -> AsyncIterator[tuple[TcpBus, TcpBus]]:
    """Alice's and Bob's buses on IPv4 loopback, each knowing the other's endpoint."""
    a, b = make_bus(alice), make_bus(bob)
    ep_a, ep_b = await a.listen("127.0.0.1", 0), await b.listen("127.0.0.1", 0)
    a.add_peer(bob.address, ep_b)
    b.add_peer(alice.address, ep_a)
    yield a, b
    await a.close()
    await b.close()
