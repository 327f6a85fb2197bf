"""The demo as a library call: :func:`run_demo` picks the flow its options ask for.

- Alice and Bob in this process on a chain backend's development ledger
  (:mod:`perun_demo.one_process`): sim in memory, ``eth`` a fresh anvil with the contracts;
- Bob in a second OS process over TCP (:mod:`perun_demo.two_processes`);
- durable stores that survive the process (:mod:`perun_demo.durable`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from perun_core.errors import NotSupportedError
from perun_core.interfaces.chain import LedgerTransaction
from perun_core.plugins import load_plugins
from perun_demo.durable import check_durable_options, run_durable
from perun_demo.one_process import run_one_process
from perun_demo.result import DemoOptionError, DemoResult, check_amounts
from perun_demo.two_processes import run_two_processes

__all__ = ["DemoResult", "run_demo"]


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
    config: Mapping[str, Any] | None = None,
) -> DemoResult:
    """Run the demo scenario and return what happened.

    Args:
        payments: how many payments (alternating, random amounts); 0 or more.
        deposit: each party's deposit, at least 1.
        seed: seed of the payment amounts.
        backend_name: chain backend plugin.
        bus_name: bus plugin (``tcp``: Bob in a second process).
        persister_name: persister plugin; a durable one needs ``db``.
        dispute: Bob registers a stale state; Alice's watchtower refutes it.
        db: directory of the durable stores; channels found there are restored.
        keep_open: leave the channel open at the end (needs ``db``).
        console: where to print (default: the terminal).
        config: a ``[perun]`` configuration table (``perun --config``): the settings of
            the bus and persister (``[perun.<name>]``), the client's ``[perun.client]``;
            its part names are replaced by the three names above.

    Raises:
        DemoOptionError: a negative ``payments``, a ``deposit`` out of range, or
            ``dispute`` without a payment (no old state to register).
        NotSupportedError: ``bus_name="tcp"`` with a backend other than ``sim`` that cannot
            share its ledger; a durable persister without ``db``; ``db`` with the memory
            persister, another bus than ``local`` or another backend than ``sim``;
            ``keep_open`` without ``db`` or with ``dispute``.
        PersistenceError: ``db`` holds stores the demo did not write, its ``demo.json`` is
            unreadable, or a store is locked (``StoreLockedError``) or damaged.
        PluginNotFoundError: a named plugin is not installed.
        PeerProcessError: with ``bus_name="tcp"``, Bob's process failed or died.
        ChainError: the backend's development ledger could not be started or prepared
            (``eth``: anvil missing or a deployment failed).
    """
    check_amounts(payments, deposit)
    if dispute and payments == 0:
        raise DemoOptionError("--dispute needs at least one payment: an old state to register")
    console = console or Console()
    rng = random.Random(seed)
    if db is not None or keep_open:
        check_durable_options(backend_name, bus_name, persister_name, db, keep_open, dispute)
        assert db is not None
        return await run_durable(
            payments=payments,
            deposit=deposit,
            rng=rng,
            persister_name=persister_name,
            root=Path(db),
            keep_open=keep_open,
            console=console,
        )
    plugins = load_plugins()
    if plugins.persisters.part_class(persister_name).durable:
        raise NotSupportedError(
            f"--persister {persister_name} stores channels on disk: give it a directory "
            "with --db PATH"
        )
    if bus_name == "tcp":
        return await run_two_processes(
            payments=payments,
            deposit=deposit,
            rng=rng,
            backend_name=backend_name,
            persister_name=persister_name,
            dispute=dispute,
            console=console,
        )
    backend_cls = plugins.chain(backend_name)
    plugins.bus(bus_name)  # PluginNotFoundError before the ledger starts
    table = {
        **(config or {}),
        "backend": backend_name,
        "bus": bus_name,
        "persister": persister_name,
    }
    txs: list[LedgerTransaction] = []
    # The backend's development ledger: sim in memory, eth a fresh anvil with our contracts.
    async with backend_cls.dev_ledger(on_transaction=txs.append) as dev:
        return await run_one_process(
            dev,
            plugins,
            table,
            txs,
            payments=payments,
            deposit=deposit,
            rng=rng,
            names=(backend_name, bus_name, persister_name),
            dispute=dispute,
            console=console,
        )
