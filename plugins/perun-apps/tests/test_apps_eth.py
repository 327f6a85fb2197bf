"""The shipped apps on anvil: the app conformance suite against the deployed contracts, the
deployment and configuration of app contracts, and a dev ledger with the apps ready."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("perun_eth")

from perun_apps import htlc, tictactoe
from perun_apps.testing import htlc_cases, tictactoe_cases
from perun_eth import EthBackend
from perun_eth.chain import checksum
from perun_eth.config_check import EthChainConfigError
from perun_eth.deploy import DeploymentRecord
from perun_eth.testing import AnvilNode, Deployment, dev_backend_config

from perun_core.channel.app import AppDefinition
from perun_core.channel.types import Asset
from perun_core.client import Client
from perun_core.errors import UnknownAppError
from perun_core.testing.apps import AppCase, AppConformance
from perun_core.wire.local_bus import LocalBus


class _OnAnvil:
    @pytest.fixture
    async def backend(
        self, module_anvil: AnvilNode, module_deployment: Deployment
    ) -> AsyncIterator[EthBackend]:
        b = EthBackend.from_config(dev_backend_config(module_anvil, module_deployment))
        yield b
        await b.close()

    @pytest.fixture
    def asset(self, backend: EthBackend, module_deployment: Deployment) -> Asset:
        return backend.asset(module_deployment.asset_holder_erc20)  # no gas fee touches it


class TestTicTacToeOnAnvil(_OnAnvil, AppConformance):
    @pytest.fixture
    def app_definition(self) -> AppDefinition:
        return tictactoe.DEFINITION

    @pytest.fixture
    def app_cases(self) -> list[AppCase]:
        return tictactoe_cases()


class TestHtlcOnAnvil(_OnAnvil, AppConformance):
    @pytest.fixture
    def app_definition(self) -> AppDefinition:
        return htlc.DEFINITION

    @pytest.fixture
    def app_cases(self) -> list[AppCase]:
        return htlc_cases()


def test_the_deployment_records_and_configures_every_installed_app(
    module_anvil: AnvilNode, module_deployment: Deployment
) -> None:
    assert set(module_deployment.apps) == {"tictactoe", "htlc"}
    assert {"app tictactoe", "app htlc"} <= set(module_deployment.deploy_gas)
    from perun_eth.testing import deployment_record

    record = deployment_record(module_deployment)
    again = DeploymentRecord.from_json(record.to_json())
    assert again.apps == module_deployment.apps
    assert again.config()["apps"] == module_deployment.apps
    # The contract at each address is the app's artifact (runtime code of the artifact).
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(module_anvil.url))
    for name, d in (("tictactoe", tictactoe.DEFINITION), ("htlc", htlc.DEFINITION)):
        art: Any = d.on_chain["eth"]
        code = bytes(w3.eth.get_code(Web3.to_checksum_address(module_deployment.apps[name])))
        assert code == bytes.fromhex(art["deployedBytecode"][2:])


async def test_backend_app_ids_come_from_the_apps_table(
    module_anvil: AnvilNode, module_deployment: Deployment
) -> None:
    backend = EthBackend.from_config(dev_backend_config(module_anvil, module_deployment))
    try:
        for name in ("tictactoe", "htlc"):
            assert backend.app_id(name) == bytes.fromhex(module_deployment.apps[name][2:])
        assert backend.app_id("payment") == backend.payment_app_id()
        assert backend.app_id("chess") is None
        client = Client(account=backend.wallet().new_account(), backend=backend, bus=LocalBus())
        assert client.app_id("htlc") == backend.app_id("htlc")
        assert isinstance(client.apps.get(client.app_id("tictactoe")), tictactoe.TicTacToeApp)
        with pytest.raises(UnknownAppError):
            client.app_id("chess")
    finally:
        await backend.close()


def test_an_app_address_without_code_is_refused_at_configuration(
    module_anvil: AnvilNode, module_deployment: Deployment
) -> None:
    cfg = dev_backend_config(module_anvil, module_deployment)
    cfg["apps"] = {**cfg["apps"], "htlc": "0x" + "42" * 20}
    with pytest.raises(EthChainConfigError, match="htlc"):
        EthBackend.from_config(cfg)
    cfg["apps"] = {"htlc": "not an address"}
    from perun_eth.errors import EthConfigError

    with pytest.raises(EthConfigError):
        EthBackend.from_config(cfg)


async def test_a_dev_ledger_has_the_apps_deployed() -> None:
    async with EthBackend.dev_ledger() as dev:
        backend = dev.backend
        assert isinstance(backend, EthBackend)
        cfg = backend.peer_config()
        assert set(json.loads(json.dumps(cfg["apps"]))) == {"tictactoe", "htlc"}
        client = Client(account=backend.wallet().new_account(), backend=backend, bus=LocalBus())
        aid = client.app_id("tictactoe")
        assert len(aid) == 20 and await backend.node.code(checksum(aid))
