"""Alice and Bob in this process, on a chain backend's development ledger."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

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
    from perun_core.interfaces.chain import LedgerTransaction
    from perun_core.interfaces.devledger import DevLedger
    from perun_core.interfaces.wallet import Account
    from perun_core.plugins import Plugins


async def run_one_process(
    dev: DevLedger,
    plugins: Plugins,
    config: Mapping[str, Any],
    txs: list[LedgerTransaction],
    *,
    payments: int,
    deposit: int,
    rng: random.Random,
    names: tuple[str, str, str],
    dispute: bool,
    console: Console,
) -> DemoResult:
    """Alice and Bob in this process on the development ledger ``dev`` (closed by the
    caller), their clients built by :meth:`Client.from_config` from ``config`` (the
    ``[perun]`` table naming the bus and persister); ``txs`` fills with the ledger's
    transactions as they are confirmed."""
    bus_name = names[1]
    backend = dev.backend
    wallet = backend.wallet()
    acct_a, acct_b = wallet.new_account(), wallet.new_account()
    asset = dev.asset
    funds = deposit * 10
    for acct in (acct_a, acct_b):
        await dev.faucet(acct.address, asset, funds)
    # A bus every client of a process shares (local) is opened once and passed in; any
    # other bus is opened per client, and the two learn where the other listens.
    shared = None
    if plugins.buses.part_class(bus_name).shared:
        shared = await plugins.buses.open(
            bus_name, config.get(bus_name), account=acct_a, backend=backend
        )

    async def client(acct: Account, client_config: ClientConfig | None = None) -> Client:
        return await Client.from_config(
            config, account=acct, backend=backend, bus=shared, config=client_config, plugins=plugins
        )

    clients: list[Client] = []
    try:
        # In the dispute demo Bob cheats: his client runs no watchtower of its own.
        clients.append(alice := await client(acct_a))
        cheater = ClientConfig(watch=False, auto_settle=False) if dispute else None
        clients.append(bob := await client(acct_b, cheater))
        if shared is None:
            alice.bus.add_peer(bob.address, bob.bus.advertised_endpoints()[0])
            bob.bus.add_peer(alice.address, alice.bus.advertised_endpoints()[0])
        return await _play(
            dev,
            alice,
            bob,
            txs,
            payments=payments,
            deposit=deposit,
            rng=rng,
            names=names,
            dispute=dispute,
            console=console,
        )
    finally:
        for c in clients:
            await c.close()  # closes the parts from_config opened (a second close: no-op)
        if shared is not None:
            await shared.close()


async def _play(
    dev: DevLedger,
    alice: Client,
    bob: Client,
    txs: list[LedgerTransaction],
    *,
    payments: int,
    deposit: int,
    rng: random.Random,
    names: tuple[str, str, str],
    dispute: bool,
    console: Console,
) -> DemoResult:
    """Open, pay and settle (or dispute) between the started clients ``alice`` and ``bob``."""
    backend_name, bus_name, persister_name = names
    backend, asset = dev.backend, dev.asset
    acct_a, acct_b = alice.account, bob.account
    initial = {
        "Alice": await backend.balance_of(acct_a.address, asset),
        "Bob": await backend.balance_of(acct_b.address, asset),
    }
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
                dev,
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
