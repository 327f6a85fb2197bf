"""The compiled contract artifacts shipped with the package (built by ``contracts/build.mjs``).

Each artifact holds the ABI, the creation and runtime bytecode, the compiler version and
settings, and hashes of the sources; ``node contracts/build.mjs --check`` proves they are
reproducible from ``contracts/src``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

#: Every contract with an artifact, in deployment order.
CONTRACT_NAMES = (
    "Adjudicator",
    "AssetHolderETH",
    "PerunToken",
    "AssetHolderERC20",
    "TrivialApp",
    "PaymentApp",
)


@dataclass(frozen=True, slots=True)
class Artifact:
    """One compiled contract.

    Attributes:
        name: the contract name (``"Adjudicator"``).
        abi: the contract ABI (JSON objects as parsed).
        bytecode: creation code (deploy it with the constructor arguments appended).
        deployed_bytecode: runtime code, as found on chain after deployment (immutables are
            zero placeholders here).
        compiler: the solc version string.
        settings: the compiler settings used.
    """

    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: bytes
    deployed_bytecode: bytes
    compiler: str
    settings: dict[str, Any]


def load_artifact(name: str) -> Artifact:
    """The artifact of contract ``name``.

    Raises:
        KeyError: no such contract artifact.
    """
    if name not in CONTRACT_NAMES:
        raise KeyError(f"no artifact {name!r}; known: {', '.join(CONTRACT_NAMES)}")
    text = resources.files("perun_eth").joinpath("artifacts", f"{name}.json").read_text("utf-8")
    raw = json.loads(text)
    return Artifact(
        name=raw["contractName"],
        abi=tuple(raw["abi"]),
        bytecode=bytes.fromhex(raw["bytecode"][2:]),
        deployed_bytecode=bytes.fromhex(raw["deployedBytecode"][2:]),
        compiler=raw["compiler"]["version"],
        settings=raw["settings"],
    )
