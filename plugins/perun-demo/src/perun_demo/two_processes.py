"""The demo with Bob in a second OS process (``perun demo --bus tcp``).

This process runs Alice and, on the sim chain, serves the ledger on a free loopback port
(:mod:`perun_sim.server`); Bob runs in a child process (:mod:`perun_core.testing.peer`) that
uses that ledger and talks to Alice over an authenticated TCP connection
(:mod:`perun-tcp <perun_tcp>`). This process tells Bob when to pay and settle over the
child's stdin; the channel itself runs only over TCP. Other chain backends hand Bob's
process their development ledger through ``ChainBackend.peer_config``.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perun_sim.backend import SimBackend
from perun_sim.ledger import SimLedger
from perun_sim.server import LedgerServer

from perun_core.channel.allocation import Allocation
from perun_core.client import Client, LedgerChannelProposal
from perun_core.plugins import load_plugins
from perun_core.testing.peer import PeerProcess, PeerProcessError
from perun_demo.dispute import dispute_scene
from perun_demo.output import balance_table, progress, tx_table
from perun_demo.payments import schedule
from perun_demo.result import DemoResult

if TYPE_CHECKING:
    from rich.console import Console

    from perun_core.interfaces.bus import Bus
    from perun_core.interfaces.chain import ChainBackend, LedgerTransaction
    from perun_core.plugins import Plugins


async def run_two_processes(
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
    plugins.bus("tcp")  # PluginNotFoundError (install perun-tcp) before any work
    backend_cls = plugins.chain(backend_name)
    flow = _TwoProcesses(
        plugins=plugins,
        payments=payments,
        deposit=deposit,
        plan=schedule(rng, payments, deposit, dispute),
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

    plugins: Plugins
    payments: int
    deposit: int
    plan: list[tuple[bool, int]]
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
        console, deposit, payments = self.console, self.deposit, self.payments
        funds = deposit * 10
        t0 = time.perf_counter()
        bus: Bus | None = None
        bob: PeerProcess | None = None
        try:
            asset = backend.default_assets()[0]
            acct_a = backend.wallet().new_account()
            await backend.faucet(acct_a.address, asset, funds)
            bus = await self.plugins.buses.open("tcp", None, account=acct_a, backend=backend)
            endpoint = bus.advertised_endpoints()[0]  # a free loopback port
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
            persister = await self.plugins.persisters.open(
                self.persister_name, None, account=acct_a, backend=backend
            )
            alice = Client(account=acct_a, backend=backend, bus=bus, persister=persister)
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
                bar = progress(console)
                with bar:
                    task = bar.add_task("pay", total=payments)
                    for alice_pays, amount in self.plan:
                        # As in one process: the other party pays when the payer cannot.
                        alice_has, bob_has = ch_a.state.balances[0]
                        if (alice_has if alice_pays else bob_has) < amount:
                            alice_pays = not alice_pays
                        if alice_pays:
                            await ch_a.send(amount)
                            net_to_bob += amount
                        else:
                            await bob.call("pay", id=cid, amount=amount)
                            net_to_bob -= amount
                        bar.advance(task)
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
                    await dispute_scene(
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
        console.print(balance_table(asset, initial, final, expected))
        if txs:
            # Bob's transactions are sent from his process: this one sees Alice's (and the
            # set-up's) only.
            names = {acct_a.address: "Alice", bob.address: "Bob"}
            console.print(tx_table(txs, names, console))
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
