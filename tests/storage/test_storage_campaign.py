"""A small, fixed-seed run of the storage fault campaign (``storage_campaign.py``) on every
installed durable store: byte flips in the WAL, table and manifest files of a killed store,
torn tails, SIGKILL at random moments, a full disk and a read-only log. Every outcome must be
harmless or a typed error: no silent rollback, no untyped exception.

The full campaign is one command (see ``docs/persistence.md``)::

    python tests/storage/storage_campaign.py --flips 2000
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import STORES
from storage_campaign import main

from perun_core.plugins import load_plugins

pytestmark = pytest.mark.timeout(240)


def test_a_small_campaign_finds_no_silent_rollback(tmp_path: Path) -> None:
    stores = [s for s in STORES if s in load_plugins().persisters]
    if not stores:
        pytest.skip("needs perun-leveldb or perun-rocksdb")
    out = tmp_path / "campaign.json"
    args = ["--flips", "150", "--kills", "2", "--disk-full", "1", "--read-only", "1"]
    args += ["--updates", "12", "--modes", "sync", "--seed", "14", "--json", str(out)]
    assert main([*args, "--stores", *stores]) == 0, out.read_text()
    report = json.loads(out.read_text())
    assert report["silent"] == 0 and report["untyped"] == 0 and report["failures"] == 0
    assert [s["store"] for s in report["stores"]] == stores
    for s in report["stores"]:
        assert s["flips_tried"] >= 140
        assert s["harmless"] + s["typed_errors"] == sum(
            sum(s[family].values())
            for family in ("flips", "torn_tails", "kills", "disk_full", "read_only")
        )
        # damage is found: most flipped bytes are checksummed, and a damaged record is refused
        assert s["flips"]["typed"] > s["flips"].get("harmless", 0)
        assert set(s["flips_by_file_kind"]) == {"wal", "table", "manifest"}
        assert s["torn_tails"] == {"harmless": 4}  # a torn tail is not damage
        assert s["kills"] == {"harmless": 2}
        for family in ("disk_full", "read_only"):
            # where the fault cannot be injected (mounting needs root), it says why
            assert s[family] == {"harmless": 1} or family in s["skipped"], s
