"""The committed app artifacts: the App interface's selector, pinned compiler settings, code
the paris EVM runs, and byte-identical output of a fresh ``node contracts/build.mjs``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from perun_apps._rules import load_artifact

REPO = Path(__file__).resolve().parents[3]
CONTRACTS = REPO / "contracts"
APPS = ("TicTacToeApp", "HTLCApp")
VALID_TRANSITION = "6d7eba0d"  # validTransition(P,S,S,uint256), as the adjudicator calls it


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (CONTRACTS / "node_modules" / "solc").is_dir():
        if os.environ.get("CI"):
            pytest.fail("CI must install node and run `npm ci --prefix contracts`")
        pytest.skip("node or contracts/node_modules missing (npm ci --prefix contracts)")
    return node


def _canonical(param: dict[str, Any]) -> str:
    t: str = param["type"]
    if t.startswith("tuple"):
        return f"({','.join(_canonical(c) for c in param['components'])}){t[len('tuple') :]}"
    return t


def _opcodes(code: bytes) -> set[int]:
    ops: set[int] = set()
    i = 0
    while i < len(code):
        ops.add(code[i])
        i += 1 + (code[i] - 0x5F if 0x60 <= code[i] <= 0x7F else 0)
    return ops


@pytest.mark.parametrize("name", APPS)
def test_the_app_implements_valid_transition_with_pinned_settings(name: str) -> None:
    from Crypto.Hash import keccak  # pycryptodome, which eth-hash brings

    art = load_artifact(name)
    (fn,) = [e for e in art["abi"] if e["type"] == "function"]
    sig = f"{fn['name']}({','.join(_canonical(i) for i in fn['inputs'])})"
    assert keccak.new(data=sig.encode(), digest_bits=256).hexdigest()[:8] == VALID_TRANSITION
    assert fn["stateMutability"] in ("pure", "view") and not fn["outputs"]
    assert art["compiler"]["version"].startswith("0.8.37+")
    assert art["settings"]["evmVersion"] == "paris"
    runtime = bytes.fromhex(art["deployedBytecode"][2:])
    assert 0 < len(runtime) <= 24576
    assert _opcodes(runtime).isdisjoint({0x5F}), "PUSH0 is not in paris"
    # The artifact names the app's source and the core sources it was compiled with.
    src = (REPO / "plugins" / "perun-apps" / "contracts" / f"{name}.sol").read_text("utf-8")
    digest = "sha256:" + hashlib.sha256(src.encode()).hexdigest()
    assert art["sources"][f"perun-apps/{name}.sol"] == digest
    assert "perun/App.sol" in art["sources"]


def test_committed_artifacts_are_reproducible() -> None:
    result = subprocess.run(
        [_node(), str(CONTRACTS / "build.mjs"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "8 contracts" in result.stdout  # the six of perun-eth and the two apps


def test_compiling_one_app_gives_the_committed_bytecode() -> None:
    """``build.mjs --app`` (what app authors and the tutorial test use) compiles with the
    same settings as the committed build."""
    src = REPO / "plugins" / "perun-apps" / "contracts" / "HTLCApp.sol"
    out = subprocess.run(
        [_node(), str(CONTRACTS / "build.mjs"), "--app", str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    fresh = json.loads(out)
    assert fresh["bytecode"] == load_artifact("HTLCApp")["bytecode"]
    assert fresh["abi"] == load_artifact("HTLCApp")["abi"]
