"""``perun demo --app``: tic-tac-toe and HTLC sub-channels on the sim ledger, cooperative and
forced on the ledger; the exit status and the printed balances."""

from __future__ import annotations

import asyncio
import re

import pytest
from rich.console import Console

from perun_core.cli import main
from perun_core.errors import NotSupportedError

pytest.importorskip("perun_apps", reason="perun demo --app needs perun-apps")

from perun_demo.app_run import check_app_options, run_app_demo
from perun_demo.result import DemoOptionError


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # keep rich from folding the lines checked


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["demo", "--app", *args]) == 0
    return capsys.readouterr().out


def _balances(out: str, alice: int, bob: int, before: int = 10_000) -> None:
    """The balance table shows these final balances, each as expected (✔)."""
    assert re.search(rf"│ Alice │\s+{before} │\s+{alice} │\s+{alice} │\s+✔ │", out), out
    assert re.search(rf"│ Bob   │\s+{before} │\s+{bob} │\s+{bob} │\s+✔ │", out), out


def test_tictactoe_game_pays_the_winner_through_the_sub_channel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _run(capsys, "tictactoe")
    assert "a stake of 100 each" in out
    assert "Alice wins: the final state pays Alice the pot of 200 (200 / 0)" in out
    assert "game sub-channel settled into the payment channel: Alice 1100, Bob 900" in out
    _balances(out, 10100, 9900)
    assert "demo OK: tictactoe, 5 app updates" in out


def test_tictactoe_dispute_forces_the_winning_move(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, "tictactoe", "--dispute")
    assert "Alice's move is not signed" in out
    assert "Alice registers the tree: the payment channel with the game at v4" in out
    assert "Alice forces her move on the ledger (progress, signed by her alone): v5" in out
    assert "Bob's client adopted the forced state v5" in out
    _balances(out, 10100, 9900)
    assert "demo OK" in out


def test_htlc_claim_settles_into_the_payment_channel(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, "htlc", "--deposit", "500")
    assert "Alice locks 50 to Bob's hash" in out
    assert "HTLC sub-channel settled into the payment channel: Alice 450, Bob 550" in out
    _balances(out, 4950, 5050, before=5000)


def test_htlc_dispute_claims_before_and_refunds_after_the_deadline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _run(capsys, "htlc", "--dispute")
    assert "Bob forces his claim of payment 1 on the ledger before its deadline" in out
    assert re.search(r"Alice's refund of payment 2 before its deadline: refused by the app", out)
    assert re.search(r"Bob's claim of payment 2 after its deadline: refused by the app", out)
    assert "Alice forces the refund of payment 2: v1, final, Alice keeps 50" in out
    _balances(out, 9900, 10100)  # payment 1 (100) claimed, payment 2 (50) refunded


def test_app_demo_result_counts_the_updates_and_the_outcome() -> None:
    result = asyncio.run(
        run_app_demo("tictactoe", deposit=300, dispute=True, console=Console(quiet=True))
    )
    assert result.ok and result.payments == 5  # four moves off-chain, one forced
    assert result.net_to_bob == -30  # Bob lost his stake of a tenth of 300
    assert result.final == result.expected == {"Alice": 3030, "Bob": 2970}


def test_app_demo_options_are_checked() -> None:
    with pytest.raises(DemoOptionError, match="tictactoe, htlc"):
        check_app_options("chess")
    with pytest.raises(NotSupportedError, match="--bus"):
        check_app_options("htlc", bus_name="tcp")
    with pytest.raises(NotSupportedError, match="--watchtower"):
        check_app_options("htlc", watchtower=True)
    with pytest.raises(DemoOptionError, match="at least 20"):
        asyncio.run(run_app_demo("htlc", deposit=10, console=Console(quiet=True)))


def test_cli_app_demo_refuses_an_unknown_app(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--app", "chess"]) == 2
    assert "--app is one of tictactoe, htlc, not 'chess'" in capsys.readouterr().err
