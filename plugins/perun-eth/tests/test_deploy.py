"""Deploying with :func:`perun_eth.deploy.deploy` and validating deployments.

Runs on a node of this module's own (``module_anvil``), so the contract and gas tests of the
session node are not disturbed. Scenarios: our own async deployment and one made by someone
else (sync web3, :func:`perun_eth.testing.deploy_contracts`) both validate, strictly too; an
operator misconfigures the adjudicator (an EOA, an app contract), wires an asset holder of
another deployment, or names the wrong token: each is a DeploymentError naming the culprit; a
foreign compile with other bytes passes the behavioural checks but not strict mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from perun_eth.contracts import load_artifact
from perun_eth.deploy import DeploymentRecord, deploy, validate
from perun_eth.errors import DeploymentError
from perun_eth.node import EthNode, TxOptions
from perun_eth.testing import AnvilNode, Deployment, deploy_contracts
from perun_eth.wallet import EthWallet
from web3 import Web3


@pytest.fixture(scope="module")
def w3(module_anvil: AnvilNode) -> Web3:
    return Web3(Web3.HTTPProvider(module_anvil.url))


@pytest.fixture(scope="module")
def other(w3: Web3, module_deployment: Deployment) -> Deployment:
    """A second, independent deployment on the same chain (its own adjudicator and token)."""
    del module_deployment  # deployed first, so addresses differ deterministically
    return deploy_contracts(w3, w3.eth.accounts[1], token_holders=w3.eth.accounts[1:2])


@pytest.fixture
async def node(module_anvil: AnvilNode) -> AsyncIterator[EthNode]:
    n = EthNode(module_anvil.url, TxOptions(poll_interval=0.02))
    try:
        yield n
    finally:
        await n.close()


def holders_of(dep: Deployment) -> list[tuple[str, str | None]]:
    return [(dep.asset_holder_eth, None), (dep.asset_holder_erc20, dep.token)]


def deploy_raw(w3: Web3, runtime: bytes) -> str:
    """Deploy ``runtime`` as it is: init code ``CODECOPY``-ing it into memory and returning it."""
    n = len(runtime)
    init = bytes([0x61]) + n.to_bytes(2, "big") + bytes.fromhex("80600c6000396000f3") + runtime
    tx = w3.eth.send_transaction({"from": w3.eth.accounts[2], "data": "0x" + init.hex()})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    assert receipt["status"] == 1
    address: str = receipt["contractAddress"]
    assert bytes(w3.eth.get_code(address)) == runtime  # type: ignore[arg-type]
    return address


# --- passing -----------------------------------------------------------------------------------


async def test_our_async_deployment_validates_strictly(
    module_anvil: AnvilNode, node: EthNode
) -> None:
    deployer = EthWallet().add_seed("test_deploy/deployer")
    module_anvil.set_balance(deployer.checksum_address, 10**20)
    seen: list[str] = []
    record = await deploy(
        node, deployer, with_token=False, apps={}, on_receipt=lambda name, r: seen.append(name)
    )
    assert seen == ["Adjudicator", "AssetHolderETH"]
    assert record.token is None and record.asset_holder_erc20 is None
    assert record.chain_id == module_anvil.chain_id
    assert record.block > 0
    assert all(tx["gas"] > 21_000 for tx in record.transactions.values())
    assert record.config()["assets"] == [record.asset_holder_eth]
    await validate(node, record.adjudicator, [(record.asset_holder_eth, None)], strict=True)


async def test_a_foreign_deployment_validates(node: EthNode, module_deployment: Deployment) -> None:
    dep = module_deployment
    await validate(node, dep.adjudicator, holders_of(dep))
    await validate(node, dep.adjudicator, holders_of(dep), strict=True)  # same artifacts


def test_deployment_record_round_trips_and_refuses_garbage(tmp_path: Path) -> None:
    rec = DeploymentRecord(
        chain_id=5,
        adjudicator="0x" + "11" * 20,
        asset_holder_eth="0x" + "22" * 20,
        block=9,
        transactions={"Adjudicator": {"tx": "0xab", "gas": 1, "address": "0x" + "11" * 20}},
    )
    assert DeploymentRecord.from_json(rec.to_json()) == rec
    (tmp_path / "r.json").write_text(rec.to_json())
    assert DeploymentRecord.load(tmp_path / "r.json") == rec
    with pytest.raises(DeploymentError, match="cannot read deployment file"):
        DeploymentRecord.load(tmp_path / "missing.json")
    for bad in ("[1, 2", '{"chain_id": 1}', '{"adjudicator": "0x", "bogus": 1}'):
        with pytest.raises(DeploymentError, match="not a deployment record"):
            DeploymentRecord.from_json(bad)


# --- failing -----------------------------------------------------------------------------------


async def test_an_eoa_as_adjudicator_is_refused(
    node: EthNode, w3: Web3, module_deployment: Deployment
) -> None:
    eoa = w3.eth.accounts[3]
    with pytest.raises(DeploymentError, match=f"no contract code at the adjudicator {eoa}"):
        await validate(node, eoa, holders_of(module_deployment))


async def test_an_app_contract_as_adjudicator_is_refused(
    node: EthNode, module_deployment: Deployment
) -> None:
    app = module_deployment.trivial_app
    with pytest.raises(DeploymentError, match=f"{app} is not a Perun adjudicator"):
        await validate(node, app, holders_of(module_deployment))


async def test_a_holder_of_another_adjudicator_is_refused(
    node: EthNode, module_deployment: Deployment, other: Deployment
) -> None:
    ours = module_deployment
    with pytest.raises(DeploymentError) as info:
        await validate(node, ours.adjudicator, [(other.asset_holder_eth, None)])
    assert info.value.reason == (
        f"the asset holder {other.asset_holder_eth} belongs to adjudicator "
        f"{other.adjudicator}, not {ours.adjudicator}"
    )
    # The other deployment is consistent in itself.
    await validate(node, other.adjudicator, holders_of(other))


async def test_an_erc20_holder_with_the_wrong_token_is_refused(
    node: EthNode, module_deployment: Deployment, other: Deployment
) -> None:
    ours = module_deployment
    with pytest.raises(DeploymentError, match=f"keeps token {ours.token}, not {other.token}"):
        await validate(node, ours.adjudicator, [(ours.asset_holder_erc20, other.token)])


@pytest.mark.parametrize("what", ["eoa", "app"])
async def test_a_holder_that_is_no_holder_is_refused(
    node: EthNode, w3: Web3, module_deployment: Deployment, what: str
) -> None:
    dep = module_deployment
    holder = w3.eth.accounts[3] if what == "eoa" else dep.trivial_app
    needle = "no contract code at the asset holder" if what == "eoa" else "is not a Perun asset"
    with pytest.raises(DeploymentError, match=needle):
        await validate(node, dep.adjudicator, [(holder, None)])


async def test_strict_mode_refuses_a_compatible_foreign_build(node: EthNode, w3: Web3) -> None:
    """An adjudicator whose runtime differs from our artifact only in a revert message (what a
    different compiler setting or a fork might produce): it encodes channel IDs and states
    as ours, so it passes; strict mode, which wants our exact bytecode, refuses it."""
    runtime = load_artifact("Adjudicator").deployed_bytecode
    assert b"unequal length" in runtime
    foreign = deploy_raw(w3, runtime.replace(b"unequal length", b"unequal LENGTH"))
    holders: list[tuple[str, Any]] = []
    await validate(node, foreign, holders)
    with pytest.raises(DeploymentError, match="is not our artifact \\(strict mode\\)"):
        await validate(node, foreign, holders, strict=True)
    # Appending bytes (another length) is refused too, and our own runtime copied passes.
    longer = deploy_raw(w3, runtime + b"\x00")
    with pytest.raises(DeploymentError, match="strict mode"):
        await validate(node, longer, holders, strict=True)
    await validate(node, deploy_raw(w3, runtime), holders, strict=True)
