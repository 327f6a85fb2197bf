"""The compiled contract artifacts shipped with the package (built by ``contracts/build.mjs``).

Each artifact holds the ABI, the creation and runtime bytecode, the compiler version and
settings, and hashes of the sources; ``node contracts/build.mjs --check`` proves they are
reproducible from ``contracts/src``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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


@dataclass(frozen=True, slots=True)
class AppArtifact:
    """The contract of a plugin app (``AppDefinition.on_chain["eth"]``).

    Attributes:
        app: the app's name (``"tictactoe"``).
        abi: the contract ABI.
        bytecode: creation code (app contracts take no constructor arguments).
    """

    app: str
    abi: tuple[dict[str, Any], ...]
    bytecode: bytes


def app_artifact(name: str, on_chain: object) -> AppArtifact:
    """Read an app's Ethereum artifact: a mapping with ``abi`` and ``bytecode`` (``0x`` hex
    or bytes), as ``contracts/build.mjs`` writes it.

    Raises:
        ValueError: not such a mapping.
    """
    if not isinstance(on_chain, Mapping):
        raise ValueError(f"app {name!r}: the eth artifact is not a mapping with abi and bytecode")
    code = on_chain.get("bytecode")
    try:
        if isinstance(code, str):
            raw = bytes.fromhex(code.removeprefix("0x"))
        elif isinstance(code, bytes | bytearray):
            raw = bytes(code)
        else:
            raise TypeError(f"bytecode is {type(code).__name__}")
    except (TypeError, ValueError) as e:
        raise ValueError(f"app {name!r}: the eth artifact's bytecode is not hex ({e})") from e
    abi = on_chain.get("abi")
    if not raw or not isinstance(abi, list | tuple):
        raise ValueError(f"app {name!r}: the eth artifact lacks bytecode or abi")
    return AppArtifact(name, tuple(abi), raw)


def installed_app_artifacts() -> dict[str, AppArtifact]:
    """The Ethereum contracts of the installed plugin apps, by app name (apps without an
    ``"eth"`` entry in ``AppDefinition.on_chain`` are left out). perun-eth finds them through
    the plugin catalog, so it depends on no app package.

    Raises:
        ValueError: an app's eth artifact is malformed.
    """
    from perun_core.plugins import installed_apps  # noqa: PLC0415 - loads the plugins only when deploying

    return {
        name: app_artifact(name, d.on_chain["eth"])
        for name, d in sorted(installed_apps().items())
        if "eth" in d.on_chain
    }
