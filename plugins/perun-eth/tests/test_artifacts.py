"""The committed artifacts: reproducible from contracts/, and ABI-compatible with the
documented interface (function selectors and event topics computed from the artifacts' ABIs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from perun_eth.contracts import CONTRACT_NAMES, load_artifact
from perun_eth.encoding import keccak256

REPO = Path(__file__).resolve().parents[3]
CONTRACTS = REPO / "contracts"

SELECTORS = {
    "Adjudicator": {
        "register": "da89ed2d",
        "progress": "894afe2f",
        "conclude": "b1d6da22",
        "concludeFinal": "f53f5dfe",
        "channelID": "6f68e70e",
        "hashState": "6914670e",
        "disputes": "11be1997",
    },
    "AssetHolderETH": {
        "deposit": "1de26e16",
        "withdraw": "4ed4283c",
        "setOutcome": "fc79a66d",
        "holdings": "ae9ee18c",
        "settled": "d945af1d",
        "adjudicator": "53c2ed8e",
    },
    "TrivialApp": {"validTransition": "6d7eba0d"},
    "PaymentApp": {"validTransition": "6d7eba0d"},
    "PerunToken": {
        "approve": "095ea7b3",
        "allowance": "dd62ed3e",
        "balanceOf": "70a08231",
        "transfer": "a9059cbb",
        "transferFrom": "23b872dd",
        "totalSupply": "18160ddd",
        "decimals": "313ce567",
        "name": "06fdde03",
        "symbol": "95d89b41",
        "increaseAllowance": "39509351",
        "decreaseAllowance": "a457c2d7",
    },
}
SELECTORS["AssetHolderERC20"] = {**SELECTORS["AssetHolderETH"], "token": "fc0c546a"}

TOPICS = {
    "Adjudicator": {
        "ChannelUpdate": "895ef5a5fc3efd313a300b006d6ce97ff0670dfe04f6eea90417edf924fa786b",
    },
    "AssetHolderETH": {
        "Deposited": "cd2fe07293de5928c5df9505b65a8d6506f8668dfe81af09090920687edc48a9",
        "OutcomeSet": "ef898d6cd3395b6dfe67a3c1923e5c726c1b154e979fb0a25a9c41d0093168b8",
        "Withdrawn": "d0b6e7d0170f56c62f87de6a8a47a0ccf41c86ffb5084d399d8eb62e823f2a81",
    },
    "PerunToken": {
        "Transfer": "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
        "Approval": "8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925",
    },
}
TOPICS["AssetHolderERC20"] = TOPICS["AssetHolderETH"]

# Indexed flags of the events (part of compatibility, not of the topic hash).
INDEXED = {
    "ChannelUpdate": [True, False, False, False],
    "Deposited": [True, False],
    "OutcomeSet": [True],
    "Withdrawn": [True, False, False],
    "Transfer": [True, True, False],
    "Approval": [True, True, False],
}


def _canonical(param: dict[str, Any]) -> str:
    t: str = param["type"]
    if t.startswith("tuple"):
        inner = ",".join(_canonical(c) for c in param["components"])
        return f"({inner}){t[len('tuple') :]}"
    return t


def _signature(entry: dict[str, Any]) -> str:
    return f"{entry['name']}({','.join(_canonical(i) for i in entry['inputs'])})"


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_selectors_and_topics_match_the_spec(name: str) -> None:
    abi = load_artifact(name).abi
    functions = {e["name"]: e for e in abi if e["type"] == "function"}
    for fn, selector in SELECTORS[name].items():
        assert keccak256(_signature(functions[fn]).encode())[:4].hex() == selector, fn
    events = {e["name"]: e for e in abi if e["type"] == "event"}
    for ev, topic in TOPICS.get(name, {}).items():
        assert keccak256(_signature(events[ev]).encode()).hex() == topic, ev
        assert [i["indexed"] for i in events[ev]["inputs"]] == INDEXED[ev]
    assert set(events) == set(TOPICS.get(name, {}))


def test_mutability_and_constructors() -> None:
    adj = {e["name"]: e for e in load_artifact("Adjudicator").abi if e["type"] == "function"}
    assert adj["channelID"]["stateMutability"] == "pure"
    assert adj["hashState"]["stateMutability"] == "pure"
    assert adj["disputes"]["stateMutability"] == "view"
    assert [o["type"] for o in adj["disputes"]["outputs"]] == [
        "uint64",
        "uint64",
        "uint64",
        "bool",
        "uint8",
        "bytes32",
    ]
    holder = {e["name"]: e for e in load_artifact("AssetHolderETH").abi if e["type"] == "function"}
    assert holder["deposit"]["stateMutability"] == "payable"
    app = {e["name"]: e for e in load_artifact("TrivialApp").abi if e["type"] == "function"}
    assert app["validTransition"]["stateMutability"] == "pure"

    def ctor(name: str) -> list[str]:
        entry = next(e for e in load_artifact(name).abi if e["type"] == "constructor")
        return [i["type"] for i in entry["inputs"]]

    assert ctor("AssetHolderETH") == ["address"]
    assert ctor("AssetHolderERC20") == ["address", "address"]
    assert ctor("PerunToken") == ["address[]", "uint256"]


def _opcodes(code: bytes) -> set[int]:
    """The opcodes of ``code`` (PUSH data skipped)."""
    ops: set[int] = set()
    i = 0
    while i < len(code):
        op = code[i]
        ops.add(op)
        i += 1 + (op - 0x5F if 0x60 <= op <= 0x7F else 0)
    return ops


def test_artifacts_are_pinned_and_complete() -> None:
    for name in CONTRACT_NAMES:
        art = load_artifact(name)
        assert art.compiler.startswith("0.8.37+")
        assert art.settings["evmVersion"] == "paris"
        assert art.settings["optimizer"]["enabled"] is True
        assert art.bytecode and art.deployed_bytecode
        assert len(art.deployed_bytecode) <= 24576  # EIP-170
        assert _opcodes(art.deployed_bytecode).isdisjoint({0x5F}), "PUSH0 is not in paris"
    with pytest.raises(KeyError):
        load_artifact("Nope")


def test_committed_artifacts_are_reproducible() -> None:
    """Recompile contracts/ with the pinned solcjs and require byte-identical artifacts."""
    node = shutil.which("node")
    solc = CONTRACTS / "node_modules" / "solc"
    if node is None or not solc.is_dir():
        if os.environ.get("CI"):
            pytest.fail("CI must install node and run `npm ci --prefix contracts`")
        pytest.skip("node or contracts/node_modules missing (npm ci --prefix contracts)")
    result = subprocess.run(
        [node, str(CONTRACTS / "build.mjs"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout
