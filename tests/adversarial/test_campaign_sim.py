"""A fixed-seed slice of the adversarial campaign on the sim ledger (the full campaign is
``python -m perun_core.testing.campaign --runs 2000``)."""

from __future__ import annotations

from typing import Any

from perun_core.testing.campaign import SCENARIOS, run_campaign

SEEDS = list(range(1, 43))


async def test_mallory_never_takes_alice_funds(backend: Any, asset: Any) -> None:
    summary = await run_campaign(backend, asset, SEEDS)
    report = summary.as_dict()
    assert summary.runs == len(SEEDS)
    assert summary.funds_lost == 0, report
    assert summary.hangs == 0, report
    assert summary.untyped_errors == 0, report
    assert summary.passed == summary.runs, report
    assert set(summary.by_scenario) == set(SCENARIOS)  # the seeds cover every scenario
