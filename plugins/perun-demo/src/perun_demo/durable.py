"""The demo on durable stores: ``perun demo --persister leveldb|rocksdb --db PATH``.

The channels live in stores under PATH (``PATH/alice``, ``PATH/bob``) and survive the
process: running the demo again on the same PATH restores them, shows them in a table
(checked against what the last run left) and continues. ``--keep-open`` leaves the channel
open at the end, so the next run restores it, pays on and settles.

The sim ledger itself lives in memory; so that the next run finds the deposits of a channel
left open, the demo saves the ledger's balances of Alice and Bob and the channel's holdings
in ``PATH/demo.json`` (with the two accounts' key seeds) and replays them into the new
ledger (a real chain keeps them by itself).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perun_sim.backend import SimBackend
from rich.table import Table

from perun_core.channel.allocation import Allocation
from perun_core.channel.phase import Phase
from perun_core.client import Channel, Client, LedgerChannelProposal
from perun_core.errors import NotSupportedError, PersistenceError
from perun_core.plugins import load_plugins
from perun_demo.output import balance_table
from perun_demo.payments import pay_all, schedule
from perun_demo.result import DemoResult

if TYPE_CHECKING:
    from rich.console import Console

    from perun_core.channel.types import Asset
    from perun_core.interfaces.wallet import Account

_PARTIES = ("Alice", "Bob")
_DEMO_FILE = "demo.json"
_DEMO_FORMAT = 1


def check_durable_options(
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


async def run_durable(  # noqa: C901 - the demo's script, step by step, as the user reads it on screen
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
    root.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - one directory at start-up, before any channel runs
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
                plan = schedule(rng, payments, deposit, False)
                net_to_bob = await pay_all(console, ch_a, ch_b, plan)
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
    table = balance_table(
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
