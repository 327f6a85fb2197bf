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

from typing import TYPE_CHECKING

from perun_core.lazy import lazy_exports

if TYPE_CHECKING:
    from perun_eth.adjudicator import EthAdjudicator
    from perun_eth.backend import EthBackend
    from perun_eth.deploy import DeploymentRecord, deploy, validate
    from perun_eth.events import BlockTimeout, EthSubscription
    from perun_eth.funder import EthFunder
    from perun_eth.node import EthNode, Receipt, TxOptions
    from perun_eth.wallet import EthAccount, EthWallet
else:
    # Importing the package (the plugin loader does, for its entry point) must not import web3:
    # that takes over a second. The names below are imported from their modules on first use.
    __getattr__ = lazy_exports(
        __name__,
        {
            "BlockTimeout": "perun_eth.events",
            "DeploymentRecord": "perun_eth.deploy",
            "EthAccount": "perun_eth.wallet",
            "EthAdjudicator": "perun_eth.adjudicator",
            "EthBackend": "perun_eth.backend",
            "EthFunder": "perun_eth.funder",
            "EthNode": "perun_eth.node",
            "EthSubscription": "perun_eth.events",
            "EthWallet": "perun_eth.wallet",
            "Receipt": "perun_eth.node",
            "TxOptions": "perun_eth.node",
            "deploy": "perun_eth.deploy",
            "validate": "perun_eth.deploy",
        },
    )


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
