"""The bus conformance suite against TcpBus over IPv4, IPv6 and Unix-socket endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tcp_helpers import identity, ipv6_loopback, make_bus

from perun_core.channel.types import Address
from perun_core.testing.bus import BusConformance, BusPair

MAX = 64 * 1024


class TestTcpBusConformance(BusConformance):
    @pytest.fixture(params=["tcp4", "tcp6", "unix"])
    async def bus_pair(
        self, request: pytest.FixtureRequest, sock_dir: Path
    ) -> AsyncIterator[BusPair]:
        kind = request.param
        if kind == "tcp6" and not ipv6_loopback():
            pytest.skip("IPv6 loopback is not available here")
        alice, bob = identity("alice"), identity("bob")
        a = make_bus(alice, max_frame_size=MAX)
        b = make_bus(bob, max_frame_size=MAX)
        if kind == "unix":
            ep_a = await a.listen_unix(sock_dir / "a.sock")
            ep_b = await b.listen_unix(sock_dir / "b.sock")
        else:
            host = "::1" if kind == "tcp6" else "127.0.0.1"
            ep_a, ep_b = await a.listen(host, 0), await b.listen(host, 0)
        a.add_peer(bob.address, ep_b)
        b.add_peer(alice.address, ep_a)
        yield BusPair(a, alice.address, b, bob.address, MAX, Address(b"\xee" * 20))
        await a.close()
        await b.close()
