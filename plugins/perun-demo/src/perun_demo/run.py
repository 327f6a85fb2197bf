"""``perun demo``: Alice and Bob open a channel, pay each other, and settle.

Runs on the embedded defaults: the ``sim`` chain backend, the in-process ``local`` bus and
the in-memory persister. Exit code 0 only if the final on-ledger balances equal the initial
ones moved by exactly the payments made.

Every backend runs on its development ledger (``ChainBackend.demo_ledger``): sim in memory;
``--backend eth`` (perun-eth) starts anvil on a free loopback port, deploys the contracts and
moves the PerunToken, whose balances no gas fee touches. For a ledger with transactions the
demo also prints a table of every one of them: operation, sender, hash and gas used (the
deployments included).

With ``--bus tcp`` Alice and Bob are two OS processes: this process serves the sim ledger on
a free loopback port (:mod:`perun_sim.server`) and runs Alice; Bob runs in a child process
(:mod:`perun_core.demo_peer`) that uses the served ledger and talks to Alice over an
authenticated TCP connection (:mod:`perun-tcp <perun_tcp>`). This process tells Bob when to
pay and settle over the child's stdin; the channel itself runs only over TCP.

With a durable persister (``--persister leveldb|rocksdb --db PATH``) the channels live in
stores under PATH (``PATH/alice``, ``PATH/bob``) and survive the process: running the demo
again on the same PATH restores them, shows them in a table (checked against what the last
run left) and continues. ``--keep-open`` leaves the channel open at the end, so the next run
restores it, pays on and settles. The sim ledger itself lives in memory; so that the next
run finds the deposits of a channel left open, the demo saves the ledger's balances of
Alice and Bob and the channel's holdings in ``PATH/demo.json`` (with the two accounts' key
seeds) and replays them into the new ledger (a real chain keeps them by itself).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from perun_core.channel.allocation import Allocation
from perun_core.channel.phase import Phase
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal, ProposalInfo
from perun_core.client.proposal import ProposalResponder
from perun_core.errors import NotSupportedError, PersistenceError
from perun_core.interfaces.adjudicator import AdjudicatorEvent, AdjudicatorReq
from perun_core.interfaces.bus import Bus
from perun_core.interfaces.chain import ChainBackend, LedgerTransaction
from perun_core.interfaces.persister import Persister
from perun_core.interfaces.wallet import Account
from perun_core.plugins import load_plugins

if TYPE_CHECKING:
    from perun_core.channel.types import Address, Asset
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
    restored: int = 0
    """Channels restored from the stores at ``--db`` (0 without it)."""
    open_channels: int = 0
    """Channels left open at the end (``--keep-open``)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="perun demo", description=__doc__)
    p.add_argument("--payments", type=int, default=20, help="payments in total (default 20)")
    p.add_argument("--deposit", type=int, default=1_000, help="each party's deposit")
    p.add_argument("--seed", type=int, default=None, help="random seed for payment amounts")
    p.add_argument(
        "--backend",
        default="sim",
        help="chain backend plugin (default sim); eth starts a local anvil and deploys",
    )
    p.add_argument(
        "--bus",
        default="local",
        help="bus plugin (default local); tcp runs Bob in a second OS process",
    )
    p.add_argument(
        "--persister",
        default="memory",
        help="persister plugin (default memory); leveldb and rocksdb store at --db",
    )
    p.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help="directory of the durable stores (with --persister leveldb|rocksdb); "
        "running again on the same PATH restores the channels",
    )
    p.add_argument(
        "--keep-open",
        action="store_true",
        help="with --db: leave the channel open; the next run on the same PATH restores "
        "it, pays on and settles",
    )
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
    db: str | os.PathLike[str] | None = None,
    keep_open: bool = False,
    console: Console | None = None,
) -> DemoResult:
    """Run the demo scenario and return what happened.

    Args:
        payments: how many payments (alternating, random amounts).
        deposit: each party's deposit.
        seed: seed of the payment amounts.
        backend_name: chain backend plugin.
        bus_name: bus plugin (``tcp``: Bob in a second process).
        persister_name: persister plugin; a durable one needs ``db``.
        dispute: Bob registers a stale state; Alice's watchtower refutes it.
        db: directory of the durable stores; channels found there are restored.
        keep_open: leave the channel open at the end (needs ``db``).
        console: where to print (default: the terminal).

    Raises:
        NotSupportedError: ``bus_name="tcp"`` with a backend other than ``sim``; a durable
            persister without ``db``; ``db`` with the memory persister, another bus than
            ``local`` or another backend than ``sim``; ``keep_open`` without ``db`` or with
            ``dispute``.
        PersistenceError: ``db`` holds stores the demo did not write, its ``demo.json`` is
            unreadable, or a store is locked (``StoreLockedError``) or damaged.
        PluginNotFoundError: a named plugin is not installed.
        PeerProcessError: with ``bus_name="tcp"``, Bob's process failed or died.
        ChainError: the backend's development ledger could not be started or prepared
            (``eth``: anvil missing or a deployment failed).
    """
    console = console or Console()
    rng = random.Random(seed)
    if db is not None or keep_open:
        _check_durable_options(backend_name, bus_name, persister_name, db, keep_open, dispute)
        assert db is not None
        return await _run_durable(
            payments=payments,
            deposit=deposit,
            rng=rng,
            persister_name=persister_name,
            root=Path(db),
            keep_open=keep_open,
            console=console,
        )
    if persister_name != "memory":
        raise NotSupportedError(
            f"--persister {persister_name} stores channels on disk: give it a directory "
            "with --db PATH"
        )
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
    backend_cls = plugins.chain(backend_name)
    make_bus = plugins.bus(bus_name)
    make_persister = plugins.persister(persister_name)
    txs: list[LedgerTransaction] = []
    # The backend's development ledger: sim in memory, eth a fresh anvil with our contracts.
    async with backend_cls.demo_ledger(on_transaction=txs.append) as backend:
        return await _run_one_process(
            backend,
            make_bus(),
            lambda: make_persister(),
            txs,
            payments=payments,
            deposit=deposit,
            rng=rng,
            names=(backend_name, bus_name, persister_name),
            dispute=dispute,
            console=console,
        )


