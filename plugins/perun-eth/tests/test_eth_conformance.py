"""perun-eth runs every conformance suite of perun_core.testing on a real anvil node.

The suites get a node of their own (module scope): their channels and faucet transfers must
not change the state the contract and gas tests measure on the session node.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from perun_eth import EthBackend
from perun_eth.testing import (
    AnvilNode,
    AnvilNotFoundError,
    Deployment,
    deploy_contracts,
    dev_backend_config,
    find_anvil,
)
from web3 import Web3

from perun_core.channel.types import Asset
from perun_core.testing.adjudicator import AdjudicatorConformance
from perun_core.testing.chain import ChainConformance
from perun_core.testing.client import TwoPartyConformance
from perun_core.testing.dispute import DisputeConformance
from perun_core.testing.funder import FunderConformance
from perun_core.testing.parties import PartyFactory
from perun_core.wire.local_bus import LocalBus


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilNode]:
    try:
        find_anvil()
    except AnvilNotFoundError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))
    with AnvilNode() as node:
        yield node


@pytest.fixture(scope="module")
def deployment(anvil: AnvilNode) -> Deployment:
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    return deploy_contracts(w3, w3.eth.accounts[0], token_holders=w3.eth.accounts[:1])


class _OnAnvil:
    @pytest.fixture
    def backend_config(self, anvil: AnvilNode, deployment: Deployment) -> dict[str, Any]:
        return dev_backend_config(anvil, deployment)

    @pytest.fixture
    async def backend(self, backend_config: dict[str, Any]) -> AsyncIterator[EthBackend]:
        b = EthBackend.from_config(backend_config)
        yield b
        await b.close()

    @pytest.fixture
    def asset(self, backend: EthBackend, deployment: Deployment) -> Asset:
        return backend.asset(deployment.asset_holder_erc20)  # gas fees never touch it

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
