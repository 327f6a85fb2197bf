"""Test helpers: a local anvil node and a deployment of the perun-eth contracts.

The anvil runtime (:class:`AnvilNode`, :func:`find_anvil`, ...) lives in
:mod:`perun_eth.anvil` (the demo uses it too) and is re-exported here.
:func:`deploy_contracts` deploys every contract with web3.py (synchronous: test set-up only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Test code imports web3 right after this module; load it here, keeping the recursion limit.
from perun_eth import _web3_first  # noqa: F401
from perun_eth.anvil import ANVIL_ENV as ANVIL_ENV
from perun_eth.anvil import DEFAULT_CHAIN_ID as DEFAULT_CHAIN_ID
from perun_eth.anvil import AnvilNode as AnvilNode
from perun_eth.anvil import AnvilNotFoundError as AnvilNotFoundError
from perun_eth.anvil import find_anvil as find_anvil
from perun_eth.anvil import free_port as free_port
from perun_eth.anvil import rpc as rpc
from perun_eth.contracts import AppArtifact, Artifact, installed_app_artifacts, load_artifact


@dataclass(frozen=True, slots=True)
class Deployment:
    """Addresses of a deployment of the perun-eth contracts (checksummed hex).

    Attributes:
        chain_id: the chain deployed to.
        adjudicator, asset_holder_eth, token, asset_holder_erc20, trivial_app, payment_app:
            contract addresses (``token`` is the PerunToken the ERC-20 holder keeps).
        deploy_gas: gas used by each deployment transaction, by contract name.
        apps: the contracts of the installed plugin apps, by app name.
    """

    chain_id: int
    adjudicator: str
    asset_holder_eth: str
    token: str
    asset_holder_erc20: str
    trivial_app: str
    payment_app: str
    deploy_gas: dict[str, int]
    apps: dict[str, str] = field(default_factory=dict)


def deploy_contracts(
    w3: Any,
    deployer: str,
    *,
    token_holders: Sequence[str] = (),
    token_balance: int = 10**24,
    on_receipt: Callable[[str, Any], None] | None = None,
    apps: Mapping[str, AppArtifact] | None = None,
) -> Deployment:
    """Deploy every contract from ``deployer`` (an unlocked node account) with a sync Web3,
    and the contracts of plugin apps.

    Args:
        w3: a synchronous ``web3.Web3`` connected to the node.
        deployer: the sending account (unlocked on the node).
        token_holders: accounts that receive ``token_balance`` PerunTokens each.
        token_balance: tokens minted per holder.
        on_receipt: called with (contract name, receipt) after each deployment.
        apps: plugin app contracts by app name (default: every installed app with an
            Ethereum artifact; their gas is recorded as ``"app NAME"``).

    Returns:
        The deployment's addresses and gas figures.

    Raises:
        RuntimeError: a deployment transaction failed.
    """
    gas: dict[str, int] = {}

    def deploy(name: str, *args: Any, art: Artifact | AppArtifact | None = None) -> str:
        art = art if art is not None else load_artifact(name)
        factory = w3.eth.contract(abi=list(art.abi), bytecode=art.bytecode)
        tx_hash = factory.constructor(*args).transact({"from": deployer})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1 or not receipt["contractAddress"]:
            raise RuntimeError(f"deploying {name} failed (tx {tx_hash.hex()})")
        gas[name] = int(receipt["gasUsed"])
        if on_receipt is not None:
            on_receipt(name, receipt)
        address: str = receipt["contractAddress"]
        return address

    adjudicator = deploy("Adjudicator")
    holder_eth = deploy("AssetHolderETH", adjudicator)
    token = deploy("PerunToken", list(token_holders), token_balance)
    holder_erc20 = deploy("AssetHolderERC20", adjudicator, token)
    trivial = deploy("TrivialApp")
    payment = deploy("PaymentApp")
    plugin_apps = installed_app_artifacts() if apps is None else apps
    deployed_apps = {name: deploy(f"app {name}", art=a) for name, a in plugin_apps.items()}
    return Deployment(
        chain_id=int(w3.eth.chain_id),
        adjudicator=adjudicator,
        asset_holder_eth=holder_eth,
        token=token,
        asset_holder_erc20=holder_erc20,
        trivial_app=trivial,
        payment_app=payment,
        deploy_gas=gas,
        apps=deployed_apps,
    )


def deployment_record(dep: Deployment, block: int = 0) -> Any:
    """``dep`` as the :class:`~perun_eth.deploy.DeploymentRecord` the backend reads."""
    from perun_eth.deploy import DeploymentRecord  # noqa: PLC0415 - test helpers load the web3 stack only when used

    return DeploymentRecord(
        chain_id=dep.chain_id,
        adjudicator=dep.adjudicator,
        asset_holder_eth=dep.asset_holder_eth,
        token=dep.token,
        asset_holder_erc20=dep.asset_holder_erc20,
        trivial_app=dep.trivial_app,
        payment_app=dep.payment_app,
        apps=dict(dep.apps),
        block=block,
    )


def dev_backend_config(node: AnvilNode, dep: Deployment, **overrides: Any) -> dict[str, Any]:
    """A backend configuration for a deployment on a local anvil: fast polling, one
    confirmation, the node's first account as the token faucet."""
    cfg: dict[str, Any] = {
        "rpc": node.url,
        **deployment_record(dep).config(),
        "poll_interval": 0.02,
        "confirmations": 1,
        "secondary_grace": 0.2,
        "tx_timeout": 30.0,
    }
    cfg.update(overrides)
    return cfg


@contextlib.asynccontextmanager
async def e2e_chain(tmp_path: Path) -> Any:
    """A fresh anvil with our contracts and an ``eth`` backend on it, for the end-to-end tests.

    Yields ``(backend, asset)``: the backend (faucet, balances and time travel through anvil)
    and the PerunToken asset, whose balances no gas fee touches. The node is stopped by PID
    on exit.
    """
    from web3 import Web3  # noqa: PLC0415 - test helpers load the web3 stack only when used

    from perun_eth.backend import EthBackend  # noqa: PLC0415 - test helpers load the web3 stack only when used

    del tmp_path  # anvil keeps its state in memory
    with AnvilNode() as node:
        w3 = Web3(Web3.HTTPProvider(node.url))
        accounts = w3.eth.accounts
        dep = deploy_contracts(w3, accounts[0], token_holders=accounts[:1])
        backend = EthBackend.from_config(dev_backend_config(node, dep))
        try:
            yield backend, backend.asset(dep.asset_holder_erc20)
        finally:
            await backend.close()
