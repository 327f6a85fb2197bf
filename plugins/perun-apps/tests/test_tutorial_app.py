"""The app of docs/apps.md, built from scratch: the page's Python rules, contract and tests
are extracted from the markdown (so the page and this test cannot drift), the contract is
compiled with the pinned solc (``contracts/build.mjs --app``), and the page's conformance
tests run on the sim ledger and on a fresh anvil."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PAGE = REPO / "docs" / "apps.md"
BLOCK = re.compile(r"<!-- tutorial-file: (\S+) -->\n```\w+\n(.*?)\n```", re.S)


def tutorial_files() -> dict[str, str]:
    """The page's files by name (each a fenced block after a ``tutorial-file`` marker)."""
    files = {name: body + "\n" for name, body in BLOCK.findall(PAGE.read_text("utf-8"))}
    assert set(files) == {"pingpong.py", "PingPongApp.sol", "test_pingpong.py"}
    return files


def test_the_tutorial_app_passes_the_conformance_suite_on_sim_and_anvil(tmp_path: Path) -> None:
    pytest.importorskip("perun_eth")
    from perun_eth.testing import AnvilNotFoundError, find_anvil

    node = shutil.which("node")
    try:
        find_anvil()
        missing = node is None or not (REPO / "contracts/node_modules/solc").is_dir()
    except AnvilNotFoundError:
        missing = True
    if missing:
        if os.environ.get("CI"):
            pytest.fail("CI must install node and run `npm ci --prefix contracts`")
        pytest.skip("node, solc or anvil missing (npm ci --prefix contracts)")
    assert node is not None
    for name, text in tutorial_files().items():
        (tmp_path / name).write_text(text, "utf-8")
    compiled = subprocess.run(
        [node, str(REPO / "contracts" / "build.mjs"), "--app", str(tmp_path / "PingPongApp.sol")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compiled.returncode == 0, compiled.stderr
    (tmp_path / "PingPongApp.json").write_text(compiled.stdout, "utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_pingpong.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "4 passed" in run.stdout, run.stdout[-2000:]
