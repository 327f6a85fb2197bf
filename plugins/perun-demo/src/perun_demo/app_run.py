"""``perun demo --app NAME``: Alice and Bob play an app in a sub-channel of their payment
channel (``tictactoe``: a game for a stake each; ``htlc``: a hash-time-locked payment).

The scenes are in :mod:`perun_demo.app_tictactoe` and :mod:`perun_demo.app_htlc`; this module
sets the stage (a development ledger, two clients, the ledger channel) and checks the end:
the exit status is 0 only if each party's on-ledger balance moved by exactly what the
app's final state pays.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from perun_core.channel.allocation import Allocation
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal
from perun_core.client.update import accept_incoming_payments
from perun_core.errors import NotSupportedError
from perun_core.plugins import load_plugins
from perun_demo.output import balance_table, tx_table
from perun_demo.result import DemoOptionError, DemoResult, check_amounts

if TYPE_CHECKING:
    from rich.console import Console

    from perun_core.channel.state import State
    from perun_core.client import ProposalInfo, ProposalResponder, UpdateResponder
    from perun_core.interfaces.chain import LedgerTransaction
    from perun_core.interfaces.devledger import DevLedger

APPS: Final = ("tictactoe", "htlc")
"""The apps ``perun demo --app`` plays (from perun-apps)."""

CHALLENGE: Final = 60
"""Seconds of ledger time of every dispute window in the app demos."""

STALL_TIMEOUT: Final = 1.0
"""How long (wall seconds) a stalling party's client waits for its user's decision before it
rejects the peer's update with TIMEOUT: short, so the demo need not wait long."""


@dataclass(slots=True)
class Stage:
    """The parties of an app demo, their open ledger channel and what the scene reports.

    Attributes:
        dev: the development ledger (clock and faucet).
        alice, bob: the two started clients (Alice proposed the ledger channel: index 0).
        ch_a, ch_b: the ledger channel as Alice and Bob see it.
        console: where the scene prints.
        stalled: the names of the parties whose user no longer decides on updates.
        expected_to_bob: what the app's final states moved from Alice to Bob, in total.
        updates: off-chain updates and forced moves of the app sub-channels.
        failures: what the scene saw go differently from the story (the demo then fails).
        vet: the scene's own check of a peer's app update (``None``: the app's rules,
            already checked, are enough); ``False`` rejects it.
    """

    dev: DevLedger
    alice: Client
    bob: Client
    ch_a: Channel
    ch_b: Channel
    console: Console
    stalled: set[str] = field(default_factory=set)
    expected_to_bob: int = 0
    updates: int = 0
    failures: list[str] = field(default_factory=list)
    vet: Callable[[Channel, State, State], Awaitable[bool]] | None = None
    _bob_subs: asyncio.Queue[Channel] = field(default_factory=asyncio.Queue)

    async def bobs_view(self, sub: Channel) -> Channel:
        """Bob's side of the sub-channel ``sub`` that Alice opened (announced to him)."""
        async with asyncio.timeout(10):
            while True:
                got = await self._bob_subs.get()
                if got.id == sub.id:
                    return got

    async def advance(self, seconds: int, why: str) -> None:
        """Move the ledger clock on by ``seconds`` and say so."""
        await self.dev.advance_time(seconds)
        now = await self.dev.ledger_time()
        self.console.print(f"  [cyan]ledger clock[/] +{seconds}s (t={now}): {why}")


Scene = Callable[[Stage], Awaitable[None]]


def check_app_options(
    app: str,
    *,
    bus_name: str = "local",
    persister_name: str = "memory",
    db: object = None,
    keep_open: bool = False,
    watchtower: bool = False,
) -> None:
    """Refuse the combinations the app demos do not offer.

    Raises:
        DemoOptionError: an app other than those of :data:`APPS`.
        NotSupportedError: ``--app`` with another bus than ``local``, another persister
            than ``memory``, ``--db``, ``--keep-open`` or ``--watchtower``.
    """
    if app not in APPS:
        raise DemoOptionError(f"--app is one of {', '.join(APPS)}, not {app!r}")
    if bus_name != "local" or persister_name != "memory" or db is not None:
        raise NotSupportedError(
            "--app runs Alice and Bob in this process on the local bus with in-memory "
            "storage: it does not combine with --bus, --persister or --db"
        )
    if keep_open or watchtower:
        raise NotSupportedError("--app does not combine with --keep-open or --watchtower")


def _scene(app: str, dispute: bool) -> Scene:
    if app == "tictactoe":
        from perun_demo import app_tictactoe  # noqa: PLC0415 - needs perun-apps

        return app_tictactoe.dispute if dispute else app_tictactoe.play
    from perun_demo import app_htlc  # noqa: PLC0415 - needs perun-apps

    return app_htlc.dispute if dispute else app_htlc.pay


