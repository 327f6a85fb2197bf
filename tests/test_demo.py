"""`perun demo` end to end: the exit code reflects the on-ledger outcome."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from rich.console import Console

from perun_core.cli import main
from perun_core.demo import run_demo


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