async def _run_one_process(
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
        progress = _progress(console)
        stale = ch_b.transaction  # Bob keeps the state in which he owned the most
        best_for_bob = deposit
        with progress:
            task = progress.add_task("pay", total=payments)
            for alice_pays, amount in _schedule(rng, payments, deposit, dispute):
                net_to_bob += await _pay_once(ch_a, ch_b, alice_pays, amount)
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
            adj_b = backend.adjudicator(acct_b)
            await _dispute_scene(
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
    console.print(_balance_table(asset, initial, final, expected))
    if txs:
        console.print(_tx_table(txs, {acct_a.address: "Alice", acct_b.address: "Bob"}))
    ok = final == expected
    if dispute:
        refuted = alice.watcher is not None and alice.watcher.refutations > 0
        console.print(
            f"watchtower refutations: {alice.watcher.refutations if alice.watcher else 0}"
        )
        ok = ok and refuted
    return DemoResult(ok, payments, net_to_bob, initial, final, expected, seconds)


async def _pay_once(ch_a: Channel, ch_b: Channel, alice_pays: bool, amount: int) -> int:
    """One payment (the other party pays when the payer cannot); returns what Bob gained."""
    payer, sign = (ch_a, 1) if alice_pays else (ch_b, -1)
    if payer.my_balance() < amount:
        payer, sign = (ch_b, -1) if alice_pays else (ch_a, 1)
    amount = min(amount, payer.my_balance())
    if amount == 0:
        return 0
    await payer.send(amount)
    return sign * amount


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
    asset: Asset,
    initial: dict[str, int],
    final: dict[str, int],
    expected: dict[str, int],
    before: str = "before",
) -> Table:
    table = Table(title=f"on-ledger balances ({asset})")
    for col in ("party", before, "after", "expected", "ok"):
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


def _tx_table(txs: list[LedgerTransaction], names: dict[Address, str]) -> Table:
    """Every ledger transaction: what it did, who sent (and paid for) it, its hash and gas."""
    table = Table(title="ledger transactions")
    table.add_column("#", justify="right")
    table.add_column("operation")
    table.add_column("sender")
    table.add_column("tx hash", min_width=66, overflow="fold")
    table.add_column("gas used", justify="right")
    totals: dict[str, int] = {}
    for i, tx in enumerate(txs, 1):
        who = names.get(tx.sender, tx.sender.short())
        totals[who] = totals.get(who, 0) + tx.gas_used
        table.add_row(str(i), tx.operation, who, tx.tx_hash, f"{tx.gas_used:,}")
    table.caption = "gas in total: " + ", ".join(f"{w} {g:,}" for w, g in totals.items())
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
    """The demo with Bob in a child process. sim: this process serves the ledger; other
    backends: their development ledger (``demo_ledger``), which Bob's process joins through
    the backend's :meth:`~perun_core.interfaces.ChainBackend.peer_config`."""
    plugins = load_plugins()
    make_bus = plugins.bus("tcp")  # PluginNotFoundError (install perun-tcp) before any work
    backend_cls = plugins.chain(backend_name)
    flow = _TwoProcesses(
        make_bus=make_bus,
        make_persister=plugins.persister(persister_name),
        payments=payments,
        deposit=deposit,
        schedule=_schedule(rng, payments, deposit, dispute),
        persister_name=persister_name,
        dispute=dispute,
        console=console,
    )
    if backend_name != "sim":
        txs: list[LedgerTransaction] = []
        async with backend_cls.demo_ledger(on_transaction=txs.append) as backend:
            peer_config = backend.peer_config()  # NotSupportedError: cannot be shared
            return await flow.run(
                backend,
                {"backend": backend_name, "backend_config": dict(peer_config)},
                backend_name,
                txs,
            )
    from perun_sim.backend import SimBackend
    from perun_sim.ledger import SimLedger
    from perun_sim.server import LedgerServer

    # A realtime ledger clock, as in the one-process demo; the dispute skips ahead.
    async with LedgerServer(SimLedger()) as server:
        url = await server.listen_tcp("127.0.0.1", 0)
        sim = SimBackend.from_config({"url": url})
        try:
            await sim.connect()
            return await flow.run(sim, {"ledger_url": url}, f"sim served at {url}", [])
        finally:
            await sim.close()


@dataclass
class _TwoProcesses:
    """The two-process demo flow on a ready backend: Alice here, Bob in a child process."""

    make_bus: Callable[..., Any]
    make_persister: Callable[..., Persister]
    payments: int
    deposit: int
    schedule: list[tuple[bool, int]]
    persister_name: str
    dispute: bool
    console: Console

    async def run(
        self,
        backend: ChainBackend,
        peer_ledger: dict[str, Any],
        ledger_label: str,
        txs: list[LedgerTransaction],
    ) -> DemoResult:
        """Run the flow; ``peer_ledger`` tells :meth:`PeerProcess.spawn` which ledger Bob
        uses. The caller closes ``backend``."""
        from perun_core.demo_peer import PeerProcess, PeerProcessError

        console, deposit, payments = self.console, self.deposit, self.payments
        funds = deposit * 10
        t0 = time.perf_counter()
        bus: Any = None  # a perun_tcp.TcpBus (listen, add_peer), typed loosely: a plugin
        bob: PeerProcess | None = None
        try:
            asset = backend.default_assets()[0]
            acct_a = backend.wallet().new_account()
            await backend.faucet(acct_a.address, asset, funds)
            bus = self.make_bus(account=acct_a, verify=backend.verify_signature)
            endpoint = await bus.listen("127.0.0.1", 0)
            bob = await PeerProcess.spawn(
                **peer_ledger,
                peer=acct_a.address,
                peer_endpoint=str(endpoint),
                funds=funds,
                cheat=self.dispute,
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
                persister=self.make_persister(),
            )
            net_to_bob = 0
            async with alice:
                console.print(
                    f"[bold]Alice[/] {acct_a.address.short()} (pid {os.getpid()}, "
                    f"{endpoint})  [bold]Bob[/] {bob.address.short()} (pid {bob.pid}, "
                    f"{bob.endpoint})  on [cyan]{ledger_label}[/] / [cyan]tcp[/] / "
                    f"[cyan]{self.persister_name}[/]"
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
                progress = _progress(console)
                with progress:
                    task = progress.add_task("pay", total=payments)
                    for alice_pays, amount in self.schedule:
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
                if self.dispute:
                    seen = await bob.call("stale", id=cid)
                    await _dispute_scene(
                        console,
                        backend,
                        ch_a,
                        (seen["version"], seen["balances"][0][1]),
                        lambda: bob.call("register_stale", id=cid),
                        lambda: bob.call("settle", id=cid),
                    )
                else:
                    await asyncio.gather(ch_a.settle(), bob.call("settle", id=cid))
                    console.print("settled: final state concluded on the ledger and withdrawn")
            # Read back from the ledger, as any third process would see it.
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
        expected = {"Alice": initial["Alice"] - net_to_bob, "Bob": initial["Bob"] + net_to_bob}
        seconds = time.perf_counter() - t0
        console.print(_balance_table(asset, initial, final, expected))
        if txs:
            # Bob's transactions are sent from his process: this one sees Alice's (and the
            # set-up's) only.
            console.print(_tx_table(txs, {acct_a.address: "Alice", bob.address: "Bob"}))
        ok = final == expected and bob_status == 0
        if bob_status != 0:
            console.print(f"[red]Bob's process exited with status {bob_status}[/]")
        if self.dispute:
            refuted = alice.watcher is not None and alice.watcher.refutations > 0
            console.print(
                f"watchtower refutations: {alice.watcher.refutations if alice.watcher else 0}"
            )
            ok = ok and refuted
        return DemoResult(ok, payments, net_to_bob, initial, final, expected, seconds)


async def _dispute_scene(
    console: Console,
    backend: ChainBackend,
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
        while not any(ev.version == latest for ev in events):
            await asyncio.sleep(0.01)
    console.print(f"[green]Alice's watchtower refuted with v{latest}[/]")
    await backend.advance_time(ch_a.params.challenge_duration + 1)
    console.print(f"ledger time moved past the {ch_a.params.challenge_duration}s challenge")
    await ch_a.wait_phase(Phase.WITHDRAWN, timeout=10)  # Alice's client settles by itself
    await settle_bob()
    console.print("settled through the dispute: concluded with the latest state, withdrawn")


def _progress(console: Console) -> Progress:
    """The payments progress bar."""
    return Progress(
        TextColumn("payments"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


# --- durable stores: --persister leveldb|rocksdb --db PATH [--keep-open] -----------------------

_PARTIES = ("Alice", "Bob")
_DEMO_FILE = "demo.json"
_DEMO_FORMAT = 1


def _check_durable_options(
    backend_name: str,
    bus_name: str,
    persister_name: str,
    db: str | os.PathLike[str] | None,
    keep_open: bool,
    dispute: bool,
) -> None:
    if db is None:
        raise NotSupportedError("--keep-open needs --db PATH: an open channel must be stored")
    if persister_name == "memory":
        raise NotSupportedError(
            "--db needs a durable persister (--persister leveldb or rocksdb); the memory "
            "persister keeps nothing after the process"
        )
    if backend_name != "sim" or bus_name != "local":
        raise NotSupportedError(
            "--db runs Alice and Bob in this process on the sim ledger; drop --backend/--bus"
        )
    if dispute:
        raise NotSupportedError("--dispute runs on the in-memory persister; drop --db")


@dataclass(slots=True)
class _DemoFile:
    """``PATH/demo.json``: what a later run needs besides the stores.

    The accounts' key seeds (the same Alice and Bob every run), the persister that writes
    the stores, the accounts' on-ledger balances before the first run, the net amount moved
    to Bob by channels settled so far, the sim ledger's state as the last run left it
    (account balances, holdings of open channels), and per open channel its deposits and
    the version and balances the last run left (to check the restore); ``complete`` is
    false if that run was interrupted after recording the channel.
    """

    seeds: dict[str, str]
    persister: str
    initial: dict[str, int] = field(default_factory=dict)
    settled_net_to_bob: int = 0
    accounts: dict[str, int] = field(default_factory=dict)
    holdings: list[tuple[str, str, int]] = field(default_factory=list)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> _DemoFile | None:
        path = root / _DEMO_FILE
        try:
            raw = json.loads(path.read_text())
            if raw.get("format") != _DEMO_FORMAT:
                raise ValueError(f"format {raw.get('format')!r}, expected {_DEMO_FORMAT}")
            ledger = raw["ledger"]
            return cls(
                seeds={who: str(raw["seeds"][who]) for who in _PARTIES},
                persister=str(raw["persister"]),
                initial={who: int(raw["initial"][who]) for who in _PARTIES},
                settled_net_to_bob=int(raw["settled_net_to_bob"]),
                accounts={who: int(ledger["accounts"][who]) for who in _PARTIES},
                holdings=[(str(c), str(w), int(a)) for c, w, a in ledger["holdings"]],
                channels={str(k): dict(v) for k, v in raw["channels"].items()},
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise PersistenceError(
                f"cannot read {path}: {e}; run the demo on a new --db PATH", path=str(root)
            ) from None

    def save(self, root: Path) -> None:
        raw = {
            "format": _DEMO_FORMAT,
            "seeds": self.seeds,
            "persister": self.persister,
            "initial": self.initial,
            "settled_net_to_bob": self.settled_net_to_bob,
            "ledger": {"accounts": self.accounts, "holdings": [list(h) for h in self.holdings]},
            "channels": self.channels,
        }
        tmp = root / (_DEMO_FILE + ".tmp")
        tmp.write_text(json.dumps(raw, indent=2) + "\n")
        os.replace(tmp, root / _DEMO_FILE)  # atomic: never half a file


def _restored_table(root: Path, channels: list[Channel], saved: _DemoFile) -> Table:
    table = Table(title=f"channels restored from {root}")
    for col in ("channel", "phase", "version", "Alice", "Bob", "as left"):
        table.add_column(col, justify="left" if col in ("channel", "phase") else "right")
    for ch in channels:
        bal = ch.state.balances[0]
        verdict = _as_left(ch, saved.channels.get(ch.id.hex()))
        table.add_row(
            f"0x{ch.id.hex()[:16]}…",
            ch.phase.name,
            str(ch.state.version),
            str(bal[0]),
            str(bal[1]),
            {True: "[green]✔[/]", False: "[red]✘[/]", None: "[yellow]?[/]"}[verdict],
        )
    return table


def _as_left(ch: Channel, left: dict[str, Any] | None) -> bool | None:
    """Whether a restored channel is exactly what the last run left (version, balances).

    ``None`` if that run was interrupted after it recorded the channel: the channel may then
    be newer than the record (never older).
    """
    if left is None:
        return False
    if not left.get("complete"):
        return None if ch.state.version >= int(left["version"]) else False
    same = left["version"] == ch.state.version and left["balances"] == list(ch.state.balances[0])
    return bool(same)


def _record(
    saved: _DemoFile,
    root: Path,
    ledger: Any,
    asset: Asset,
    accounts: dict[str, Account],
    channels: list[Channel],
    *,
    complete: bool,
) -> None:
    """Save what the next run needs: the open channels and the ledger's state around them.

    ``complete=False`` marks a record taken before the end of the run (after funding), so
    that a run interrupted later still leaves a ledger snapshot matching its stores.
    """
    ids = {ch.id.hex() for ch in channels}
    saved.channels = {cid: v for cid, v in saved.channels.items() if cid in ids}
    for ch in channels:
        entry = saved.channels.setdefault(ch.id.hex(), {})
        # Before settlement an open channel's holdings are its deposits.
        entry.setdefault(
            "deposits", [ledger.holdings_of(asset, ch.id, accounts[w].address) for w in _PARTIES]
        )
        entry["version"] = ch.state.version
        entry["balances"] = list(ch.state.balances[0])
        entry["complete"] = complete
    saved.accounts = {who: ledger.balance_of(a.address, asset) for who, a in accounts.items()}
    saved.holdings = [
        (cid, who, amount)
        for cid in saved.channels
        for who, a in accounts.items()
        if (amount := ledger.holdings_of(asset, bytes.fromhex(cid), a.address))
    ]
    saved.save(root)


async def _run_durable(
    *,
    payments: int,
    deposit: int,
    rng: random.Random,
    persister_name: str,
    root: Path,
    keep_open: bool,
    console: Console,
) -> DemoResult:
    """The one-process demo on durable stores under ``root`` (see the module docs)."""
    from perun_sim.backend import SimBackend

    plugins = load_plugins()
    make_persister = plugins.persister(persister_name)
    saved = _DemoFile.load(root)
    if saved is None and any((root / who.lower()).exists() for who in _PARTIES):
        raise PersistenceError(
            f"{root} holds channel stores but no {_DEMO_FILE}; run the demo on a new --db PATH",
            path=str(root),
        )
    if saved is not None and saved.persister != persister_name:
        raise PersistenceError(
            f"{root} holds {saved.persister} stores; run with --persister {saved.persister} "
            "or on a new --db PATH",
            path=str(root),
        )
    root.mkdir(parents=True, exist_ok=True)
    first = saved is None
    if saved is None:
        saved = _DemoFile(
            seeds={who: os.urandom(16).hex() for who in _PARTIES}, persister=persister_name
        )
    backend = SimBackend.from_config({})
    ledger = backend.ledger
    asset = backend.default_assets()[0]
    wallet = backend.wallet()
    accounts: dict[str, Account] = {
        who: wallet.add_seed(bytes.fromhex(saved.seeds[who])) for who in _PARTIES
    }
    if first:
        for acct in accounts.values():
            await backend.faucet(acct.address, asset, deposit * 10)
        saved.initial = {who: ledger.balance_of(a.address, asset) for who, a in accounts.items()}
        saved.accounts = dict(saved.initial)
        saved.save(root)  # the accounts exist before any store does
    else:
        # Replay the saved ledger state into this process's fresh sim ledger.
        for who, acct in accounts.items():
            ledger.mint(acct.address, asset, saved.accounts[who])
        for cid_hex, who, amount in saved.holdings:
            addr = accounts[who].address
            ledger.mint(addr, asset, amount)
            fid = backend.funding_id(bytes.fromhex(cid_hex), addr)
            await ledger.deposit(addr, asset, fid, amount)
    stores = {who: make_persister(path=str(root / who.lower())) for who in _PARTIES}
    bus = plugins.bus("local")()
    clients = {
        who: Client(
            account=acct,
            backend=backend,
            bus=bus,
            funder=backend.funder(acct),
            adjudicator=backend.adjudicator(acct),
            persister=stores[who],
        )
        for who, acct in accounts.items()
    }
    alice, bob = clients["Alice"], clients["Bob"]
    bob_channels: asyncio.Queue[Channel] = asyncio.Queue()
    bob.on_proposal(lambda p, r: r.accept())
    bob.on_new_channel(bob_channels.put_nowait)
    t0 = time.perf_counter()
    restored: list[Channel] = []
    ok = True
    try:
        async with alice, bob:
            console.print(
                f"[bold]Alice[/] {accounts['Alice'].address.short()}  [bold]Bob[/] "
                f"{accounts['Bob'].address.short()}  on [cyan]sim[/] / [cyan]local[/] / "
                f"[cyan]{persister_name}[/] at [cyan]{root}[/]" + ("" if first else " (restarted)")
            )
            restored = alice.channels
            if restored:
                console.print(_restored_table(root, restored, saved))
                for ch in restored:
                    if _as_left(ch, saved.channels.get(ch.id.hex())) is False:
                        console.print(f"[red]channel 0x{ch.id.hex()[:16]}… is not as left[/]")
                        ok = False
                ch_a = restored[0]
                ch_b = bob.channel(ch_a.id)
                await asyncio.gather(
                    ch_a.wait_phase(Phase.ACTING, Phase.FINAL, timeout=10),
                    ch_b.wait_phase(Phase.ACTING, Phase.FINAL, timeout=10),
                )
            else:
                if not first:
                    console.print(f"no open channels in {root}; opening a new one")
                ch_a = await alice.propose_channel(
                    LedgerChannelProposal(
                        peer=bob.address,
                        allocation=Allocation((asset,), ((deposit, deposit),)),
                        challenge_duration=60,
                    )
                )
                ch_b = await asyncio.wait_for(bob_channels.get(), 10)
                _record(saved, root, ledger, asset, accounts, alice.channels, complete=False)
                console.print(
                    f"channel [green]0x{ch_a.id.hex()[:16]}…[/] open and funded: "
                    f"{deposit} / {deposit}"
                )
            before = ch_a.state.balances[0]
            net_to_bob = 0  # moved by this run's payments
            if ch_a.phase == Phase.ACTING:
                schedule = _schedule(rng, payments, deposit, False)
                net_to_bob = await _pay(console, ch_a, ch_b, schedule)
            after = ch_a.state.balances[0]
            if ch_a.state != ch_b.state or after != (
                before[0] - net_to_bob,
                before[1] + net_to_bob,
            ):
                console.print("[red]the channel does not hold what the payments moved[/]")
                ok = False
            console.print(
                f"channel at version {ch_a.state.version}: Alice {after[0]}, Bob {after[1]}"
            )
            if keep_open:
                console.print(
                    f"channel left open in {root}; run the same command again to restore it"
                )
            else:
                for ch in alice.channels:
                    entry = saved.channels.get(ch.id.hex())
                    if entry is None:  # not recorded (an interrupted first run): from v0 on
                        entry = {"deposits": [deposit, deposit]}
                    await asyncio.gather(ch.settle(), bob.channel(ch.id).settle())
                    saved.settled_net_to_bob += ch.state.balances[0][1] - entry["deposits"][1]
                console.print("settled: final state concluded on the ledger and withdrawn")
            # What the next run replays: the ledger's balances and the open channels.
            _record(saved, root, ledger, asset, accounts, alice.channels, complete=True)
    finally:
        for store in stores.values():
            await store.close()
        await backend.close()
    final = dict(saved.accounts)
    locked = {
        who: sum(int(v["deposits"][i]) for v in saved.channels.values())
        for i, who in enumerate(_PARTIES)
    }
    settled = saved.settled_net_to_bob
    expected = {
        "Alice": saved.initial["Alice"] - settled - locked["Alice"],
        "Bob": saved.initial["Bob"] + settled - locked["Bob"],
    }
    seconds = time.perf_counter() - t0
    table = _balance_table(
        asset, saved.initial, final, expected, before="before" if first else "first run"
    )
    if saved.channels:
        table.caption = "the deposits are in the open channel until it settles"
    console.print(table)
    open_net = sum(int(v["balances"][1]) - int(v["deposits"][1]) for v in saved.channels.values())
    return DemoResult(
        ok and final == expected,
        payments,
        settled + open_net,
        saved.initial,
        final,
        expected,
        seconds,
        restored=len(restored),
        open_channels=len(saved.channels),
    )


async def _pay(
    console: Console, ch_a: Channel, ch_b: Channel, schedule: list[tuple[bool, int]]
) -> int:
    """Make the payments of ``schedule`` with a progress bar; returns the net paid to Bob."""
    net_to_bob = 0
    progress = _progress(console)
    with progress:
        task = progress.add_task("pay", total=len(schedule))
        for alice_pays, amount in schedule:
            net_to_bob += await _pay_once(ch_a, ch_b, alice_pays, amount)
            progress.advance(task)
    return net_to_bob


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``perun demo``; returns the exit code."""
    args = _parser().parse_args(argv)
    # Warnings (a refuted registration, a fallback) are part of the story told on screen.
    logging.basicConfig(level=logging.ERROR)
    # Records of loggers with a level of their own (a logging plugin may set perun's to
    # INFO) reach the root handler whatever the root's level: the handler filters them.
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.ERROR)
    console = Console(quiet=args.quiet)
    try:
        result = asyncio.run(
            run_demo(
                payments=args.payments,
                deposit=args.deposit,
                seed=args.seed,
                backend_name=args.backend,
                bus_name=args.bus,
                persister_name=args.persister,
                dispute=args.dispute,
                db=args.db,
                keep_open=args.keep_open,
                console=console,
            )
        )
    except KeyboardInterrupt:
        # asyncio.run cancelled the demo, which stopped what it started (a peer process,
        # a local node) on the way out; a traceback would tell the user nothing more.
        Console(stderr=True).print("demo interrupted")
        return 130
    verdict = "[green]OK[/]" if result.ok else "[red]MISMATCH[/]"
    Console().print(f"demo {verdict}: {result.payments} payments in {result.seconds:.2f}s")
    return 0 if result.ok else 1
