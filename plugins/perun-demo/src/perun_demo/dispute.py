"""The dispute scene of ``perun demo --dispute``: Bob registers a stale state, Alice's
watchtower refutes it, both settle on the ledger."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from perun_core.channel.phase import Phase

if TYPE_CHECKING:
    from rich.console import Console

    from perun_core.client import Channel
    from perun_core.interfaces.adjudicator import AdjudicatorEvent
    from perun_core.interfaces.chain import ChainBackend
    from perun_core.interfaces.devledger import DevLedger


async def dispute_scene(
    console: Console,
    ledger: DevLedger | ChainBackend,
    ch_a: Channel,
    stale: tuple[int, int],
    register_stale: Callable[[], Awaitable[object]],
    settle_bob: Callable[[], Awaitable[object]],
) -> None:
    """Bob registers his stale state ``(version, Bob's balance)``; Alice's watchtower
    refutes it; both settle on the ledger. Bob acts in-process or in his own process."""
    events: list[AdjudicatorEvent] = []

    def show(ch: Channel, ev: AdjudicatorEvent) -> None:
        events.append(ev)
        console.print(
            f"  [magenta]ledger[/] {type(ev).__name__} version {ev.version} "
            f"(timeout at t={ev.timeout.deadline})"
        )

    ch_a.watch(show)
    latest = ch_a.state.version
    console.print(
        f"[red]Bob registers the stale state v{stale[0]}[/] (Bob {stale[1]}) instead of "
        f"v{latest} (Bob {ch_a.state.balances[0][1]})"
    )
    await register_stale()
    async with asyncio.timeout(10):
        while not any(ev.version == latest for ev in events):  # noqa: ASYNC110 - events are collected by a callback; the demo polls its list, bounded
            await asyncio.sleep(0.01)
    console.print(f"[green]Alice's watchtower refuted with v{latest}[/]")
    await ledger.advance_time(ch_a.params.challenge_duration + 1)
    console.print(f"ledger time moved past the {ch_a.params.challenge_duration}s challenge")
    await ch_a.wait_phase(Phase.WITHDRAWN, timeout=10)  # Alice's client settles by itself
    await settle_bob()
    console.print("settled through the dispute: concluded with the latest state, withdrawn")
