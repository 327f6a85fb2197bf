"""The benchmark command runs in quick mode and reports every section with sane numbers.

Speed is never asserted here (issue 8: benchmarks measure, tests do not time): only that
``tests/benchmarks/run.py --quick --json OUT`` finishes, prints its table and writes every
section, and that each figure is a positive, finite number.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from perun_core.plugins import load_plugins

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "tests" / "benchmarks" / "run.py"

# The operations issue 8 asks gas figures for (names as the perun-eth gas test records them).
GAS_OPERATIONS = (
    "deposit ETH (fresh)",
    "deposit ERC20 (holder 0->x)",
    "concludeFinal 1 asset",
    "register no app",
    "refute",
    "progress (first)",
    "conclude no app",
    "withdraw ETH",
    "withdraw ERC20",
)


def _positive(value: Any, what: str) -> float:
    assert isinstance(value, int | float) and not isinstance(value, bool), f"{what}: {value!r}"
    assert math.isfinite(value) and value > 0, f"{what} = {value}"
    return float(value)


def _run_quick(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.timeout(400)  # a loaded CI machine (tox runs envs in parallel) is slower
def test_quick_benchmark_reports_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = _run_quick(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for heading in ("crypto", "in-process", "two processes over TCP", "gas", "scale", "startup"):
        assert heading in proc.stdout, f"no {heading!r} section in the table"
    data = json.loads(out.read_text())
    assert {"meta", "crypto", "inprocess", "tcp", "gas", "scale", "startup", "targets"} <= set(data)
    meta = data["meta"]
    assert meta["quick"] is True and meta["machine"]["cores"] >= 1
    assert isinstance(meta["load_before"], list) and isinstance(meta["load_after"], list)
    assert data["targets"] == []  # quick mode evaluates no targets

    # The machine's limit: per-operation costs and the ceiling derived from them.
    crypto = data["crypto"]
    sim = crypto["sim"]
    for key in ("sign_state_us", "verify_state_us", "encode_state_us", "hash_state_us"):
        _positive(sim[key], f"crypto.sim.{key}")
    ceiling = crypto["ceiling"]
    per_update = _positive(ceiling["per_update_cpu_us"], "per-update CPU")
    assert per_update == 2 * sim["sign_state_us"] + 2 * sim["verify_state_us"]
    _positive(ceiling["two_process_updates_per_s"], "ceiling")
    if _importable("perun_eth"):
        for key in ("sign_state_us", "verify_state_us", "encode_state_us"):
            _positive(crypto["eth"][key], f"crypto.eth.{key}")

    seq = data["inprocess"]["sequential"]
    _positive(seq["updates_per_s"], "in-process updates/s")
    assert _positive(seq["p50_ms"], "p50") <= _positive(seq["p99_ms"], "p99")

    # Two processes over TCP, with every persister that is installed.
    installed = load_plugins().persisters
    quick_channels = meta["sizes"]["pipelined_channels"]
    for name in ("memory", "leveldb", "rocksdb"):
        res = data["tcp"][name]
        if name != "memory" and name not in installed:
            assert "skipped" in res
            continue
        s = res["sequential"]
        _positive(s["updates_per_s"], f"{name} sequential")
        assert _positive(s["p50_ms"], "p50") <= _positive(s["p99_ms"], "p99")
        polled = res["sequential_busy_poll"]
        if name == "memory":  # measured once, with the default --busy-poll 200
            assert polled["busy_poll_us"] == 200 and polled["updates"] == s["updates"]
            _positive(polled["updates_per_s"], "busy-polling sequential")
            assert _positive(polled["p50_ms"], "p50") <= _positive(polled["p99_ms"], "p99")
        else:
            assert polled is None
        assert [p["channels"] for p in res["pipelined"]] == quick_channels
        for p in res["pipelined"]:
            _positive(p["updates_per_s"], f"{name} pipelined")
            _positive(p["ratio_to_ceiling"], f"{name} ratio")
            _positive(p["cpu_us_per_update"], f"{name} CPU per update")
            assert p["updates"] >= p["channels"]
            if name != "memory":
                _positive(p["ratio_to_memory"], f"{name} share of the memory rate")

    gas = data["gas"]
    if "skipped" in gas:
        # Allowed where perun-eth is not installed (the core tox env); where it is, CI has
        # anvil too (npm ci --prefix contracts) and must measure.
        assert not (os.environ.get("CI") and _importable("perun_eth")), gas["skipped"]
    else:
        by_name = {op["operation"]: op for op in gas["operations"]}
        for name in GAS_OPERATIONS:
            _positive(by_name[name]["gas"], f"gas of {name}")
            _positive(by_name[name]["ratio"], f"gas ratio of {name}")
        _positive(gas["max_ratio"], "worst gas ratio")

    scale = data["scale"]
    assert scale["channels"] == meta["sizes"]["scale_channels"]
    if "leveldb" not in installed:
        assert "skipped" in scale
    else:
        _positive(scale["write_records_per_s"], "persister write rate")
        for key in ("restore", "restore_no_watcher"):
            r = scale[key]
            assert r["channels"] == scale["channels"] and r["sample_ok"] is True
            assert r["sync_messages_sent"] == r["channels"]
            _positive(r["restore_s"], f"{key} seconds")
            _positive(r["bytes_per_channel"], f"{key} bytes per channel")
    for name, rate in scale["update_events_256_channels"].items():
        _positive(rate["events_per_s"], f"{name} persister events/s")

    tower = data["tower"]
    if importlib.util.find_spec("perun_watchtower") is None:
        assert "skipped" in tower
    else:
        assert tower["channels"] == meta["sizes"]["scale_channels"]
        _positive(tower["ingest_states_per_s"], "tower ingest rate")
        _positive(tower["restore_seconds"], "tower restore seconds")
        assert tower["restored"] == tower["channels"]

    startup = data["startup"]
    assert startup["plugins"] == sorted(load_plugins().names())
    for case in ("perun plugins, every installed plugin", "perun plugins, built-ins only"):
        _positive(startup[case]["wall_s"], f"{case} wall")
        _positive(startup[case]["cpu_s"], f"{case} CPU")


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
