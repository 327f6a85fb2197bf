"""``perun demo --backend eth`` end to end: anvil from ``contracts/node_modules``, our
contracts deployed, the demo's flows, and the table of every transaction with its gas.

Skipped without anvil locally; in CI (``CI`` set) a missing anvil fails the tests.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
from perun_eth.anvil import AnvilNotFoundError, find_anvil

# One table row: "│  7 │ approve │ Alice │ 0x… │ 45,904 │".
_ROW = re.compile(
    r"^│\s+(\d+) │ ([^│]+?)\s+│ (\S+)\s+│ (0x[0-9a-f]{64}) │\s+([\d,]+) │$", re.MULTILINE
)
_DEPLOYED = (
    "Adjudicator",
    "AssetHolderETH",
    "PerunToken",
    "AssetHolderERC20",
    "TrivialApp",
    "PaymentApp",
)


@dataclass(frozen=True)
class _Tx:
    operation: str
    sender: str
    tx_hash: str
    gas: int


@pytest.fixture(autouse=True)
def _anvil_installed() -> None:
    try:
        find_anvil()
    except AnvilNotFoundError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))


def _env() -> dict[str, str]:
    # Wide enough that rich never folds a transaction hash; unbuffered for the Ctrl-C test.
    return {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perun_core.cli", "demo", "--backend", "eth", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )


def _transactions(out: str) -> list[_Tx]:
    rows = _ROW.findall(out)
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1)), out
    return [_Tx(op, who, h, int(gas.replace(",", ""))) for _, op, who, h, gas in rows]


def _deployments(txs: list[_Tx]) -> int:
    """How many transactions deploy contracts (the framework's, then any installed apps')."""
    return sum(1 for t in txs if t.operation.startswith("deploy "))


def _check_common(out: str, txs: list[_Tx]) -> None:
    """Deployments first, every hash distinct, real gas figures, totals adding up."""
    assert [t.operation for t in txs[:6]] == [f"deploy {n}" for n in _DEPLOYED], out
    deployed = _deployments(txs)
    assert all(t.operation.startswith("deploy app ") for t in txs[6:deployed]), out
    assert len({t.sender for t in txs[:deployed]}) == 1  # one deployer key
    assert len({t.tx_hash for t in txs}) == len(txs)
    assert all(t.gas > 21_000 for t in txs)  # each ran contract code
    for who in ("Alice", "Bob"):
        # Each funds its side: approve the token holder, then deposit.
        assert [t.operation for t in txs if t.sender == who][:2] == ["approve", "deposit"]
        assert ("withdraw", who) in {(t.operation, t.sender) for t in txs}
        total = sum(t.gas for t in txs if t.sender == who)
        assert f"{who} {total:,}" in out, out
    # The token balances moved by exactly the payments: the demo's own check.
    assert re.search(r"│ Alice │\s+10000 │\s+(\d+) │\s+\1 │\s+✔ │", out), out
    assert re.search(r"│ Bob   │\s+10000 │\s+(\d+) │\s+\1 │\s+✔ │", out), out
    assert "demo OK" in out


def test_cli_demo_on_anvil_prints_every_transaction_with_its_gas() -> None:
    proc = _demo("--payments", "8", "--seed", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "on eth / local / memory" in out
    txs = _transactions(out)
    _check_common(out, txs)
    # Cooperative settlement: one concludeFinal, no dispute.
    deployed = _deployments(txs)
    ops = [t.operation for t in txs[deployed:]]
    assert ops.count("concludeFinal") == 1 and "register" not in ops, out
    assert len(txs) == deployed + 2 + 2 + 1 + 2


def test_cli_demo_on_anvil_with_a_dispute() -> None:
    proc = _demo("--payments", "12", "--seed", "5", "--dispute")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"Bob registers the stale state v\d+ .* instead of v12", out), out
    assert "Alice's watchtower refuted with v12" in out
    assert "watchtower refutations: 1" in out
    txs = _transactions(out)
    _check_common(out, txs)
    after_funding = [(t.operation, t.sender) for t in txs[_deployments(txs) + 4 :]]
    # Bob's stale registration comes first, Alice's refutation (a newer register) next,
    # then the conclusion after the challenge; no cooperative concludeFinal.
    assert after_funding[:2] == [("register", "Bob"), ("register", "Alice")], out
    assert "conclude" in {op for op, _ in after_funding}
    assert "concludeFinal" not in {op for op, _ in after_funding}


def test_cli_demo_on_anvil_with_bob_in_another_process_over_tcp() -> None:
    # perun-tcp is another distribution: the plugin-eth tox env has eth alone.
    pytest.importorskip("perun_tcp", reason="the two-process demo needs perun-tcp")
    proc = _demo("--bus", "tcp", "--payments", "8", "--seed", "3", "--dispute")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"\(pid \d+, tcp://127\.0\.0\.1:\d+\).*on eth / tcp / memory", out), out
    assert "Alice's watchtower refuted with v8" in out
    assert "watchtower refutations: 1" in out
    txs = _transactions(out)
    # This process reports the deployments and Alice's transactions; Bob sends his own.
    deployed = _deployments(txs)
    assert {t.sender for t in txs[deployed:]} == {"Alice"}, out
    assert [t.operation for t in txs[deployed : deployed + 2]] == ["approve", "deposit"], out
    assert "demo OK" in out


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            kids |= {int(k) for k in f.read().split()}
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_during_the_demo_stops_anvil() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perun_core.cli",
            "demo",
            "--backend",
            "eth",
            "--payments",
            "100000",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
        # A parent that ignores SIGINT (a background job) would pass that on: Python then
        # installs no KeyboardInterrupt, and the demo would ignore our Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 30
        anvil: set[int] = set()
        while not anvil and time.monotonic() < deadline:
            anvil = {k for k in _children(proc.pid) if "anvil" in _cmdline(k)}
            time.sleep(0.05)
        assert anvil, "the demo did not start anvil"
        time.sleep(1.5)  # into the deployment or the payments
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        assert proc.returncode == 130  # "demo interrupted", not a traceback or "demo OK"
        assert not any(_alive(pid) for pid in anvil)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return ""


def _app_demo(*args: str) -> tuple[str, list[_Tx]]:
    pytest.importorskip("perun_apps", reason="perun demo --app needs perun-apps")
    proc = _demo("--app", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    txs = _transactions(out)
    ops = [t.operation for t in txs]
    assert {"deploy app tictactoe", "deploy app htlc"} <= set(ops), out
    assert "demo OK" in out
    return out, txs[_deployments(txs) + 4 :]  # after the deployments and the funding


def _app_balances(out: str, alice: int, bob: int) -> None:
    assert re.search(rf"│ Alice │\s+10000 │\s+{alice} │\s+{alice} │\s+✔ │", out), out
    assert re.search(rf"│ Bob   │\s+10000 │\s+{bob} │\s+{bob} │\s+✔ │", out), out


def test_cli_demo_tictactoe_on_anvil_settles_off_chain() -> None:
    out, txs = _app_demo("tictactoe")
    _app_balances(out, 10100, 9900)  # Alice won both stakes of 100
    assert [t.operation for t in txs] == ["concludeFinal", "withdraw", "withdraw"], out


def test_cli_demo_tictactoe_on_anvil_forces_the_winning_move() -> None:
    out, txs = _app_demo("tictactoe", "--dispute")
    assert "Alice forces her move on the ledger" in out
    _app_balances(out, 10100, 9900)
    ops = [(t.operation, t.sender) for t in txs]
    assert ops[:2] == [("register", "Alice"), ("progress", "Alice")], out
    assert ("conclude", "Alice") in ops or ("conclude", "Bob") in ops, out


def test_cli_demo_htlc_on_anvil() -> None:
    out, txs = _app_demo("htlc")
    _app_balances(out, 9900, 10100)  # Bob claimed 100
    assert [t.operation for t in txs] == ["concludeFinal", "withdraw", "withdraw"], out


def test_cli_demo_htlc_on_anvil_forces_a_claim_and_a_refund() -> None:
    out, txs = _app_demo("htlc", "--dispute")
    assert out.count("refused by the app, nothing sent") == 2, out
    _app_balances(out, 9900, 10100)  # payment 1 claimed, payment 2 refunded
    ops = [(t.operation, t.sender) for t in txs]
    assert ops[:3] == [("register", "Bob"), ("progress", "Bob"), ("progress", "Alice")], out
