"""``perun demo --app htlc [--dispute]``: conditional payments in HTLC sub-channels of Alice's
and Bob's payment channel.

Bob makes a secret and hands Alice its SHA-256 hash (an invoice); Alice locks a payment to
that hash with a deadline in ledger time, in a sub-channel; Bob claims it off-chain by
revealing the secret, and the claimed payment settles into the payment channel.

With ``--dispute`` Alice locks two payments and then stalls: she does not sign Bob's claim.
Bob registers the tree and, after the refutation window, forces his claim of the first
payment on the ledger, before its deadline. The second one he never claims: Alice may not
take it back before its deadline (the app refuses, nothing is sent), Bob may no longer
claim it after the deadline, and then Alice forces the refund. The conclusion pays both.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from perun_apps import htlc

from perun_core.errors import AppTransitionError, PeerRejectedError, RequestTimedOutError
from perun_demo.app_run import CHALLENGE

if TYPE_CHECKING:
    from collections.abc import Callable

    from perun_core.channel.state import State
    from perun_core.client import Channel
    from perun_demo.app_run import Stage

CLAIM_WINDOW: Final = 3_600
"""Ledger seconds the first payment may be claimed in."""

SHORT_WINDOW: Final = CHALLENGE * 3 // 2
"""Ledger seconds of the second payment's deadline (``--dispute``): it passes while the tree
is in dispute, after the refutation window and within the force-execution room."""


async def _payer_check(stage: Stage) -> None:
    """Alice signs Bob's claim only while the ledger would still take it."""

    async def vet(ch: Channel, cur: State, new: State) -> bool:
        return htlc.claimable(cur, await stage.dev.ledger_time())

    stage.vet = vet


async def _lock(
    stage: Stage, amount: int, window: int, label: str
) -> tuple[Channel, Channel, bytes]:
    """Bob makes a secret; Alice locks ``amount`` to its hash for ``window`` ledger seconds.
    Returns Alice's and Bob's views of the sub-channel and Bob's preimage."""
    preimage, lock = htlc.new_secret()
    deadline = await stage.dev.ledger_time() + window
    data = htlc.lock_data(payer=0, payee=1, amount=amount, lock=lock, deadline=deadline)
    sub_a = await stage.ch_a.propose_sub_channel(
        [[amount, 0]], app=stage.alice.app_id("htlc"), data=data
    )
    sub_b = await stage.bobs_view(sub_a)
    stage.console.print(
        f"{label}: Alice locks {amount} to Bob's hash 0x{lock.hex()[:12]}… in HTLC "
        f"sub-channel [green]0x{sub_a.id.hex()[:16]}…[/], deadline t={deadline}"
    )
    return sub_a, sub_b, preimage


async def pay(stage: Stage) -> None:
    """Bob claims the payment off-chain; it settles into the payment channel."""
    await _payer_check(stage)
    amount = stage.ch_a.state.balances[0][0] // 10
    sub_a, sub_b, preimage = await _lock(stage, amount, CLAIM_WINDOW, "payment")
    claimed = await sub_b.update(lambda s: htlc.claim(s, preimage))
    stage.updates += 1
    stage.expected_to_bob += amount
    stage.console.print(
        f"Bob claims with the preimage 0x{preimage.hex()[:12]}…: v{claimed.version}, final, "
        f"Bob's share {claimed.balances[0][1]}"
    )
    await asyncio.gather(sub_a.settle(), sub_b.settle())
    bal = stage.ch_a.state.balances[0]
    stage.console.print(
        f"HTLC sub-channel settled into the payment channel: Alice {bal[0]}, Bob {bal[1]}"
    )


async def dispute(stage: Stage) -> None:
    """Alice stalls; Bob forces his claim before the deadline, Alice her refund after it."""
    console = stage.console
    await _payer_check(stage)
    free = stage.ch_a.state.balances[0][0]
    first, second = free // 10, free // 20
    _, sub1_b, secret1 = await _lock(stage, first, CLAIM_WINDOW, "payment 1")
    sub2_a, sub2_b, secret2 = await _lock(stage, second, SHORT_WINDOW, "payment 2")
    stage.stalled.add("Alice")
    console.print("[red]Alice stalls: she no longer signs anything[/]; Bob claims payment 1")
    try:
        await sub1_b.update(lambda s: htlc.claim(s, secret1))
    except (PeerRejectedError, RequestTimedOutError) as e:
        console.print(f"  Bob's claim is not signed: {e}")
    await sub1_b.register()
    console.print("Bob registers the tree: the payment channel with both pending payments")
    await stage.advance(CHALLENGE + 1, "the refutation window is over")
    forced = await sub1_b.force_update(lambda s: htlc.claim(s, secret1))
    stage.updates += 1
    stage.expected_to_bob += first
    console.print(
        f"[green]Bob forces his claim of payment 1 on the ledger[/] before its deadline: "
        f"v{forced.version}, Bob's share {forced.balances[0][1]}"
    )
    await _refused(stage, sub2_a, htlc.refund, "Alice's refund of payment 2 before its deadline")
    deadline = htlc.Htlc.decode(sub2_a.state.data).deadline
    await stage.advance(deadline - await stage.dev.ledger_time() + 1, "payment 2's deadline passed")
    await _refused(
        stage,
        sub2_b,
        lambda s: htlc.claim(s, secret2),
        "Bob's claim of payment 2 after its deadline",
    )
    refunded = await sub2_a.force_update(htlc.refund)
    stage.updates += 1
    console.print(
        f"[green]Alice forces the refund of payment 2[/]: v{refunded.version}, final, "
        f"Alice keeps {refunded.balances[0][0]}"
    )
    stage.stalled.discard("Alice")
    console.print("the conclusion of the payment channel pays both forced states")


async def _refused(stage: Stage, ch: Channel, fn: Callable[[State], State], what: str) -> None:
    """Show that the app's on-chain rule refuses ``fn`` now (checked before anything is
    sent); a forced update that goes through is recorded as a failure of the demo."""
    try:
        await ch.force_update(fn)
    except AppTransitionError as e:
        stage.console.print(f"  {what}: refused by the app, nothing sent ({e})")
        return
    stage.failures.append(f"{what} was accepted")
    stage.console.print(f"  [red]{what} was accepted[/]")
