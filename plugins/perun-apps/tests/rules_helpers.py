"""Channel states for the rules tests (no ledger)."""

from __future__ import annotations

from dataclasses import replace

from perun_core.channel import Allocation, Asset, Params, State
from perun_core.channel.types import Address

ASSET = Asset(1, b"\x01" * 20)
OTHER = Asset(1, b"\x02" * 20)
APP_ID = b"\xaa" * 20


def params(n: int = 2) -> Params:
    parts = tuple(Address(bytes([i + 1]) * 20) for i in range(n))
    p = Params(challenge_duration=60, participants=parts, nonce=7, app=APP_ID, backend="sim")
    return replace(p, id=bytes([n]) * 32)  # the rules never look at how the ID was made


def state(p: Params, data: bytes, *rows: tuple[int, ...], version: int = 1) -> State:
    assets = (ASSET, OTHER)[: len(rows)]
    return State(p.id, version, Allocation(assets, tuple(rows)), APP_ID, data)
