"""``perun demo``: Alice and Bob open a channel, pay each other, and settle.

Runs on the embedded defaults: the ``sim`` chain backend, the in-process ``local`` bus and
the in-memory persister. Exit code 0 only if the final on-ledger balances equal the initial
ones moved by exactly the payments made.

With ``--bus tcp`` Alice and Bob are two OS processes: this process serves the sim ledger on
a free loopback port (:mod:`perun_sim.server`) and runs Alice; Bob runs in a child process
(:mod:`perun_core.demo_peer`) that uses the served ledger and talks to Alice over an
authenticated TCP connection (:mod:`perun-tcp <perun_tcp>`). This process tells Bob when to
pay and settle over the child's stdin; the channel itself runs only over TCP.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from perun_core.channel.allocation import Allocation
from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal, ProposalInfo
from perun_core.client.proposal import ProposalResponder
from perun_core.errors import NotSupportedError
from perun_core.interfaces.adjudicator import AdjudicatorEvent, AdjudicatorReq
from perun_core.interfaces.chain import ChainBackend
from perun_core.interfaces.wallet import Account
from perun_core.plugins import load_plugins

if TYPE_CHECKING:
    from perun_core.channel.types import Asset
    from perun_core.demo_peer import PeerProcess


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
    p.add_argument(
        "--bus",
        default="local",
        help="bus plugin (default local); tcp runs Bob in a second OS process",
    )
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
    """Run the demo scenario and return what happened.

    Raises:
        NotSupportedError: ``bus_name="tcp"`` with a backend other than ``sim``.
        PluginNotFoundError: a named plugin is not installed.
        PeerProcessError: with ``bus_name="tcp"``, Bob's process failed or died.
    """
    console = console or Console()
    rng = random.Random(seed)
    if bus_name == "tcp":
        return await _run_two_processes(
            payments=payments,
            deposit=deposit,
            rng=rng,
            backend_name=backend_name,
            persister_name=persister_name,
            dispute=dispute,
            console=console,
        )
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
            for alice_pays, amount in _schedule(rng, payments, deposit, dispute):
                if alice_pays:
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
    console.print(_balance_table(asset, initial, final, expected))
    await backend.close()
    ok = final == expected
    if dispute:
        refuted = alice.watcher is not None and alice.watcher.refutations > 0
        console.print(
            f"watchtower refutations: {alice.watcher.refutations if alice.watcher else 0}"
        )
        ok = ok and refuted
    return DemoResult(ok, payments, net_to_bob, initial, final, expected, seconds)


def _schedule(
    rng: random.Random, payments: int, deposit: int, dispute: bool
) -> list[tuple[bool, int]]:
    """``(alice_pays, amount)`` of every payment: turns alternate, amounts are random."""
    out = []
    for i in range(payments):
        amount = rng.randint(1, max(1, deposit // 20))
        # In the dispute demo Alice earns back more than she paid, so old states are
        # attractive to Bob.
        out.append((i % 2 == 0 and not (dispute and i >= payments // 2), amount))
    return out


def _balance_table(
    asset: Asset, initial: dict[str, int], final: dict[str, int], expected: dict[str, int]
) -> Table:
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
    return table


async def _run_two_processes(
    *,
    payments: int,
    deposit: int,
    rng: random.Random,
    backend_name: str,
    persister_name: str,
    dispute: bool,
    console: Console,
) -> DemoResult:
    """The demo with Bob in a child process; both on a ledger served by this process."""
    if backend_name != "sim":
        raise NotSupportedError(
            f"perun demo --bus tcp runs both processes on a served sim ledger; "
            f"--backend {backend_name} is not supported with it"
        )
    from perun_sim.backend import SimBackend
    from perun_sim.ledger import SimLedger
    from perun_sim.server import LedgerServer

    from perun_core.demo_peer import PeerProcess, PeerProcessError

    plugins = load_plugins()
    make_bus = plugins.bus("tcp")  # PluginNotFoundError (install perun-tcp) before any work
    make_persister = plugins.persister(persister_name)
    funds = deposit * 10
    schedule = _schedule(rng, payments, deposit, dispute)
    t0 = time.perf_counter()
    # A realtime ledger clock, as in the one-process demo; the dispute skips ahead.
    async with LedgerServer(SimLedger()) as server:
        url = await server.listen_tcp("127.0.0.1", 0)
        backend = SimBackend.from_config({"url": url})
        bus: Any = None  # a perun_tcp.TcpBus (listen, add_peer), typed loosely: a plugin
        bob: PeerProcess | None = None
        try:
            await backend.connect()
            asset = backend.default_assets()[0]
            acct_a = backend.wallet().new_account()
            await backend.faucet(acct_a.address, asset, funds)
            bus = make_bus(account=acct_a, verify=backend.verify_signature)
            endpoint = await bus.listen("127.0.0.1", 0)
            bob = await PeerProcess.spawn(
                ledger_url=url,
                peer=acct_a.address,
                peer_endpoint=str(endpoint),
                funds=funds,
                cheat=dispute,
            )
            bus.add_peer(bob.address, bob.endpoint)
            initial = {
                "Alice": await backend.balance_of(acct_a.address, asset),
                "Bob": await backend.balance_of(bob.address, asset),
            }
            alice = Client(
                account=acct_a,
                backend=backend,
                bus=bus,
                funder=backend.funder(acct_a),
                adjudicator=backend.adjudicator(acct_a),
                persister=make_persister(),
            )
            net_to_bob = 0
            async with alice:
                console.print(
                    f"[bold]Alice[/] {acct_a.address.short()} (pid {os.getpid()}, "
                    f"{endpoint})  [bold]Bob[/] {bob.address.short()} (pid {bob.pid}, "
                    f"{bob.endpoint})  on [cyan]sim served at {url}[/] / [cyan]tcp[/] / "
                    f"[cyan]{persister_name}[/]"
                )
                ch_a = await alice.propose_channel(
                    LedgerChannelProposal(
                        peer=bob.address,
                        allocation=Allocation((asset,), ((deposit, deposit),)),
                        challenge_duration=60,
                    )
                )
                cid = ch_a.id.hex()
                opened = await bob.call("channel", timeout=10)
                if opened["id"] != cid:
                    raise PeerProcessError(f"Bob opened another channel (0x{opened['id']})")
                console.print(
                    f"channel [green]0x{cid[:16]}…[/] open and funded: {deposit} / {deposit}"
                )
                progress = Progress(
                    TextColumn("payments"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=console,
                    transient=True,
                )
                with progress:
                    task = progress.add_task("pay", total=payments)
                    for alice_pays, amount in schedule:
                        if alice_pays:
                            await ch_a.send(amount)
                            net_to_bob += amount
                        else:
                            await bob.call("pay", id=cid, amount=amount)
                            net_to_bob -= amount
                        progress.advance(task)
                seen_by_bob = await bob.call("state", id=cid)
                mine = [list(row) for row in ch_a.state.balances]
                if (seen_by_bob["version"], seen_by_bob["balances"]) != (
                    ch_a.state.version,
                    mine,
                ):
                    console.print("[red]Alice and Bob disagree on the channel state[/]")
                console.print(
                    f"{payments} payments done; channel at version {ch_a.state.version}: "
                    f"Alice {ch_a.state.balances[0][0]}, Bob {ch_a.state.balances[0][1]}"
                )
                if dispute:
                    await _dispute_scene_two_processes(console, backend, bob, ch_a)
                else:
                    await asyncio.gather(ch_a.settle(), bob.call("settle", id=cid))
                    console.print("settled: final state concluded on the ledger and withdrawn")
            # Read back from the served ledger, as any third process would see it.
            final = {
                "Alice": await backend.balance_of(acct_a.address, asset),
                "Bob": await backend.balance_of(bob.address, asset),
            }
            bob_status = await bob.close()
        finally:
            if bob is not None:
                await bob.close()
            if bus is not None:
                await bus.close()
            await backend.close()
    expected = {"Alice": initial["Alice"] - net_to_bob, "Bob": initial["Bob"] + net_to_bob}
    seconds = time.perf_counter() - t0
    console.print(_balance_table(asset, initial, final, expected))
    ok = final == expected and bob_status == 0
    if bob_status != 0:
        console.print(f"[red]Bob's process exited with status {bob_status}[/]")
    if dispute:
        refuted = alice.watcher is not None and alice.watcher.refutations > 0
        console.print(
            f"watchtower refutations: {alice.watcher.refutations if alice.watcher else 0}"
        )
        ok = ok and refuted
    return DemoResult(ok, payments, net_to_bob, initial, final, expected, seconds)


async def _dispute_scene_two_processes(
    console: Console, backend: ChainBackend, bob: PeerProcess, ch_a: Channel
) -> None:
    """Bob's process registers a stale state; Alice's watchtower refutes; both settle."""
    events: list[AdjudicatorEvent] = []

    def show(ch: Channel, ev: AdjudicatorEvent) -> None:
        events.append(ev)
        console.print(
            f"  [magenta]ledger[/] {type(ev).__name__} version {ev.version} "
            f"(timeout at t={ev.timeout.deadline})"
        )

    ch_a.watch(show)
    cid = ch_a.id.hex()
    latest = ch_a.state.version
    stale = await bob.call("stale", id=cid)
    console.print(
        f"[red]Bob registers the stale state v{stale['version']}[/] "
        f"(Bob {stale['balances'][0][1]}) instead of v{latest} "
        f"(Bob {ch_a.state.balances[0][1]})"
    )
    await bob.call("register_stale", id=cid)
    async with asyncio.timeout(10):
        while not any(ev.version == latest for ev in events):
            await asyncio.sleep(0.01)
    console.print(f"[green]Alice's watchtower refuted with v{latest}[/]")
    await backend.advance_time(ch_a.params.challenge_duration + 1)
    console.print(f"ledger time moved past the {ch_a.params.challenge_duration}s challenge")
    await ch_a.wait_phase(Phase.WITHDRAWN, timeout=10)  # Alice's client settles by itself
    await bob.call("settle", id=cid)
    console.print("settled through the dispute: concluded with the latest state, withdrawn")


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
