"""Deploying the contracts, and checking a deployment someone else made.

:func:`deploy` sends every contract of :data:`~perun_eth.contracts.CONTRACT_NAMES` through
:meth:`EthNode.transact <perun_eth.node.EthNode.transact>` (estimated gas, managed nonces,
confirmations) and returns a :class:`DeploymentRecord`, which is also the JSON file
``perun eth deploy --out`` writes and the backend's ``deployment`` configuration key reads.
:func:`validate` checks a deployment by behaviour, not bytecode, so foreign deployments of
ABI-compatible contracts pass (:mod:`perun_eth.config_check` holds the checks).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_abi.abi import encode as abi_encode

from perun_eth.chain import parse_hex_address
from perun_eth.config_check import check_contracts
from perun_eth.contracts import AppArtifact, installed_app_artifacts, load_artifact
from perun_eth.errors import DeploymentError
from perun_eth.node import EthNode, Receipt
from perun_eth.wallet import EthAccount


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """Where the contracts of one deployment are (checksummed hex addresses).

    Attributes:
        chain_id: the chain.
        adjudicator, asset_holder_eth: the adjudicator and the ETH holder.
        token, asset_holder_erc20: the ERC-20 token and its holder (``None`` if not deployed).
        trivial_app, payment_app: the app contracts (``None`` if not deployed).
        apps: the contracts of plugin apps, by app name (the backend's ``apps`` table).
        block: the first block of the deployment (events are scanned from there).
        transactions: per contract, the deployment's transaction hash and gas used.
    """

    chain_id: int
    adjudicator: str
    asset_holder_eth: str
    token: str | None = None
    asset_holder_erc20: str | None = None
    trivial_app: str | None = None
    payment_app: str | None = None
    apps: dict[str, str] = field(default_factory=dict)
    block: int = 0
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> str:
        """The record as JSON (what :meth:`from_json` reads)."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> DeploymentRecord:
        """Parse :meth:`to_json`'s output.

        Raises:
            DeploymentError: not a deployment record.
        """
        try:
            raw = json.loads(text)
            return cls(**raw)
        except (ValueError, TypeError) as e:
            raise DeploymentError(f"not a deployment record: {e}", operation="deployment") from e

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DeploymentRecord:
        """Read a record file.

        Raises:
            DeploymentError: missing or malformed.
        """
        try:
            text = Path(path).read_text("utf-8")
        except OSError as e:
            raise DeploymentError(
                f"cannot read deployment file {path}: {e.strerror or e}", operation="deployment"
            ) from e
        return cls.from_json(text)

    def config(self) -> dict[str, Any]:
        """The backend configuration keys this deployment provides."""
        assets: list[Any] = [self.asset_holder_eth]
        if self.asset_holder_erc20 and self.token:
            assets.append({"holder": self.asset_holder_erc20, "token": self.token})
        cfg: dict[str, Any] = {
            "chain_id": self.chain_id,
            "adjudicator": self.adjudicator,
            "assets": assets,
            "from_block": self.block,
        }
        if self.payment_app:
            cfg["payment_app"] = self.payment_app
        if self.apps:
            cfg["apps"] = dict(self.apps)
        return cfg


async def deploy(
    node: EthNode,
    deployer: EthAccount,
    *,
    token_holders: Sequence[str] = (),
    token_balance: int = 10**24,
    with_token: bool = True,
    apps: Mapping[str, AppArtifact] | None = None,
    on_receipt: Callable[[str, Receipt], None] | None = None,
) -> DeploymentRecord:
    """Deploy the Adjudicator, the ETH holder, optionally the PerunToken with its holder
    and the two built-in apps, and the contracts of plugin apps, from ``deployer``.

    Args:
        node: the chain's node.
        deployer: pays for and signs the deployments.
        token_holders: accounts that get ``token_balance`` PerunTokens each.
        token_balance: tokens minted per holder.
        with_token: also deploy the test token, its holder and the built-in apps.
        apps: plugin app contracts to deploy, by app name (default: every installed app with
            an Ethereum artifact, :func:`~perun_eth.contracts.installed_app_artifacts`).
        on_receipt: called with (contract name, receipt) after each deployment.

    Raises:
        ChainError: a deployment failed.
    """
    txs: dict[str, dict[str, Any]] = {}
    first_block: list[int] = []

    async def one(
        name: str, types: list[str], args: list[Any], creation: bytes | None = None
    ) -> str:
        code = creation if creation is not None else load_artifact(name).bytecode
        code += abi_encode(types, args) if types else b""
        r = await node.transact(deployer, None, code, operation=f"deploy {name}")
        tx = await node.retrying(
            "eth_getTransactionReceipt",
            lambda: node.w3.eth.get_transaction_receipt(r.tx_hash),  # type: ignore[arg-type]
        )
        address = str(tx["contractAddress"])
        txs[name] = {"tx": r.tx_hash, "gas": r.gas_used, "address": address}
        first_block.append(r.block_number)
        if on_receipt is not None:
            on_receipt(name, r)
        return address

    adj = await one("Adjudicator", [], [])
    holder_eth = await one("AssetHolderETH", ["address"], [adj])
    token = holder_erc20 = trivial = payment = None
    if with_token:
        token = await one(
            "PerunToken",
            ["address[]", "uint256"],
            [[parse_hex_address(h, "token holder") for h in token_holders], token_balance],
        )
        holder_erc20 = await one("AssetHolderERC20", ["address", "address"], [adj, token])
        trivial = await one("TrivialApp", [], [])
        payment = await one("PaymentApp", [], [])
    plugin_apps = installed_app_artifacts() if apps is None else apps
    deployed_apps = {
        name: await one(f"app {name}", [], [], art.bytecode) for name, art in plugin_apps.items()
    }
    return DeploymentRecord(
        chain_id=await node.chain_id(),
        adjudicator=adj,
        asset_holder_eth=holder_eth,
        token=token,
        asset_holder_erc20=holder_erc20,
        trivial_app=trivial,
        payment_app=payment,
        apps=deployed_apps,
        block=min(first_block),
        transactions=txs,
    )


async def deploy_app(node: EthNode, deployer: EthAccount, artifact: AppArtifact) -> str:
    """Deploy one app contract (e.g. your own app's, compiled with
    ``node contracts/build.mjs --app MyApp.sol``); its address is the app's AppID.

    Raises:
        ChainError: the deployment failed.
    """
    r = await node.transact(
        deployer, None, artifact.bytecode, operation=f"deploy app {artifact.app}"
    )
    tx = await node.retrying(
        "eth_getTransactionReceipt",
        lambda: node.w3.eth.get_transaction_receipt(r.tx_hash),  # type: ignore[arg-type]
    )
    return str(tx["contractAddress"])


async def validate(
    node: EthNode,
    adjudicator: str,
    holders: Sequence[tuple[str, str | None]] = (),
    *,
    strict: bool = False,
) -> None:
    """Check that the contracts at the given addresses behave as the Perun contracts
    (:func:`perun_eth.config_check.check_contracts`, which the backend's configuration
    check and ``perun eth validate`` use too).

    Args:
        node: the chain's node.
        adjudicator: the adjudicator address.
        holders: ``(holder, token)`` pairs; ``token`` is ``None`` for an ETH holder.
        strict: also require the runtime bytecode of our artifacts.

    Raises:
        DeploymentError: what is wrong, naming the contract (an
            :class:`~perun_eth.config_check.EthChainConfigError`).
        ValueError: an address is not 20 bytes of hex.
    """
    await check_contracts(node, adjudicator, holders, strict=strict)