async def run_app_demo(
    app: str,
    *,
    deposit: int = 1_000,
    backend_name: str = "sim",
    dispute: bool = False,
    console: Console,
) -> DemoResult:
    """Play ``app`` in a sub-channel between Alice and Bob and settle; see the module docs.

    Raises:
        DemoOptionError: an unknown app or a deposit out of range.
        PluginNotFoundError: the backend plugin is not installed.
        UnknownAppError: perun-apps is not installed (or its app not for this chain).
        ChainError: the development ledger could not be started.
    """
    check_amounts(0, deposit)
    if app not in APPS:
        raise DemoOptionError(f"--app is one of {', '.join(APPS)}, not {app!r}")
    if deposit < 20:
        raise DemoOptionError("--app needs a deposit of at least 20: the stakes are a tenth")
    plugins = load_plugins()
    backend_cls = plugins.chain(backend_name)
    try:
        scene = _scene(app, dispute)
    except ImportError as e:
        raise NotSupportedError(
            f"perun demo --app {app} needs perun-apps: pip install perun-apps ({e})"
        ) from e
    txs: list[LedgerTransaction] = []
    async with backend_cls.dev_ledger(on_transaction=txs.append) as dev:
        backend, asset = dev.backend, dev.asset
        wallet = backend.wallet()
        acct_a, acct_b = wallet.new_account(), wallet.new_account()
        for acct in (acct_a, acct_b):
            await dev.faucet(acct.address, asset, deposit * 10)
        bus = await plugins.buses.open("local", None, account=acct_a, backend=backend)
        table = {"backend": backend_name, "bus": "local", "persister": "memory"}
        clients: list[Client] = []
        try:
            for acct in (acct_a, acct_b):
                # Whoever stalls in a dispute scene has its client give up on its user soon.
                cfg = ClientConfig(update_timeout=STALL_TIMEOUT) if dispute else None
                clients.append(
                    await Client.from_config(
                        table, account=acct, backend=backend, bus=bus, config=cfg, plugins=plugins
                    )
                )
            alice, bob = clients
            initial = {
                "Alice": await backend.balance_of(acct_a.address, asset),
                "Bob": await backend.balance_of(acct_b.address, asset),
            }
            t0 = time.perf_counter()
            async with alice, bob:
                stage = await _open(dev, alice, bob, deposit, console, backend_name, app)
                ch_a, ch_b = stage.ch_a, stage.ch_b
                try:
                    await scene(stage)
                    await asyncio.gather(ch_a.settle(), ch_b.settle())
                finally:
                    stage.stalled.clear()
                console.print("ledger channel settled: concluded on the ledger and withdrawn")
            final = {
                "Alice": await backend.balance_of(acct_a.address, asset),
                "Bob": await backend.balance_of(acct_b.address, asset),
            }
        finally:
            for c in clients:
                await c.close()
            await bus.close()
    moved = stage.expected_to_bob
    expected = {"Alice": initial["Alice"] - moved, "Bob": initial["Bob"] + moved}
    seconds = time.perf_counter() - t0
    console.print(balance_table(asset, initial, final, expected))
    if txs:
        names = {acct_a.address: "Alice", acct_b.address: "Bob"}
        console.print(tx_table(txs, names, console))
    for failure in stage.failures:
        console.print(f"[red]unexpected: {failure}[/]")
    ok = final == expected and not stage.failures
    return DemoResult(ok, stage.updates, moved, initial, final, expected, seconds)


async def _open(
    dev: DevLedger,
    alice: Client,
    bob: Client,
    deposit: int,
    console: Console,
    backend_name: str,
    app: str,
) -> Stage:
    """Set the handlers and open the ledger channel between the started clients."""
    stage_box: list[Stage] = []
    announced: asyncio.Queue[Channel] = asyncio.Queue()

    def accept(p: ProposalInfo, r: ProposalResponder) -> None:
        r.accept()  # Bob takes the payment channel and the app sub-channels Alice proposes

    bob.on_proposal(accept)
    bob.on_new_channel(announced.put_nowait)

    def decide(who: str) -> Callable[[Channel, State, State, UpdateResponder], Awaitable[None]]:
        async def handler(ch: Channel, cur: State, new: State, r: UpdateResponder) -> None:
            if stage_box and who in stage_box[0].stalled:
                return  # never decides: the client rejects with TIMEOUT after a while
            if ch.params.app is not None:
                # The app's rules have checked the update already; a scene may add its own
                # check (the HTLC payer signs a claim only before the deadline).
                vet = stage_box[0].vet if stage_box else None
                if vet is None or await vet(ch, cur, new):
                    r.accept()
                else:
                    r.reject(f"{who} refuses this update")
            else:
                accept_incoming_payments(ch, cur, new, r)

        return handler

    alice.on_update_proposal(decide("Alice"))
    bob.on_update_proposal(decide("Bob"))
    asset = dev.asset
    console.print(
        f"[bold]Alice[/] {alice.address.short()}  [bold]Bob[/] {bob.address.short()}  "
        f"on [cyan]{backend_name}[/]: app [cyan]{app}[/] "
        f"(0x{alice.app_id(app).hex()[:16]}…) in a sub-channel"
    )
    ch_a = await alice.propose_channel(
        LedgerChannelProposal(
            peer=bob.address,
            allocation=Allocation((asset,), ((deposit, deposit),)),
            challenge_duration=CHALLENGE,
        )
    )
    async with asyncio.timeout(10):
        ch_b = await announced.get()
    console.print(
        f"payment channel [green]0x{ch_a.id.hex()[:16]}…[/] open and funded: {deposit} / {deposit}"
    )
    stage = Stage(dev, alice, bob, ch_a, ch_b, console, _bob_subs=announced)
    stage_box.append(stage)
    return stage
