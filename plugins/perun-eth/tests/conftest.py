"""Fixtures of the perun-eth tests: one anvil node per session, a fresh snapshot per test.

anvil comes from ``contracts/node_modules`` (``npm ci --prefix contracts``). Without it the
node-backed tests are skipped locally, but fail in CI (``CI`` set), where it must be installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from eth_helpers import Chain
from hypothesis import settings
from perun_eth.testing import (
    AnvilNode,
    AnvilNotFoundError,
    Deployment,
    deploy_contracts,
    find_anvil,
)
from web3 import Web3

# Speed is measured by the benchmarks, never by timed assertions: hypothesis examples get no
# deadline (on a loaded machine one example once took 0.4 s and failed the run).
settings.register_profile("perun", deadline=None)
settings.load_profile("perun")


# Gas used per operation, collected by the tests and printed in the terminal summary.
_GAS_KEY = pytest.StashKey[dict[str, int]]()


def _require_anvil() -> None:
    try:
        find_anvil()
    except AnvilNotFoundError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilNode]:
    _require_anvil()
    with AnvilNode() as node:
        yield node


@pytest.fixture(scope="module")
def module_anvil() -> Iterator[AnvilNode]:
    """A node of the test module's own: for tests whose transactions must not change the
    state that the contract and gas tests measure on the session node."""
    _require_anvil()
    with AnvilNode() as node:
        yield node


@pytest.fixture(scope="module")
def module_deployment(module_anvil: AnvilNode) -> Deployment:
    """Our contracts on :func:`module_anvil`; the first node account holds the tokens."""
    w3 = Web3(Web3.HTTPProvider(module_anvil.url))
    return deploy_contracts(w3, w3.eth.accounts[0], token_holders=w3.eth.accounts[:1])


@pytest.fixture(scope="session")
def w3(anvil: AnvilNode) -> Web3:
    return Web3(Web3.HTTPProvider(anvil.url))


@pytest.fixture(scope="session")
def deployment(w3: Web3) -> Deployment:
    accounts = w3.eth.accounts
    return deploy_contracts(w3, accounts[0], token_holders=accounts[:4])


@pytest.fixture
def chain(
    request: pytest.FixtureRequest, anvil: AnvilNode, w3: Web3, deployment: Deployment
) -> Iterator[Chain]:
    """The deployed chain, reverted to the post-deployment snapshot after the test."""
    sid = anvil.snapshot()
    c = Chain(anvil, w3, deployment)
    try:
        yield c
    finally:
        anvil.revert(sid)
        request.config.stash.setdefault(_GAS_KEY, {}).update(c.gas)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    gas = config.stash.get(_GAS_KEY, {})
    if not gas:
        return
    from gas_reference import REFERENCE

    terminalreporter.section("perun-eth gas per operation (ours vs. the reference contracts)")
    for name, used in sorted(gas.items()):
        ref = REFERENCE.get(name)
        ratio = f"{used / ref:5.2f}x" if ref else "     "
        terminalreporter.write_line(f"{name:<44} {used:>10,} {ref or 0:>10,} {ratio}")
