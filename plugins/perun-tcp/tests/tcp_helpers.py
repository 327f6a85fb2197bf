"""Helpers of the perun-tcp tests: sim wire identities, quick buses, raw peers."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from perun_sim.crypto import verify_message
from perun_sim.wallet import SimAccount
from perun_tcp import TcpBus, frame
from perun_tcp import handshake as hs

from perun_core.channel.types import Address
from perun_core.interfaces.wallet import Account
from perun_core.wire.codec import encode_envelope
from perun_core.wire.messages import Envelope

QUICK: dict[str, Any] = {
    "handshake_timeout": 2.0,
    "connect_timeout": 2.0,
    "dial_attempts": 3,
    "backoff_initial": 0.02,
    "backoff_max": 0.1,
    "drain_timeout": 2.0,
    "close_timeout": 1.0,
}


def identity(name: str) -> SimAccount:
    """A deterministic sim account used as a wire identity."""
    return SimAccount.from_seed(name.encode())


def make_bus(account: Account, **options: Any) -> TcpBus:
    """A TcpBus verifying sim signatures, with quick timeouts for tests."""
    return TcpBus(account, verify_message, **{**QUICK, **options})


class Impostor(Account):
    """Claims ``claimed``'s address but signs with another key (it cannot prove the claim)."""

    def __init__(self, claimed: Address, key: SimAccount) -> None:
        self._claimed = claimed
        self._key = key

    @property
    def address(self) -> Address:
        return self._claimed

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


async def open_raw(endpoint: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain socket to ``tcp://host:port`` or ``unix:///path`` (no handshake)."""
    if endpoint.startswith("unix://"):
        return await asyncio.open_unix_connection(endpoint[len("unix://") :])
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    return await asyncio.open_connection(host.strip("[]"), int(port))


async def raw_authenticated(
    endpoint: str, account: Account, peer: Address
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A socket that completed the handshake as ``account`` with ``peer`` (then raw)."""
    reader, writer = await open_raw(endpoint)
    await hs.dial(reader, writer, account, verify_message, peer, 2.0)
    return reader, writer


def send_envelope(writer: asyncio.StreamWriter, env: Envelope) -> None:
    writer.write(frame(encode_envelope(env)))


async def closed_by_peer(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    timeout: float = 3.0,  # noqa: ASYNC109 - every wait has a deadline; this one takes it as an argument
) -> bytes:
    """Read until the peer closes the stream, then close our end; returns what it sent."""
    try:
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()


def ipv6_loopback() -> bool:
    """Whether ``::1`` can be bound here."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True
