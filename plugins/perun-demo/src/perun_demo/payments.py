"""The demo's payments: who pays how much, one payment at a time."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from perun_demo.output import progress

if TYPE_CHECKING:
    from rich.console import Console

    from perun_core.client import Channel


def schedule(
    rng: random.Random, payments: int, deposit: int, dispute: bool
) -> list[tuple[bool, int]]:
    """``(alice_pays, amount)`` of every payment: turns alternate, amounts are random
    (between 1 and a twentieth of the deposit)."""
    out = []
    for i in range(payments):
        amount = rng.randint(1, max(1, deposit // 20))
        # In the dispute demo Alice earns back more than she paid, so old states are
        # attractive to Bob.
        out.append((i % 2 == 0 and not (dispute and i >= payments // 2), amount))
    return out


async def pay_once(ch_a: Channel, ch_b: Channel, alice_pays: bool, amount: int) -> int:
    """One payment; the other party pays when the payer cannot. Returns what Bob gained.

    A channel restored from an earlier run may hold less than this run's amounts assume:
    the payment is then cut to what the payer has.
    """
    payer, sign = (ch_a, 1) if alice_pays else (ch_b, -1)
    if payer.my_balance() < amount:
        payer, sign = (ch_b, -1) if alice_pays else (ch_a, 1)
    amount = min(amount, payer.my_balance())
    if amount > 0:
        await payer.send(amount)
    return sign * amount


async def pay_all(
    console: Console, ch_a: Channel, ch_b: Channel, plan: list[tuple[bool, int]]
) -> int:
    """Make the payments of ``plan`` with a progress bar; returns the net paid to Bob."""
    net_to_bob = 0
    bar = progress(console)
    with bar:
        task = bar.add_task("pay", total=len(plan))
        for alice_pays, amount in plan:
            net_to_bob += await pay_once(ch_a, ch_b, alice_pays, amount)
            bar.advance(task)
    return net_to_bob
