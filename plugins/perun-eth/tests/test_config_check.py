"""A backend's configuration is checked against the chain before the backend exists.

On a node of this module's own. Each misconfiguration — a chain ID the node does not serve,
an adjudicator that is no adjudicator, an asset holder of another deployment or of another
kind, another token, other token decimals, an app without code — is refused by
``EthBackend.from_config`` with a :class:`ChainConfigError` naming it, and no transaction
was sent; a good configuration passes (strictly too) with every holder's kind known.
"""

from __future__ import annotations

from typing import Any

import pytest
from perun_eth import EthBackend
from perun_eth.chain import ERC20, ETH, EthChain, HolderInfo, parse_hex_address
from perun_eth.config_check import EthChainConfigError
from perun_eth.errors import DeploymentError, NodeConnectionError
from perun_eth.node import EthNode
from perun_eth.testing import (
    AnvilNode,
    Deployment,
    deploy_contracts,
    dev_backend_config,
    free_port,
)
from web3 import Web3

from perun_core.errors import ChainConfigError, ConfigError


@pytest.fixture(scope="module")
def w3(module_anvil: AnvilNode) -> Web3:
    return Web3(Web3.HTTPProvider(module_anvil.url))


@pytest.fixture(scope="module")
def other(w3: Web3, module_deployment: Deployment) -> Deployment:
    """A second, independent deployment on the same chain (its own adjudicator and token)."""
    del module_deployment
    return deploy_contracts(w3, w3.eth.accounts[1], token_holders=w3.eth.accounts[1:2])


def refused(node: AnvilNode, cfg: dict[str, Any], needle: str) -> EthChainConfigError:
    """``from_config(cfg)`` raises a configuration error containing ``needle``, and nothing
    was sent to the chain meanwhile."""
    head = node.call("eth_blockNumber")
    with pytest.raises(ChainConfigError) as info:
        EthBackend.from_config(cfg)
    err = info.value
    assert isinstance(err, EthChainConfigError) and isinstance(err, DeploymentError)
    assert isinstance(err, ConfigError) and isinstance(err, ValueError)
    assert needle in err.reason, err.reason
    assert node.call("eth_blockNumber") == head
    return err


async def test_a_chain_id_the_node_does_not_serve_is_refused(
    module_anvil: AnvilNode, module_deployment: Deployment
) -> None:
    """F4: ``chain_id`` 999 on a 31337 node used to give a working backend whose channels
    opened and funded, then never settled (the adjudicator pays out only assets of its own
    chain), locking the deposits for good."""
    cfg = dev_backend_config(module_anvil, module_deployment, chain_id=999)
    err = refused(module_anvil, cfg, "configured for chain 999, but the node serves chain 31337")
    assert err.operation == "validate"


async def test_a_good_configuration_passes_and_the_holders_kinds_are_known(
    module_anvil: AnvilNode, module_deployment: Deployment
) -> None:
    dep = module_deployment
    cfg = dev_backend_config(module_anvil, dep, strict=True)
    cfg["assets"] = [dep.asset_holder_eth, dep.asset_holder_erc20]  # kinds left to detect
    del cfg["chain_id"]  # taken from the node
    backend = EthBackend.from_config(cfg)
    try:
        eth, erc20 = backend.chain.holders
        assert (eth.kind, eth.token) == (ETH, None)
        assert (erc20.kind, erc20.token) == (ERC20, parse_hex_address(dep.token))
        assert backend.chain.chain_id == module_anvil.chain_id
        assert backend.peer_config()["chain_id"] == module_anvil.chain_id
        await backend.verify(strict=True)
    finally:
        await backend.close()


async def test_contracts_that_are_not_the_configured_ones_are_refused(
    module_anvil: AnvilNode, module_deployment: Deployment, other: Deployment, w3: Web3
) -> None:
    dep = module_deployment
    eoa = w3.eth.accounts[4]

    def cfg(**over: Any) -> dict[str, Any]:
        return dev_backend_config(module_anvil, dep, **over)

    refused(module_anvil, cfg(adjudicator=eoa), f"no contract code at the adjudicator {eoa}")
    refused(module_anvil, cfg(adjudicator=dep.trivial_app), "is not a Perun adjudicator")
    refused(
        module_anvil,
        cfg(assets=[other.asset_holder_eth]),
        f"belongs to adjudicator {other.adjudicator}, not {dep.adjudicator}",
    )
    refused(module_anvil, cfg(assets=[eoa]), f"no contract code at the asset holder {eoa}")
    refused(
        module_anvil,
        cfg(assets=[{"holder": dep.asset_holder_erc20, "token": other.token}]),
        f"keeps token {dep.token}, not {other.token}",
    )
    refused(  # an ERC-20 holder declared as an ETH holder (deposits would send ETH to it)
        module_anvil,
        cfg(assets=[{"holder": dep.asset_holder_erc20}]),
        f"is configured for ETH but keeps token {dep.token}",
    )
    refused(
        module_anvil,
        cfg(assets=[{"holder": dep.asset_holder_eth, "token": dep.token}]),
        f"keeps token no token (it holds ETH), not {dep.token}",
    )
    refused(module_anvil, cfg(payment_app=eoa), f"no contract code at the payment app {eoa}")


async def test_token_decimals_are_checked_when_configured(
    module_anvil: AnvilNode, module_deployment: Deployment
) -> None:
    dep = module_deployment

    def with_decimals(n: int) -> dict[str, Any]:
        asset = {"holder": dep.asset_holder_erc20, "token": dep.token, "decimals": n}
        return dev_backend_config(module_anvil, dep, assets=[dep.asset_holder_eth, asset])

    refused(module_anvil, with_decimals(6), f"the token {dep.token} has 18 decimals")
    backend = EthBackend.from_config(with_decimals(18))
    await backend.close()


async def test_a_backend_built_by_hand_can_be_verified(
    module_anvil: AnvilNode, module_deployment: Deployment
) -> None:
    node = EthNode(module_anvil.url)
    adjudicator = parse_hex_address(module_deployment.adjudicator)
    holders = [HolderInfo(parse_hex_address(module_deployment.asset_holder_eth), ETH)]
    wrong = EthBackend(EthChain(node, adjudicator, holders, chain_id=999))
    try:
        with pytest.raises(ChainConfigError, match="configured for chain 999"):
            await wrong.verify()
        right = EthBackend(EthChain(node, adjudicator, holders, chain_id=module_anvil.chain_id))
        await right.verify()
    finally:
        await node.close()


def test_an_unreachable_node_is_a_connection_error_not_a_configuration_error(
    module_deployment: Deployment,
) -> None:
    cfg = {"rpc": f"http://127.0.0.1:{free_port()}", "adjudicator": module_deployment.adjudicator}
    with pytest.raises(NodeConnectionError, match="cannot reach"):
        EthBackend.from_config(cfg)
