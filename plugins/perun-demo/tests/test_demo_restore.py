"""`perun demo --persister leveldb|rocksdb --db PATH`: a channel left open survives the process.

Two runs of the demo command, each its own OS process, on one directory: the first opens a
channel, pays and leaves it open (``--keep-open``); the second restores it from the store,
shows it, pays on and settles. The exit code reflects the on-ledger outcome.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perun_core.plugins import load_plugins


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # keep rich from wrapping the lines we parse
    return subprocess.run(
        [sys.executable, "-m", "perun_core.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def _needs(name: str) -> None:
    if name not in load_plugins().persisters:
        pytest.skip(f"needs the {name} persister (perun-{name})")


def _table_row(out: str, who: str) -> list[str]:
    """The cells of ``who``'s row in the balance table."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if cells and cells[0] == who:
            return cells
    raise AssertionError(f"no row for {who} in:\n{out}")


@pytest.mark.parametrize("persister", ["leveldb", "rocksdb"])
def test_a_channel_left_open_is_restored_by_the_next_run_and_settles(
    persister: str, tmp_path: Path
) -> None:
    _needs(persister)
    db = tmp_path / "demo-db"
    # Fixed seeds: with random amounts both runs' payments could cancel out exactly.
    first = _demo(
        "--persister", persister, "--db", str(db), "--keep-open", "--payments", "7", "--seed", "1"
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "left open" in first.stdout and "demo OK" in first.stdout
    saved = json.loads((db / "demo.json").read_text())
    [(cid, left)] = saved["channels"].items()
    assert left["version"] == 7
    # Deposits are on the ledger, in the channel: each account is down by its deposit.
    assert _table_row(first.stdout, "Alice")[1:3] == ["10000", "9000"]

    second = _demo("--persister", persister, "--db", str(db), "--payments", "5", "--seed", "2")
    assert second.returncode == 0, second.stdout + second.stderr
    out = second.stdout
    assert "channels restored from" in out
    restored = next(line for line in out.splitlines() if f"0x{cid[:16]}" in line)
    assert "ACTING" in restored and "│       7 │" in restored and "✔" in restored
    assert "channel at version 12" in out and "settled" in out and "demo OK" in out
    saved = json.loads((db / "demo.json").read_text())
    assert saved["channels"] == {} and saved["ledger"]["holdings"] == []
    # Both runs' payments moved funds: the ledger shows their sum, conserved.
    alice, bob = _table_row(out, "Alice"), _table_row(out, "Bob")
    assert alice[2] == alice[3] and bob[2] == bob[3]
    assert int(alice[2]) + int(bob[2]) == 20_000 and alice[2] != "10000"
    assert int(bob[2]) - 10_000 == saved["settled_net_to_bob"]


@pytest.mark.parametrize(
    ("shift", "complete", "code", "mark"),
    [
        # The last run claims a newer state than the store holds: restore lost something.
        (+1, True, 1, "✘"),
        # A run interrupted after recording the channel at an older version: fine.
        (-1, False, 0, "?"),
        # ... but never at a newer one.
        (+1, False, 1, "✘"),
    ],
)
def test_a_restored_channel_is_checked_against_what_the_last_run_left(
    tmp_path: Path, shift: int, complete: bool, code: int, mark: str
) -> None:
    _needs("leveldb")
    db = tmp_path / "demo-db"
    first = _demo("--persister", "leveldb", "--db", str(db), "--keep-open", "--payments", "4")
    assert first.returncode == 0, first.stdout + first.stderr
    path = db / "demo.json"
    saved = json.loads(path.read_text())
    [left] = saved["channels"].values()
    assert left["complete"] is True
    left["version"] += shift
    left["complete"] = complete
    path.write_text(json.dumps(saved))
    second = _demo("--persister", "leveldb", "--db", str(db), "--payments", "2")
    assert second.returncode == code, second.stdout + second.stderr
    restored = next(line for line in second.stdout.splitlines() if "│ ACTING" in line)
    assert restored.rstrip(" │").endswith(mark), restored
    assert ("is not as left" in second.stdout) == (code == 1)
    assert ("MISMATCH" in second.stdout) == (code == 1)


def test_durable_demo_options_give_clear_errors(tmp_path: Path) -> None:
    _needs("leveldb")
    cases = [
        (["--persister", "leveldb"], "give it a directory with --db PATH"),
        (["--db", str(tmp_path / "m")], "--db needs a durable persister"),
        (["--keep-open"], "--keep-open needs --db PATH"),
        (["--persister", "leveldb", "--db", str(tmp_path / "d"), "--dispute"], "drop --db"),
    ]
    for args, message in cases:
        proc = _demo(*args)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
    db = tmp_path / "demo-db"
    assert _demo("--persister", "leveldb", "--db", str(db), "--keep-open").returncode == 0
    other = _demo("--persister", "rocksdb", "--db", str(db))
    assert other.returncode == 2
    assert "holds leveldb stores; run with --persister leveldb" in other.stderr
    (db / "demo.json").write_text("{not json")
    broken = _demo("--persister", "leveldb", "--db", str(db))
    assert broken.returncode == 2 and "cannot read" in broken.stderr
    (db / "demo.json").unlink()
    orphan = _demo("--persister", "leveldb", "--db", str(db))
    assert orphan.returncode == 2 and "holds channel stores but no demo.json" in orphan.stderr


def test_a_demo_killed_while_paying_is_restored_by_the_next_run(tmp_path: Path) -> None:
    """SIGKILL the first run in the middle of its payments; the next run restores the
    channel at whatever version both stores reached, pays on, settles, and the ledger is
    right."""
    _needs("leveldb")
    db = tmp_path / "demo-db"
    env = {**os.environ, "COLUMNS": "200"}
    args = ["--persister", "leveldb", "--db", str(db), "--keep-open", "--payments", "100000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "perun_core.cli", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "open and funded" in line:
                break
        else:
            raise AssertionError("the first run never opened its channel")
        time.sleep(1.5)  # in the middle of the payments (100,000 of them: never done by then)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    left = json.loads((db / "demo.json").read_text())
    [entry] = left["channels"].values()
    assert entry["complete"] is False and entry["version"] == 0

    second = _demo("--persister", "leveldb", "--db", str(db), "--payments", "3")
    assert second.returncode == 0, second.stdout + second.stderr
    restored = next(line for line in second.stdout.splitlines() if "│ ACTING" in line)
    cells = [c.strip() for c in restored.split("│") if c.strip()]
    assert int(cells[2]) > 0 and cells[-1] == "?"  # payments of the killed run survived
    assert "settled" in second.stdout and "demo OK" in second.stdout
    alice, bob = _table_row(second.stdout, "Alice"), _table_row(second.stdout, "Bob")
    assert alice[2] == alice[3] and bob[2] == bob[3]
    assert int(alice[2]) + int(bob[2]) == 20_000
