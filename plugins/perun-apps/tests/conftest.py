"""Fixtures of the perun-apps tests: hypothesis without deadlines; for the Ethereum tests an
anvil node of the module's own with the perun-eth contracts and the installed apps deployed.

anvil comes from ``contracts/node_modules`` (``npm ci --prefix contracts``); without it the
Ethereum tests are skipped locally but fail in CI (``CI`` set).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

settings.register_profile("perun", deadline=None)
settings.load_profile("perun")


@pytest.fixture(scope="module")
def module_anvil() -> Iterator[Any]:
    """A fresh anvil (stopped by PID after the module)."""
    eth_testing = pytest.importorskip("perun_eth.testing")
    try:
        eth_testing.find_anvil()
    except eth_testing.AnvilNotFoundError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))
    with eth_testing.AnvilNode() as node:
        yield node


@pytest.fixture(scope="module")
def module_deployment(module_anvil: Any) -> Any:
    """The perun-eth contracts and every installed app on :func:`module_anvil`."""
    from perun_eth.testing import deploy_contracts
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(module_anvil.url))
    return deploy_contracts(w3, w3.eth.accounts[0], token_holders=w3.eth.accounts[:1])
