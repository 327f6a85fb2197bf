"""perun-eth: the Ethereum backend of perun-py.

:class:`EthBackend` (registered as ``eth``) drives the Perun contracts on one chain through
one node: :class:`EthWallet` keys (raw, seeded or keystore files), :class:`EthFunder`
deposits (ETH and ERC-20), :class:`EthAdjudicator` disputes and withdrawals, events by
polling logs. The ABI encodings and signatures live in :mod:`perun_eth.encoding`, the
compiled contracts in :mod:`perun_eth.contracts`, deployment in :mod:`perun_eth.deploy`,
and test helpers (anvil, deployment) in :mod:`perun_eth.testing`::

    backend = EthBackend.from_config({"rpc": "http://127.0.0.1:8545",
                                      "deployment": "deployment.json",
                                      "keystores": [{"path": "alice.json", "password": pw}]})
"""

from __future__ import annotations

from perun_eth import _web3_first  # noqa: F401  (must stay the first import)
from perun_eth.adjudicator import EthAdjudicator
from perun_eth.backend import EthBackend
from perun_eth.deploy import DeploymentRecord, deploy, validate
from perun_eth.events import BlockTimeout, EthSubscription
from perun_eth.funder import EthFunder
from perun_eth.node import EthNode, Receipt, TxOptions
from perun_eth.wallet import EthAccount, EthWallet

__all__ = [
    "BlockTimeout",
    "DeploymentRecord",
    "EthAccount",
    "EthAdjudicator",
    "EthBackend",
    "EthFunder",
    "EthNode",
    "EthSubscription",
    "EthWallet",
    "Receipt",
    "TxOptions",
    "deploy",
    "validate",
]
