"""The development chain of ``perun demo --backend eth``.

:func:`demo_ledger` (what :meth:`EthBackend.demo_ledger <perun_eth.backend.EthBackend>`
returns) starts anvil on a free ``127.0.0.1`` port, deploys the perun-eth contracts from a
fresh key (:func:`perun_eth.deploy.deploy`) and yields an ``eth`` backend on them, tuned for
a local node (fast polling, one confirmation). The demo's asset is the PerunToken: gas fees
move ETH balances, never token balances, so the demo compares token balances exactly. anvil
is stopped by its PID on exit, also after an error or Ctrl-C.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from perun_core.channel.types import Address
from perun_core.interfaces.chain import LedgerTransaction, TransactionHook
from perun_eth.anvil import AnvilNode, AnvilNotFoundError
from perun_eth.backend import EthBackend
from perun_eth.chain import parse_hex_address
from perun_eth.deploy import DeploymentRecord, deploy
from perun_eth.errors import EthConfigError, NodeConnectionError
from perun_eth.node import EthNode, Receipt, ReceiptHook, TxOptions
from perun_eth.wallet import EthWallet

DEPLOYER_FUNDS = 10**20
"""Wei given to the throw-away deployer key (100 ETH)."""

_DEV_TX_OPTIONS: dict[str, Any] = {
    # anvil mines every transaction at once: poll fast, one confirmation is final.
    "poll_interval": 0.02,
    "confirmations": 1,
    "tx_timeout": 30.0,
    "secondary_grace": 0.2,
}

_E = TypeVar("_E", bound=EthBackend)


def ledger_transaction(receipt: Receipt) -> LedgerTransaction:
    """``receipt`` as the chain-neutral record demos print."""
    return LedgerTransaction(
        operation=receipt.operation,
        sender=Address(parse_hex_address(receipt.sender, "sender")),
        tx_hash=receipt.tx_hash,
        gas_used=receipt.gas_used,
    )


def demo_config(record: DeploymentRecord, rpc: str, faucet_account: str) -> dict[str, Any]:
    """The backend configuration of the demo: ``record`` on the node at ``rpc``, the
    PerunToken first among the assets (the demo's asset), ETH second.

    Raises:
        EthConfigError: the deployment has no PerunToken.
    """
    cfg = record.config()
    if not (record.asset_holder_erc20 and record.token):
        raise EthConfigError("the demo needs a deployment with the PerunToken and its holder")
    cfg["assets"] = [
        {"holder": record.asset_holder_erc20, "token": record.token},
        {"holder": record.asset_holder_eth},
    ]
    return {"rpc": rpc, **cfg, **_DEV_TX_OPTIONS, "faucet_account": faucet_account}


@asynccontextmanager
async def demo_ledger(
    cls: type[_E], on_transaction: TransactionHook | None = None
) -> AsyncIterator[_E]:
    """A fresh anvil with the perun-eth contracts and a backend of class ``cls`` on it.

    Args:
        cls: the backend class (:class:`~perun_eth.backend.EthBackend` or a subclass).
        on_transaction: called with every confirmed transaction: the six deployments, then
            every deposit, approval, dispute and withdrawal of the backend's components.

    Yields:
        The backend; ``default_assets()[0]`` is the PerunToken (its faucet sends tokens
        from the node's first account and tops the receiver up with ETH for gas).

    Raises:
        NodeConnectionError: anvil is not installed or did not start.
        ChainError: a deployment failed.
    """

    def report(receipt: Receipt) -> None:
        if on_transaction is not None:
            on_transaction(ledger_transaction(receipt))

    anvil = AnvilNode()
    try:
        # Started synchronously in this thread: the child dies with the thread that forked
        # it (PR_SET_PDEATHSIG), so it must not be a short-lived worker thread.
        try:
            anvil.start()
        except (AnvilNotFoundError, RuntimeError) as e:
            raise NodeConnectionError(
                f"cannot start a local anvil for the demo: {e}", operation="anvil"
            ) from e
        record, token_source = await _deploy(anvil.url, report)
        backend = cls.from_config(demo_config(record, anvil.url, token_source))
        backend.on_receipt = report
        try:
            yield backend
        finally:
            await backend.close()
    finally:
        anvil.stop()


async def _deploy(url: str, report: ReceiptHook) -> tuple[DeploymentRecord, str]:
    """Deploy every contract from a fresh, funded key; the node's first account gets the
    PerunTokens (the faucet's source). Returns the record and that account."""
    node = EthNode(url, TxOptions(poll_interval=_DEV_TX_OPTIONS["poll_interval"], confirmations=1))
    try:
        deployer = EthWallet().new_account()
        await node.request("anvil_setBalance", deployer.checksum_address, hex(DEPLOYER_FUNDS))
        token_source = str((await node.request("eth_accounts"))[0])
        record = await deploy(
            node, deployer, token_holders=[token_source], on_receipt=lambda _, r: report(r)
        )
        return record, token_source
    finally:
        await node.close()
