"""`perun demo` end to end: the exit code reflects the on-ledger outcome."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

import pytest
from perun_demo.run import run_demo
from rich.console import Console

from perun_core.cli import main
from perun_core.interfaces.chain import LedgerTransaction


def _quiet() -> Console:
    return Console(quiet=True)


def test_demo_payments_move_exactly_the_paid_amounts() -> None:
    result = asyncio.run(run_demo(payments=40, seed=11, console=_quiet()))
    assert result.ok
    assert result.final["Alice"] == result.initial["Alice"] - result.net_to_bob
    assert result.final["Bob"] == result.initial["Bob"] + result.net_to_bob
    assert result.net_to_bob != 0


def test_demo_dispute_ends_with_alices_latest_balance() -> None:
    result = asyncio.run(run_demo(payments=20, seed=5, dispute=True, console=_quiet()))
    assert result.ok
    assert result.final == result.expected


def test_cli_demo_exit_code_and_table(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["demo", "--payments", "6", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "on-ledger balances" in out and "Alice" in out and "demo OK" in out
    assert "ledger transactions" not in out  # the sim ledger has no transactions to list


def test_default_demo_ledger_is_the_configless_backend_closed_on_exit() -> None:
    from perun_sim.backend import SimBackend

    class Recording(SimBackend):
        closed = False

        async def close(self) -> None:
            self.closed = True
            await super().close()

    seen: list[LedgerTransaction] = []

    async def scenario() -> Recording:
        async with Recording.demo_ledger(on_transaction=seen.append) as backend:
            assert not backend.closed
            asset = backend.default_assets()[0]
            addr = backend.wallet().new_account().address
            await backend.faucet(addr, asset, 7)
            assert await backend.balance_of(addr, asset) == 7
        return backend

    backend = asyncio.run(scenario())
    assert isinstance(backend, Recording) and backend.closed
    assert seen == []  # a ledger without transactions reports none


def test_cli_unknown_backend_gives_the_documented_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "perun_core.cli", "demo", "--backend", "nosuch"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "No chain backend 'nosuch'. Installed:" in proc.stderr
    assert "pip install perun-nosuch" in proc.stderr
    assert "pip install ./plugins/perun-nosuch" in proc.stderr


def _run_cli_demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # keep rich from wrapping the lines we parse
    return subprocess.run(
        [sys.executable, "-m", "perun_core.cli", "demo", "--bus", "tcp", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def _pids(out: str) -> tuple[int, int]:
    """Alice's and Bob's process IDs as the demo's first line names them."""
    found = re.findall(r"\(pid (\d+), tcp://127\.0\.0\.1:\d+\)", out)
    assert len(found) == 2, out
    return int(found[0]), int(found[1])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_cli_demo_over_tcp_runs_alice_and_bob_as_two_processes() -> None:
    proc = _run_cli_demo("--payments", "30", "--seed", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    alice_pid, bob_pid = _pids(out)
    assert alice_pid != bob_pid
    assert "on sim served at tcp://127.0.0.1:" in out
    assert "30 payments done; channel at version 30" in out
    assert "settled: final state concluded on the ledger and withdrawn" in out
    rows = re.findall(r"│ (Alice|Bob)\s+│\s+(\d+) │\s+(\d+) │\s+(\d+) │\s+✔ │", out)
    assert [r[0] for r in rows] == ["Alice", "Bob"], out
    # the table is the served ledger's account: money moved, none created or lost
    before = sum(int(r[1]) for r in rows)
    after = sum(int(r[2]) for r in rows)
    assert before == after == 20_000 and rows[0][1] != rows[0][2]
    assert "demo OK: 30 payments" in out
    assert _gone(bob_pid)  # the child was ended with the demo


def test_cli_demo_over_tcp_with_a_dispute() -> None:
    proc = _run_cli_demo("--payments", "12", "--seed", "5", "--dispute")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    _, bob_pid = _pids(out)
    assert re.search(r"Bob registers the stale state v\d+ .* instead of v12", out), out
    assert "Alice's watchtower refuted with v12" in out
    assert "watchtower refutations: 1" in out and "demo OK" in out
    assert _gone(bob_pid)


def test_a_backend_that_cannot_share_its_ledger_says_so() -> None:
    # perun demo --bus tcp hands Bob's process the backend's peer_config(); sim serves its
    # ledger instead, other backends without peer_config() are refused with this error.
    from perun_sim import SimBackend

    from perun_core.errors import NotSupportedError

    with pytest.raises(NotSupportedError, match="cannot hand its ledger to another process"):
        SimBackend().peer_config()
