"""The offline-client campaign on anvil with our contracts (skipped without anvil locally).

As on sim: Alice (a child process) hands her states to a tower (a child process with its own
funded account and LevelDB), is SIGKILLed; Mallory registers every older state; the tower
pays the refutation's gas; Alice returns days of ledger time later (``evm_increaseTime``) and
withdraws exactly her latest token balance.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

perun_eth = pytest.importorskip("perun_eth")

from perun_eth.anvil import AnvilNotFoundError, find_anvil  # noqa: E402
from perun_eth.backend import EthBackend  # noqa: E402
from perun_watchtower.testing import DisputeResult, offline_client_dispute  # noqa: E402


def _need_anvil() -> None:
    try:
        find_anvil()
    except AnvilNotFoundError:
        if os.environ.get("CI"):
            raise
        pytest.skip("anvil is not installed (npm ci --prefix contracts)")


async def _run(root: Path, **kw: object) -> DisputeResult:
    _need_anvil()
    async with EthBackend.demo_ledger() as backend:
        chain = dict(backend.peer_config())
        return await offline_client_dispute(
            backend,
            peer_ledger={"backend": "eth", "backend_config": chain},
            chain=chain,
            root=root,
            **kw,  # type: ignore[arg-type]
        )


async def test_eth_tower_refutes_while_alice_is_killed(tmp_path: Path) -> None:
    r = await _run(tmp_path, payments=3)
    assert r.alice_final == r.alice_initial - r.alice_deposit + r.alice_latest_balance
    assert r.alice_final + r.mallory_final == r.alice_initial + r.mallory_initial
    assert r.registered_versions[0] < r.latest_version == r.registered_versions[-1]


async def test_eth_tower_restarts_mid_dispute_two_towers_one_down(tmp_path: Path) -> None:
    r = await _run(tmp_path, payments=2, towers=2, down=1, restart_mid_dispute=True)
    assert r.alice_final == r.alice_initial - r.alice_deposit + r.alice_latest_balance
    assert r.alice_final + r.mallory_final == r.alice_initial + r.mallory_initial
