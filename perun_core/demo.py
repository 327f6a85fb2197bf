"""``perun demo``: Alice and Bob open a channel, pay each other, and settle.

Runs on the embedded defaults: the ``sim`` chain backend, the in-process ``local`` bus and
the in-memory persister. Exit code 0 only if the final on-ledger balances equal the initial
ones moved by exactly the payments made.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import time
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from perun_core.channel.allocation import Allocation
from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal, ProposalInfo
from perun_core.client.proposal import ProposalResponder
from perun_core.interfaces.adjudicator import AdjudicatorEvent, AdjudicatorReq
from perun_core.interfaces.chain import ChainBackend
from perun_core.interfaces.wallet import Account
from perun_core.plugins import load_plugins


@dataclass(slots=True)
class DemoResult:
    """What the demo measured (used by tests and the exit code)."""

    ok: bool
    payments: int
    net_to_bob: int
    initial: dict[str, int]
    final: dict[str, int]
    expected: dict[str, int]
    seconds: float


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="perun demo", description=__doc__)
    p.add_argument("--payments", type=int, default=20, help="payments in total (default 20)")
    p.add_argument("--deposit", type=int, default=1_000, help="each party's deposit")
    p.add_argument("--seed", type=int, default=None, help="random seed for payment amounts")
    p.add_argument("--backend", default="sim", help="chain backend plugin (default sim)")
    p.add_argument("--bus", default="local", help="bus plugin (default local)")
    p.add_argument("--persister", default="memory", help="persister plugin (default memory)")
    p.add_argument(
        "--dispute",
        action="store_true",
        help="Bob registers a stale state; Alice's watchtower refutes it",
    )
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


async def run_demo(
    *,
    payments: int = 20,
    deposit: int = 1_000,
    seed: int | None = None,
    backend_name: str = "sim",
    bus_name: str = "local",
    persister_name: str = "memory",
    dispute: bool = False,
    console: Console | None = None,
) -> DemoResult:
    """Run the demo scenario and return what happened."""
    console = console or Console()
    rng = random.Random(seed)
    plugins = load_plugins()
    backend = plugins.chain(backend_name).from_config({})
    bus = plugins.bus(bus_name)()
    wallet = backend.wallet()
    acct_a, acct_b = wallet.new_account(), wallet.new_account()
    asset = backend.default_assets()[0]
    funds = deposit * 10
    for acct in (acct_a, acct_b):
        await backend.faucet(acct.address, asset, funds)
    initial = {
        "Alice": await backend.balance_of(acct_a.address, asset),
        "Bob": await backend.balance_of(acct_b.address, asset),
    }

    def client(acct: Account, config: ClientConfig | None = None) -> Client:
        return Client(
            account=acct,
            backend=backend,
            bus=bus,
            funder=backend.funder(acct),
            adjudicator=backend.adjudicator(acct),
            persister=plugins.persister(persister_name)(),
            config=config,
        )

    # In the dispute demo Bob cheats: his client runs no watchtower of its own.
    alice = client(acct_a)
    bob = client(acct_b, ClientConfig(watch=False, auto_settle=False) if dispute else None)
    bob_channel: asyncio.Future[Channel] = asyncio.get_running_loop().create_future()

    def on_proposal(p: ProposalInfo, r: ProposalResponder) -> None:
        r.accept()

    bob.on_proposal(on_proposal)

    def on_channel(ch: Channel) -> None:
        if not bob_channel.done():
            bob_channel.set_result(ch)

    bob.on_new_channel(on_channel)
    t0 = time.perf_counter()
    net_to_bob = 0
    async with alice, bob:
        console.print(
            f"[bold]Alice[/] {acct_a.address.short()}  [bold]Bob[/] "
            f"{acct_b.address.short()}  on [cyan]{backend_name}[/] / "
            f"[cyan]{bus_name}[/] / [cyan]{persister_name}[/]"
        )
        ch_a = await alice.propose_channel(
            LedgerChannelProposal(
                peer=bob.address,
                allocation=Allocation((asset,), ((deposit, deposit),)),
                challenge_duration=60,
            )
        )
        ch_b = await asyncio.wait_for(bob_channel, 10)
        console.print(
            f"channel [green]0x{ch_a.id.hex()[:16]}…[/] open and funded: {deposit} / {deposit}"
        )
        progress = Progress(
            TextColumn("payments"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        stale = ch_b.transaction  # Bob keeps the state in which he owned the most
        best_for_bob = deposit
        with progress:
            task = progress.add_task("pay", total=payments)
            for i in range(payments):
                amount = rng.randint(1, max(1, deposit // 20))
                # In the dispute demo Alice earns back more than she paid, so old states
                # are attractive to Bob.
                if i % 2 == 0 and not (dispute and i >= payments // 2):
                    await ch_a.send(amount)
                    net_to_bob += amount
                else:
                    await ch_b.send(amount)
                    net_to_bob -= amount
                if ch_b.my_balance() > best_for_bob:
                    best_for_bob, stale = ch_b.my_balance(), ch_b.transaction
                progress.advance(task)
        if ch_a.state != ch_b.state:
            console.print("[red]Alice and Bob disagree on the channel state[/]")
        console.print(
            f"{payments} payments done; channel at version {ch_a.state.version}: "
            f"Alice {ch_a.state.balances[0][0]}, Bob {ch_a.state.balances[0][1]}"
        )
        if dispute:
            assert stale is not None
            await _dispute_scene(console, backend, acct_b, ch_a, ch_b, stale)
        else:
            await asyncio.gather(ch_a.settle(), ch_b.settle())
            console.print("settled: final state concluded on the ledger and withdrawn")
    final = {
        "Alice": await backend.balance_of(acct_a.address, asset),
        "Bob": await backend.balance_of(acct_b.address, asset),
    }
    expected = {"Alice": initial["Alice"] - net_to_bob, "Bob": initial["Bob"] + net_to_bob}
    seconds = time.perf_counter() - t0
    table = Table(title=f"on-ledger balances ({asset})")
    for col in ("party", "before", "after", "expected", "ok"):
        table.add_column(col, justify="right" if col != "party" else "left")
    for who in ("Alice", "Bob"):
        good = final[who] == expected[who]
        table.add_row(
            who,
            str(initial[who]),
            str(final[who]),
            str(expected[who]),
            "[green]✔[/]" if good else "[red]✘[/]",
        )
    console.print(table)
    await backend.close()
    ok = final == expected
    if dispute:
        refuted = alice.watcher is not None and alice.watcher.refutations > 0
        console.print(
            f"watchtower refutations: {alice.watcher.refutations if alice.watcher else 0}"
        )
        ok = ok and refuted
    return DemoResult(ok, payments, net_to_bob, initial, final, expected, seconds)


async def _dispute_scene(
    console: Console,
    backend: ChainBackend,
    cheater: Account,
    ch_a: Channel,
    ch_b: Channel,
    stale: Transaction,
) -> None:
    """Bob registers ``stale``; Alice's watchtower refutes; both settle on the ledger."""
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
        f"[red]Bob registers the stale state v{stale.state.version}[/] "
        f"(Bob {stale.state.balances[0][1]}) instead of v{latest} "
        f"(Bob {ch_a.state.balances[0][1]})"
    )
    await backend.adjudicator(cheater).register(AdjudicatorReq(ch_b.params, stale, ch_b.idx))
    async with asyncio.timeout(10):
        while not any(ev.version == latest for ev in events):
            await asyncio.sleep(0.01)
    console.print(f"[green]Alice's watchtower refuted with v{latest}[/]")
    await backend.advance_time(ch_a.params.challenge_duration + 1)
    console.print(f"ledger time moved past the {ch_a.params.challenge_duration}s challenge")
    await ch_a.wait_phase(Phase.WITHDRAWN, timeout=10)  # Alice's client settles by itself
    await ch_b.settle()
    console.print("settled through the dispute: concluded with the latest state, withdrawn")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``perun demo``; returns the exit code."""
    args = _parser().parse_args(argv)
    # Warnings (a refuted registration, a fallback) are part of the story told on screen.
    logging.basicConfig(level=logging.ERROR)
    console = Console(quiet=args.quiet)
    result = asyncio.run(
        run_demo(
            payments=args.payments,
            deposit=args.deposit,
            seed=args.seed,
            backend_name=args.backend,
            bus_name=args.bus,
            persister_name=args.persister,
            dispute=args.dispute,
            console=console,
        )
    )
    verdict = "[green]OK[/]" if result.ok else "[red]MISMATCH[/]"
    Console().print(f"demo {verdict}: {result.payments} payments in {result.seconds:.2f}s")
    return 0 if result.ok else 1
