"""perun-eth runs every conformance suite of perun_core.testing on a real anvil node.

The suites run on the module's own node (``module_anvil``): their channels and faucet transfers
must not change the state the contract and gas tests measure on the session node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from perun_eth import EthBackend
from perun_eth.testing import (
    AnvilNode,
    Deployment,
    dev_backend_config,
)

from perun_core.channel.types import Asset
from perun_core.testing.adjudicator import AdjudicatorConformance
from perun_core.testing.campaign import run_campaign
from perun_core.testing.chain import ChainConformance
from perun_core.testing.client import TwoPartyConformance
from perun_core.testing.dispute import DisputeConformance
from perun_core.testing.force import ForceExecutionConformance
from perun_core.testing.funder import FunderConformance
from perun_core.testing.parties import PartyFactory
from perun_core.testing.safety import FundSafetyConformance
from perun_core.testing.subchannels import HostileSubChannelConformance, SubChannelConformance
from perun_core.wire.local_bus import LocalBus

CAMPAIGN_SEEDS = [1, 2, 3, 5, 6, 7, 9, 17, 24]  # one run of each scenario


class _OnAnvil:
    @pytest.fixture
    def backend_config(
        self, module_anvil: AnvilNode, module_deployment: Deployment
    ) -> dict[str, Any]:
        return dev_backend_config(module_anvil, module_deployment)

    @pytest.fixture
    async def backend(self, backend_config: dict[str, Any]) -> AsyncIterator[EthBackend]:
        b = EthBackend.from_config(backend_config)
        yield b
        await b.close()

    @pytest.fixture
    def asset(self, backend: EthBackend, module_deployment: Deployment) -> Asset:
        return backend.asset(module_deployment.asset_holder_erc20)  # gas fees never touch it

    @pytest.fixture
    async def parties(self, backend: EthBackend) -> AsyncIterator[PartyFactory]:
        factory = PartyFactory(backend, LocalBus())
        yield factory
        await factory.close()


class TestEthChain(_OnAnvil, ChainConformance):
    pass


class TestEthFunder(_OnAnvil, FunderConformance):
    pass


class TestEthAdjudicator(_OnAnvil, AdjudicatorConformance):
    pass


class TestEthTwoParty(_OnAnvil, TwoPartyConformance):
    pass


class TestEthDispute(_OnAnvil, DisputeConformance):
    pass


class TestEthFundSafety(_OnAnvil, FundSafetyConformance):
    pass


class TestEthSubChannels(_OnAnvil, SubChannelConformance):
    pass


class TestEthHostileSubChannels(_OnAnvil, HostileSubChannelConformance):
    pass


class TestEthForce(_OnAnvil, ForceExecutionConformance):
    @pytest.fixture
    def force_app(self, module_deployment: Deployment) -> bytes:
        """The deployed TrivialApp: its on-chain rule accepts every transition."""
        return bytes.fromhex(module_deployment.trivial_app.removeprefix("0x"))


class TestEthCampaign(_OnAnvil):
    async def test_adversarial_campaign_on_anvil(self, backend: EthBackend, asset: Asset) -> None:
        """A fixed-seed slice of Mallory's campaign on anvil (one run per scenario)."""
        summary = await run_campaign(backend, asset, CAMPAIGN_SEEDS)
        report = summary.as_dict()
        assert summary.funds_lost == 0 and summary.hangs == 0, report
        assert summary.untyped_errors == 0 and summary.passed == summary.runs, report
