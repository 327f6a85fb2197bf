"""The offline-client campaign on a sim ledger served by its own process.

Alice runs in a child process and hands her states to the tower(s), each a child process
(``python -m perun_watchtower serve``) with its own LevelDB store and account. Alice is
SIGKILLed; Mallory (this process) registers every older state; the tower refutes; Alice
returns days of ledger time later, restores from her LevelDB and withdraws exactly her latest
balance. Processes are ended by their own PIDs only; only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from perun_sim import SimBackend
from perun_watchtower.testing import DisputeResult, offline_client_dispute


@pytest.fixture
async def served_ledger() -> AsyncIterator[str]:
    """A sim ledger with a manual clock served by its own process; yields its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "perun_sim.server",
        "--manual-clock",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "listening on tcp://127.0.0.1:" in line, line
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _run(url: str, root: Path, **kw: object) -> DisputeResult:
    backend = SimBackend.from_config({"url": url})
    try:
        await backend.connect()
        return await offline_client_dispute(
            backend,
            peer_ledger={"ledger_url": url},
            chain={"url": url},
            root=root,
            **kw,  # type: ignore[arg-type]
        )
    finally:
        await backend.close()


def _no_funds_lost(r: DisputeResult) -> None:
    # Alice gets exactly her latest balance; Mallory exactly hers; nothing else moved.
    assert r.alice_final == r.alice_initial - r.alice_deposit + r.alice_latest_balance
    total_before = r.alice_initial + r.mallory_initial
    assert r.alice_final + r.mallory_final == total_before
    assert r.registered_versions[0] < r.latest_version == r.registered_versions[-1]


async def test_tower_refutes_while_alice_is_killed(served_ledger: str, tmp_path: Path) -> None:
    r = await _run(served_ledger, tmp_path)
    _no_funds_lost(r)
    # Mallory's other stale registrations came too late: the ledger holds the latest.
    assert r.stale_refused == r.latest_version - 1


async def test_tower_restarts_mid_dispute_and_still_refutes(
    served_ledger: str, tmp_path: Path
) -> None:
    r = await _run(served_ledger, tmp_path, restart_mid_dispute=True)
    _no_funds_lost(r)


async def test_two_towers_one_down(served_ledger: str, tmp_path: Path) -> None:
    r = await _run(served_ledger, tmp_path, towers=2, down=1)
    _no_funds_lost(r)
