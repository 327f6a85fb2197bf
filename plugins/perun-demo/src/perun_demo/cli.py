"""``perun demo``: the command line of the demo (registered by :mod:`perun_demo.plugin`).

This module stays light (argparse only): ``perun --help`` imports it to build the parser.
The demo itself, with rich and the client, is imported when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Final

HELP: Final = "run the two-party demo: open a channel, pay, settle"

DESCRIPTION: Final = """\
Alice and Bob open a channel, pay each other and settle. The exit status is 0 only if
the final on-ledger balances equal the initial ones moved by exactly the payments made.

By default both run in this process on the simulated ledger (sim), the in-process bus
(local) and in-memory storage (memory). Other combinations:

  --backend eth        a local anvil node with the Perun contracts, started and stopped
                       by the demo; every ledger transaction is listed with its gas
  --bus tcp            Bob runs in a second OS process, over an authenticated TCP link
  --dispute            Bob registers an old state; Alice's watchtower refutes it
  --app tictactoe      Alice and Bob play tic-tac-toe for a stake each in a sub-channel;
                       with --dispute Bob stalls and Alice forces her winning move on chain
  --app htlc           Alice pays Bob in a hash-time-locked sub-channel, Bob claims with
                       the secret; with --dispute Bob forces his claim before the deadline
                       and Alice the refund of a second payment after its deadline
  --persister leveldb --db PATH [--keep-open]
                       the channels are stored under PATH and survive the process:
                       run the same command again to restore them and go on

With --config PATH (a perun.toml, see the guide) the parts it names are the defaults and
their tables configure them (the bus's, the persister's, [perun.client]).

Log records (a refuted registration, a settlement that falls back to the ledger) are
part of the story the demo tells, so it shows only errors unless -v or --log-level
asks for more; -q prints nothing but the verdict."""


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _deposit(text: str) -> int:
    from perun_demo.result import MAX_DEPOSIT

    value = _count(text)
    if not 1 <= value <= MAX_DEPOSIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_DEPOSIT:.0e}, not {value}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to the ``perun demo`` parser."""
    parser.description = DESCRIPTION
    parser.add_argument(
        "--payments", type=_count, default=20, metavar="N", help="payments in total (default 20)"
    )
    parser.add_argument(
        "--deposit",
        type=_deposit,
        default=1_000,
        metavar="AMOUNT",
        help="each party's deposit (default 1000)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed of the amounts")
    parser.add_argument(
        "--backend",
        default=None,
        metavar="NAME",
        help="chain backend plugin (default: perun.backend of --config, else sim)",
    )
    parser.add_argument(
        "--bus",
        default=None,
        metavar="NAME",
        help="bus plugin (default: perun.bus of --config, else local)",
    )
    parser.add_argument(
        "--persister",
        default=None,
        metavar="NAME",
        help="persister plugin (default: perun.persister of --config, else memory); "
        "leveldb and rocksdb need --db",
    )
    parser.add_argument(
        "--db", default=None, metavar="PATH", help="directory of the durable stores"
    )
    parser.add_argument(
        "--keep-open",
        action="store_true",
        help="with --db: leave the channel open for the next run to restore",
    )
    parser.add_argument(
        "--dispute",
        action="store_true",
        help="Bob registers a stale state; Alice's watchtower refutes it",
    )
    parser.add_argument(
        "--app",
        default=None,
        metavar="NAME",
        help="play an app in a sub-channel instead of paying: tictactoe or htlc (needs perun-apps)",
    )
    parser.add_argument(
        "--watchtower",
        action="store_true",
        help="a remote watchtower in its own process refutes while Alice is offline "
        "(needs perun-watchtower)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo with the parsed options; 0 if the ledger shows exactly the payments."""
    from rich.console import Console

    from perun_core.cli import config_of, log_level
    from perun_demo.run import run_demo

    # --config names the parts and their settings; the options above win over it.
    config = config_of(args)
    table = dict(config.table) if config is not None else {}
    backend = args.backend or (config.backend if config is not None else "sim")
    bus = args.bus or (config.bus if config is not None else "local")
    persister = args.persister or (config.persister if config is not None else "memory")
    quiet = bool(getattr(args, "quiet", False))
    # The narrative reports the expected warnings itself; show log records only on request.
    perun_log = logging.getLogger("perun")
    previous = perun_log.level
    if log_level(args) is None:
        perun_log.setLevel(logging.ERROR)
    if args.app is not None:
        return _run_app(args, backend, (bus, persister), quiet, previous)
    if args.watchtower:
        from perun_demo.watchtower import run_watchtower_demo

        try:
            ok = asyncio.run(run_watchtower_demo(backend, Console(quiet=quiet)))
        finally:
            perun_log.setLevel(previous)
        return 0 if ok else 1
    try:
        result = asyncio.run(
            run_demo(
                payments=args.payments,
                deposit=args.deposit,
                seed=args.seed,
                backend_name=backend,
                bus_name=bus,
                persister_name=persister,
                dispute=args.dispute,
                db=args.db,
                keep_open=args.keep_open,
                console=Console(quiet=quiet),
                config=table,
            )
        )
    finally:
        perun_log.setLevel(previous)
    verdict = "[green]OK[/]" if result.ok else "[red]MISMATCH[/]"
    Console().print(f"demo {verdict}: {result.payments} payments in {result.seconds:.2f}s")
    return 0 if result.ok else 1


def _run_app(
    args: argparse.Namespace,
    backend: str,
    parts: tuple[str, str],
    quiet: bool,
    previous_level: int,
) -> int:
    """``perun demo --app NAME``: 0 if the ledger shows exactly what the app's final states
    pay."""
    from rich.console import Console

    from perun_demo.app_run import check_app_options, run_app_demo

    try:
        check_app_options(
            args.app,
            bus_name=parts[0],
            persister_name=parts[1],
            db=args.db,
            keep_open=args.keep_open,
            watchtower=args.watchtower,
        )
        result = asyncio.run(
            run_app_demo(
                args.app,
                deposit=args.deposit,
                backend_name=backend,
                dispute=args.dispute,
                console=Console(quiet=quiet),
            )
        )
    finally:
        logging.getLogger("perun").setLevel(previous_level)
    verdict = "[green]OK[/]" if result.ok else "[red]MISMATCH[/]"
    Console().print(
        f"demo {verdict}: {args.app}, {result.payments} app updates, in {result.seconds:.2f}s"
    )
    return 0 if result.ok else 1
