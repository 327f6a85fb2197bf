"""Alice and Bob in this process, on a chain backend's development ledger."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from perun_core.channel.allocation import Allocation
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal
from perun_core.interfaces.adjudicator import AdjudicatorReq
from perun_demo.dispute import dispute_scene
from perun_demo.output import balance_table, progress, tx_table
from perun_demo.payments import pay_once, schedule
from perun_demo.result import DemoResult

if TYPE_CHECKING:
    from rich.console import Console

    from perun_core.client import ProposalInfo, ProposalResponder
    from perun_core.interfaces.bus import Bus
    from perun_core.interfaces.chain import ChainBackend, LedgerTransaction
    from perun_core.interfaces.persister import Persister
    from perun_core.interfaces.wallet import Account


async def run_one_process(
    backend: ChainBackend,
    bus: Bus,
    make_persister: Callable[[], Persister],
    txs: list[LedgerTransaction],
    *,
    payments: int,
    deposit: int,
    rng: random.Random,
    names: tuple[str, str, str],
    dispute: bool,
    console: Console,
) -> DemoResult:
    """Alice and Bob in this process on ``backend`` (closed by the caller); ``txs`` fills
    with the ledger's transactions as they are confirmed."""
    backend_name, bus_name, persister_name = names
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
            persister=make_persister(),
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
    made = 0
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
        bar = progress(console)
        stale = ch_b.transaction  # Bob keeps the state in which he owned the most
        best_for_bob = deposit
        with bar:
            task = bar.add_task("pay", total=payments)
            for alice_pays, amount in schedule(rng, payments, deposit, dispute):
                before = ch_a.state.version
                net_to_bob += await pay_once(ch_a, ch_b, alice_pays, amount)
                made += ch_a.state.version > before
                if ch_b.my_balance() > best_for_bob:
                    best_for_bob, stale = ch_b.my_balance(), ch_b.transaction
                bar.advance(task)
        if ch_a.state != ch_b.state:
            console.print("[red]Alice and Bob disagree on the channel state[/]")
        console.print(
            f"{made} payments done; channel at version {ch_a.state.version}: "
            f"Alice {ch_a.state.balances[0][0]}, Bob {ch_a.state.balances[0][1]}"
        )
        if dispute:
            assert stale is not None
            adj_b = backend.adjudicator(acct_b)
            await dispute_scene(
                console,
                backend,
                ch_a,
                (stale.state.version, stale.state.balances[0][1]),
                lambda: adj_b.register(AdjudicatorReq(ch_b.params, stale, ch_b.idx)),
                ch_b.settle,
            )
        else:
            await asyncio.gather(ch_a.settle(), ch_b.settle())
            console.print("settled: final state concluded on the ledger and withdrawn")
    final = {
        "Alice": await backend.balance_of(acct_a.address, asset),
        "Bob": await backend.balance_of(acct_b.address, asset),
    }
    expected = {"Alice": initial["Alice"] - net_to_bob, "Bob": initial["Bob"] + net_to_bob}
    seconds = time.perf_counter() - t0
    console.print(balance_table(asset, initial, final, expected))
    if txs:
        names_of = {acct_a.address: "Alice", acct_b.address: "Bob"}
        console.print(tx_table(txs, names_of, console))
    ok = final == expected and made == payments
    if dispute:
        refuted = alice.watcher is not None and alice.watcher.refutations > 0
        console.print(
            f"watchtower refutations: {alice.watcher.refutations if alice.watcher else 0}"
        )
        ok = ok and refuted
    return DemoResult(ok, made, net_to_bob, initial, final, expected, seconds)
