"""``perun demo`` as a user meets it: bad numbers, the help, quiet and verbose runs, and the
transaction table on an 80-column terminal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from perun_demo.output import short_hash, tx_table
from perun_demo.result import MAX_DEPOSIT, DemoOptionError
from perun_demo.run import run_demo
from rich.console import Console

from perun_core.channel.types import Address
from perun_core.cli import main
from perun_core.interfaces.chain import LedgerTransaction


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perun_core.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--payments", "-3"], "argument --payments: must be 0 or more, not -3"),
        (["--deposit", "0"], "argument --deposit: must be between 1 and 1e+30, not 0"),
        (["--deposit", "-5"], "argument --deposit: must be 0 or more, not -5"),
        (["--deposit", str(MAX_DEPOSIT + 1)], "argument --deposit: must be between 1 and"),
        (["--payments", "many"], "argument --payments: not a whole number: 'many'"),
    ],
)
def test_numbers_out_of_range_are_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", *args])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"payments": -1}, "--payments must be 0 or more"),
        ({"deposit": 0}, "--deposit must be between 1 and"),
        ({"dispute": True, "payments": 0}, "--dispute needs at least one payment"),
    ],
)
def test_the_library_call_refuses_the_same_numbers(kwargs: dict[str, int], needle: str) -> None:
    with pytest.raises(DemoOptionError, match=needle):
        asyncio.run(run_demo(console=Console(quiet=True), **kwargs))  # type: ignore[arg-type]


def test_every_requested_payment_is_made_and_counted() -> None:
    result = asyncio.run(run_demo(payments=7, deposit=1, seed=3, console=Console(quiet=True)))
    assert result.ok and result.payments == 7
    assert abs(result.net_to_bob) <= 1  # with a deposit of 1 every amount is 1


def test_zero_payments_open_and_settle_a_channel() -> None:
    result = asyncio.run(run_demo(payments=0, console=Console(quiet=True)))
    assert result.ok and result.payments == 0 and result.final == result.initial


def test_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "Alice and Bob open a channel" in text and "--dispute" in text
    assert "--log-level" in text and "-q, --quiet" in text
    for markup in ("``", ":mod:", ":class:", ":meth:", ".. "):
        assert markup not in text, markup


def test_a_successful_dispute_prints_no_log_lines_unless_asked() -> None:
    plain = _demo("--dispute", "--payments", "6", "--seed", "5")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "Alice's watchtower refuted with v6" in plain.stdout
    assert "WARNING" not in plain.stdout + plain.stderr
    verbose = _demo("--dispute", "--payments", "6", "--seed", "5", "-v")
    assert verbose.returncode == 0, verbose.stdout + verbose.stderr
    assert "WARNING perun.watcher" in verbose.stderr  # the refutation, logged
    assert "refuting with v6" in verbose.stderr


def test_quiet_prints_only_the_verdict() -> None:
    proc = _demo("--dispute", "--payments", "4", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [proc.stdout.strip()]
    assert proc.stdout.startswith("demo OK: 4 payments in ")
    assert proc.stderr == ""


def _txs(n: int) -> tuple[list[LedgerTransaction], dict[Address, str]]:
    alice, bob, deployer = (Address(bytes([i]) * 20) for i in (1, 2, 3))
    ops = ["deploy AssetHolderERC20", "approve", "deposit", "concludeFinal", "withdraw"]
    txs = [
        LedgerTransaction(
            operation=ops[i % len(ops)],
            sender=(deployer, alice, bob)[i % 3],
            tx_hash="0x" + f"{i:02x}" * 32,
            gas_used=21_000 + 12_345 * i,
        )
        for i in range(n)
    ]
    return txs, {alice: "Alice", bob: "Bob"}


@pytest.mark.parametrize("width", [80, 100])
def test_the_transaction_table_fits_a_narrow_terminal(width: int) -> None:
    txs, names = _txs(12)
    console = Console(width=width, record=True, color_system=None)
    console.print(tx_table(txs, names, console))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= width
    assert sum(short_hash(t.tx_hash) in "\n".join(lines) for t in txs) == len(txs)
    assert "gas in total: " in "\n".join(lines)


def test_a_wide_terminal_shows_full_hashes() -> None:
    txs, names = _txs(3)
    console = Console(width=200, record=True, color_system=None)
    console.print(tx_table(txs, names, console))
    text = console.export_text()
    assert all(t.tx_hash in text for t in txs)
    assert short_hash(txs[0].tx_hash) == "0x" + "00" * 4 + "…" + "00" * 4


def test_over_tcp_the_other_party_pays_when_the_payer_cannot() -> None:
    """With a deposit of 1 Bob soon has nothing left to pay in the dispute's second half:
    Alice pays instead, and every payment is still made."""
    proc = _demo("--bus", "tcp", "--dispute", "--deposit", "1", "--payments", "6", "--seed", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 payments done; channel at version 6" in proc.stdout
    assert "demo OK: 6 payments" in proc.stdout
