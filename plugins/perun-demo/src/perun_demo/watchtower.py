"""``perun demo --watchtower``: a remote watchtower protects Alice while she is offline.

The tower runs in its own process (``python -m perun_watchtower serve``) with its own
account and LevelDB store, Alice in another; Mallory (this process) opens a channel with
Alice and pays her. Alice's states reach the tower, which acknowledges each after its durable
write. Then Alice's process is killed; Mallory registers every older state she holds; the
tower refutes; days of ledger time later Alice comes back and withdraws exactly her latest
balance. sim: the ledger is served by this process; ``--backend eth``: anvil with our
contracts.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from perun_sim.backend import SimBackend
from perun_sim.clock import SimClock
from perun_sim.ledger import SimLedger
from perun_sim.server import LedgerServer

from perun_core.plugins import load_plugins

if TYPE_CHECKING:
    from perun_watchtower.testing import DisputeResult
    from rich.console import Console


async def run_watchtower_demo(backend_name: str, console: Console) -> bool:
    """Run the scene on ``backend_name``; ``True`` if no funds were lost."""
    try:
        from perun_watchtower.testing import offline_client_dispute  # noqa: PLC0415 - optional
    except ImportError:
        console.print(
            "[red]perun demo --watchtower needs perun-watchtower: pip install perun-watchtower[/]"
        )
        return False
    plugins = load_plugins()
    plugins.bus("tcp")  # PluginNotFoundError (install perun-tcp) before any work
    plugins.persister("leveldb")
    console.print(
        "[bold]Watchtower demo[/]: Mallory pays Alice; Alice hands every state to a remote "
        "tower, then goes offline (SIGKILL); Mallory registers her older states."
    )
    with tempfile.TemporaryDirectory(prefix="perun-tower-demo-") as tmp:
        root = Path(tmp)
        if backend_name == "sim":
            async with LedgerServer(SimLedger(clock=SimClock.manual())) as server:
                url = await server.listen_tcp("127.0.0.1", 0)
                backend = SimBackend.from_config({"url": url})
                try:
                    await backend.connect()
                    console.print(f"ledger: sim served at {url}")
                    r = await offline_client_dispute(
                        backend, peer_ledger={"ledger_url": url}, chain={"url": url}, root=root
                    )
                finally:
                    await backend.close()
        else:
            cls = plugins.chain(backend_name)
            async with cls.demo_ledger() as dev:
                chain = dict(dev.peer_config())
                console.print(f"ledger: {backend_name} development ledger")
                r = await offline_client_dispute(
                    dev,
                    peer_ledger={"backend": backend_name, "backend_config": chain},
                    chain=chain,
                    root=root,
                )
    return _report(console, r)


def _report(console: Console, r: DisputeResult) -> bool:
    console.print(
        f"Mallory registered v{r.registered_versions[0]}; the tower refuted with "
        f"v{r.latest_version} (ledger registrations: {r.registered_versions}); "
        f"{r.stale_refused} later stale registrations were refused by the ledger."
    )
    expected = r.alice_initial - r.alice_deposit + r.alice_latest_balance
    ok = r.alice_final == expected and (
        r.alice_final + r.mallory_final == r.alice_initial + r.mallory_initial
    )
    colour = "green" if ok else "red"
    console.print(
        f"Alice came back 3 days later and withdrew her latest balance: ledger balance "
        f"{r.alice_final} (expected {expected}); funds lost: "
        f"[{colour}]{expected - r.alice_final}[/]"
    )
    sys.stdout.flush()
    return ok
