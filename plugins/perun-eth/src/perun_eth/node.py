"""The connection to one Ethereum node: RPC with retries, transactions, revert reasons.

Everything the funder, adjudicator and deploy command send goes through :meth:`EthNode.transact`:
a pre-flight ``eth_estimateGas`` that turns a revert into a typed error
before anything is signed, a limit of estimate times ``gas_multiplier`` capped at the block gas
limit, EIP-1559 fees (legacy ``gasPrice`` where the chain has no base fee), one
:class:`NonceManager` per sender, replacement with +12.5 % fees when a transaction is not mined
in time, and confirmation once the receipt is ``confirmations`` blocks deep and still canonical.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from perun_eth import _web3_first  # noqa: F401  (before web3: keeps the recursion limit)

# isort: split
from eth_abi.abi import decode as abi_decode
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import (
    ContractLogicError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
)

from perun_core.errors import ChainError
from perun_eth.errors import (
    NodeConnectionError,
    TransactionTimeoutError,
    error_for_revert,
)
from perun_eth.wallet import EthAccount

log = logging.getLogger("perun.eth")
T = TypeVar("T")

_ERROR_SELECTOR: Final = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR: Final = bytes.fromhex("4e487b71")  # Panic(uint256)
_FEE_BUMP_NUM, _FEE_BUMP_DEN = 9, 8  # +12.5 %: the minimum most nodes accept for a replacement


@dataclass(frozen=True, slots=True)
class TxOptions:
    """How transactions are sent and confirmed.

    Attributes:
        confirmations: blocks a receipt must be deep (1: mined).
        gas_multiplier: gas limit = estimate times this (capped at the block gas limit).
        poll_interval: seconds between receipt, block and log polls.
        tx_timeout: seconds to wait for a transaction to be mined before replacing it.
        max_replacements: fee bumps before giving up with :class:`TransactionTimeoutError`.
        rpc_retries: attempts of an RPC call that failed transiently (connection, timeout,
            rate limit), with exponential backoff from ``rpc_backoff`` seconds.
        rpc_timeout: seconds per RPC request.
        priority_fee: the EIP-1559 tip in wei (default: the node's suggestion).
    """

    confirmations: int = 1
    gas_multiplier: float = 1.2
    poll_interval: float = 0.2
    tx_timeout: float = 60.0
    max_replacements: int = 5
    rpc_retries: int = 5
    rpc_backoff: float = 0.1
    rpc_timeout: float = 30.0
    priority_fee: int | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """A confirmed, successful transaction.

    Attributes:
        tx_hash: ``0x``-prefixed hash.
        block_number: the block it is in.
        gas_used: gas it used.
        fee: wei it cost its sender (gas used times the effective gas price).
        logs: its logs as web3 returned them.
        operation: what it did (``"deposit"``, ``"register"``, ...).
        sender: the checksummed address that sent and paid for it.
    """

    tx_hash: str
    block_number: int
    gas_used: int
    fee: int
    logs: Sequence[Any]
    operation: str
    sender: str = ""


ReceiptHook = Callable[[Receipt], None]
"""Called with every confirmed transaction of a funder or adjudicator (demo output, gas)."""


def revert_reason(err: ContractLogicError) -> str:
    """The revert string of a failed call (``"panic 0x11"`` for panics, ``""`` for none)."""
    data = err.data
    if isinstance(data, str) and data.startswith("0x"):
        try:
            raw = bytes.fromhex(data[2:])
        except ValueError:
            raw = b""
        if raw[:4] == _ERROR_SELECTOR:
            with contextlib.suppress(Exception):
                return str(abi_decode(["string"], raw[4:])[0])
        if raw[:4] == _PANIC_SELECTOR:
            with contextlib.suppress(Exception):
                return f"panic 0x{abi_decode(['uint256'], raw[4:])[0]:02x}"
        if data == "0x":
            return ""
    msg = str(err.message or err)
    prefix = "execution reverted: "
    return msg[len(prefix) :] if msg.startswith(prefix) else msg


def _is_transient(e: BaseException) -> bool:
    """Connection problems, timeouts and rate limits: worth retrying."""
    import aiohttp  # noqa: PLC0415 - only when an RPC call failed; keeps importing the node light

    if isinstance(e, aiohttp.ClientResponseError):
        return e.status in (429, 502, 503, 504)
    if isinstance(e, (aiohttp.ClientError, ConnectionError, TimeoutError, OSError)):
        return True
    text = str(e).lower()
    return "rate limit" in text or "too many requests" in text


class NonceManager:
    """Hands out one sender's nonces in order (see docs/plugins/ethereum-contracts.md).

    Starts from the node's pending count; :meth:`reserve` is used under :attr:`lock`, which
    the sender holds from reserving until the node accepted (or definitely refused) the
    transaction, so a refused nonce can be handed out again without leaving a gap.
    """

    def __init__(self, node: EthNode, address: str) -> None:
        self._node = node
        self._address = address
        self._next: int | None = None
        self.lock = asyncio.Lock()

    async def reserve(self) -> int:
        """The next nonce (call with :attr:`lock` held)."""
        if self._next is None:
            self._next = await self._node.pending_nonce(self._address)
        n = self._next
        self._next = n + 1
        return n

    def release(self, nonce: int) -> None:
        """Give ``nonce`` back: nothing with it reached the node (call with the lock held)."""
        if self._next == nonce + 1:
            self._next = nonce

    def resync(self) -> None:
        """Forget the counter; the next :meth:`reserve` asks the node again."""
        self._next = None


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # nobody may wait any more: do not log it as never retrieved


async def _run_to_end(aw: Awaitable[T]) -> T:
    """Await one web3 request, which runs to its end even if the caller is cancelled.

    web3's ``AsyncHTTPProvider`` takes a lock shared by the whole process for every request,
    acquired in a worker thread. A request cancelled while waiting for it leaves that thread
    to acquire the lock for nobody, and every later request of the process hangs (web3.py
    issue 3867). Callers here are cancelled routinely (a timeout's wait, a closing client), so
    each request runs in a task of its own; a cancelled caller only stops waiting for it.
    """
    task = asyncio.ensure_future(aw)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


class EthNode:
    """One node of one chain, shared by every funder and adjudicator of a backend.

    Args:
        url: the node's HTTP(S) JSON-RPC endpoint.
        options: transaction and polling options.
    """

    def __init__(self, url: str, options: TxOptions | None = None) -> None:
        self.url = url
        self.options = options or TxOptions()
        self.w3 = AsyncWeb3(
            AsyncHTTPProvider(
                url,
                request_kwargs={"timeout": self.options.rpc_timeout},
                # Retries are ours (retrying()); web3's own would multiply them.
                exception_retry_configuration=None,
            )
        )
        self._nonces: dict[str, NonceManager] = {}
        self._chain_id: int | None = None
        self._client_version: str | None = None

    # --- plain RPC ------------------------------------------------------------------------

    async def retrying(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()``, retried with exponential backoff while it fails transiently.

        Raises:
            NodeConnectionError: still failing after :attr:`TxOptions.rpc_retries` attempts.
        """
        delay = self.options.rpc_backoff
        for attempt in range(self.options.rpc_retries):
            try:
                return await _run_to_end(fn())
            except ChainError:
                raise
            except ContractLogicError:
                raise
            except Exception as e:
                if not _is_transient(e):
                    raise
                if attempt + 1 == self.options.rpc_retries:
                    raise NodeConnectionError(
                        f"node {self.url} unreachable ({type(e).__name__}: {e})", operation=what
                    ) from e
                log.debug("%s: transient RPC failure %r, retrying in %.2fs", what, e, delay)
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def request(self, method: str, *params: Any) -> Any:
        """A raw JSON-RPC call (retried on transient failures).

        Raises:
            ChainError: the node answered with an error.
            NodeConnectionError: the node cannot be reached.
        """

        async def once() -> Any:
            resp = await self.w3.provider.make_request(method, list(params))
            if "error" in resp:
                raise ChainError(str(resp["error"].get("message", resp["error"])), operation=method)
            return resp.get("result")

        return await self.retrying(method, once)

    async def chain_id(self) -> int:
        """The chain ID (asked once)."""
        if self._chain_id is None:
            self._chain_id = int(await self.retrying("eth_chainId", lambda: self.w3.eth.chain_id))
        return self._chain_id

    async def client_version(self) -> str:
        """The node's ``web3_clientVersion`` (asked once)."""
        if self._client_version is None:
            self._client_version = str(await self.request("web3_clientVersion"))
        return self._client_version

    async def is_dev_node(self) -> bool:
        """Whether the node is anvil (it offers ``anvil_*`` and ``evm_*`` test methods)."""
        return (await self.client_version()).lower().startswith("anvil")

    async def block_number(self) -> int:
        """The head block number."""
        return int(await self.retrying("eth_blockNumber", lambda: self.w3.eth.block_number))

    async def block(self, ident: int | str = "latest") -> Any:
        """A block header (``number``, ``timestamp``, ``baseFeePerGas``, ``gasLimit``, ...)."""
        return await self.retrying(
            "eth_getBlockByNumber",
            lambda: self.w3.eth.get_block(ident),  # type: ignore[arg-type]
        )

    async def timestamp(self) -> int:
        """The latest block's timestamp: ledger time."""
        return int((await self.block("latest"))["timestamp"])

    async def pending_nonce(self, address: str) -> int:
        """``eth_getTransactionCount(address, "pending")``."""
        return int(
            await self.retrying(
                "eth_getTransactionCount",
                lambda: self.w3.eth.get_transaction_count(address, "pending"),  # type: ignore[arg-type]
            )
        )

    async def balance(self, address: str) -> int:
        """The ETH balance of ``address`` in wei."""
        return int(
            await self.retrying("eth_getBalance", lambda: self.w3.eth.get_balance(address))  # type: ignore[arg-type]
        )

    async def code(self, address: str) -> bytes:
        """The runtime code at ``address``."""
        return bytes(
            await self.retrying("eth_getCode", lambda: self.w3.eth.get_code(address))  # type: ignore[arg-type]
        )

    async def call(
        self, to: str, data: str | bytes, *, block: int | str = "latest", operation: str = "call"
    ) -> bytes:
        """``eth_call`` of ``data`` on ``to``.

        Raises:
            ContractRevertError: (or a subclass) the call reverted.
        """
        tx: Any = {"to": to, "data": data}
        try:
            out = await self.retrying(
                operation,
                lambda: self.w3.eth.call(tx, block),  # type: ignore[arg-type]
            )
        except ContractLogicError as e:
            raise error_for_revert(revert_reason(e), operation=operation) from e
        return bytes(out)

    async def get_logs(self, flt: dict[str, Any]) -> list[Any]:
        """``eth_getLogs`` with ``flt``."""
        return list(await self.retrying("eth_getLogs", lambda: self.w3.eth.get_logs(flt)))  # type: ignore[arg-type]

    async def transaction(self, tx_hash: str | bytes) -> Any:
        """A transaction by hash."""
        return await self.retrying(
            "eth_getTransactionByHash",
            lambda: self.w3.eth.get_transaction(tx_hash),  # type: ignore[arg-type]
        )

    # --- transactions -----------------------------------------------------------------------

    def nonces(self, address: str) -> NonceManager:
        """The nonce manager of sender ``address`` on this chain."""
        nm = self._nonces.get(address)
        if nm is None:
            nm = self._nonces[address] = NonceManager(self, address)
        return nm

    async def _fees(self) -> dict[str, int]:
        head = await self.block("latest")
        base = head.get("baseFeePerGas")
        if base is None:
            price = int(await self.retrying("eth_gasPrice", lambda: self.w3.eth.gas_price))
            return {"gasPrice": price}
        tip = self.options.priority_fee
        if tip is None:
            try:
                tip = int(
                    await self.retrying(
                        "eth_maxPriorityFeePerGas", lambda: self.w3.eth.max_priority_fee
                    )
                )
            except Exception:  # noqa: BLE001 - the fee-tip RPC is optional: any failure falls back to 1 gwei
                tip = 10**9
        return {"maxFeePerGas": 2 * int(base) + tip, "maxPriorityFeePerGas": tip}

    async def transact(
        self,
        sender: EthAccount,
        to: str | None,
        data: str | bytes,
        *,
        value: int = 0,
        operation: str,
    ) -> Receipt:
        """Send a transaction from ``sender`` and wait until it is confirmed.

        Args:
            sender: pays gas and signs the transaction.
            to: the contract called (``None``: deploy ``data`` as creation code).
            data: calldata (hex or bytes).
            value: wei sent along.
            operation: a name for logs and errors.

        Returns:
            The confirmed receipt.

        Raises:
            ContractRevertError: (or a subclass chosen by the revert string) the pre-flight
                estimate reverted and nothing was sent, or the mined transaction failed
                (``mined`` set; :class:`TransactionFailedError` for reasons without their
                own error, e.g. out of gas).
            TransactionTimeoutError: not mined after every fee bump.
            NodeConnectionError: the node cannot be reached.
        """
        frm = sender.checksum_address
        base: dict[str, Any] = {"from": frm, "value": value, "data": data}
        if to is not None:
            base["to"] = to
        try:
            estimate = await self.retrying(
                operation,
                lambda: self.w3.eth.estimate_gas(base),  # type: ignore[arg-type]
            )
        except ContractLogicError as e:
            raise error_for_revert(revert_reason(e), operation=operation) from e
        except Web3Exception as e:  # e.g. "insufficient funds for gas * price + value"
            raise ChainError(f"the node refused the transaction: {e}", operation=operation) from e
        head = await self.block("latest")
        gas = min(int(estimate * self.options.gas_multiplier), int(head["gasLimit"]))
        fees = await self._fees()
        chain_id = await self.chain_id()
        nm = self.nonces(frm)
        async with nm.lock:
            nonce = await nm.reserve()
            tx = {**base, "gas": gas, "nonce": nonce, "chainId": chain_id, **fees}
            try:
                tx_hash = await self._send_signed(sender, tx, operation)
            except _NonceTooLowError:
                nm.resync()
                nonce = await nm.reserve()
                tx["nonce"] = nonce
                try:
                    tx_hash = await self._send_signed(sender, tx, operation)
                except BaseException:
                    nm.release(nonce)
                    raise
            except BaseException:
                nm.release(nonce)
                raise
        hashes = [tx_hash]
        for bump in range(self.options.max_replacements + 1):
            receipt = await self._wait_receipt(hashes, self.options.tx_timeout)
            if receipt is not None:
                return await self._confirm(receipt, tx, operation)
            if bump == self.options.max_replacements:
                break
            # Not mined in time: replace it (same nonce, fees +12.5 %).
            for k in ("maxFeePerGas", "maxPriorityFeePerGas", "gasPrice"):
                if k in tx:
                    tx[k] = tx[k] * _FEE_BUMP_NUM // _FEE_BUMP_DEN + 1
            log.info(
                "%s: tx %s not mined in time, replacing with higher fees", operation, hashes[-1]
            )
            with contextlib.suppress(_NonceTooLowError):  # the original was mined meanwhile
                hashes.append(await self._send_signed(sender, tx, operation))
        raise TransactionTimeoutError(
            f"not mined within {self.options.tx_timeout:g}s after "
            f"{self.options.max_replacements} fee bumps",
            tx=hashes[-1],
            operation=operation,
        )

    async def _send_signed(self, sender: EthAccount, tx: dict[str, Any], operation: str) -> str:
        from eth_account import Account as _Signer  # noqa: PLC0415 - eth_account is heavy; loaded at the first transaction

        unsigned = {k: v for k, v in tx.items() if k != "from"}
        if "maxFeePerGas" in unsigned:
            unsigned["type"] = 2
        signed = _Signer.sign_transaction(unsigned, sender.private_key.secret)
        try:
            h = await self.retrying(
                operation, lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction)
            )
        except ChainError:
            raise
        except Exception as e:
            text = str(e).lower()
            if "nonce too low" in text:
                raise _NonceTooLowError(str(e)) from e
            if "already known" in text:  # the same signed bytes were sent before
                return "0x" + bytes(signed.hash).hex()
            raise ChainError(f"the node refused the transaction: {e}", operation=operation) from e
        return "0x" + bytes(h).hex()

    async def _wait_receipt(self, hashes: Sequence[str], timeout: float) -> Any:  # noqa: ASYNC109 - every wait has a deadline; this one takes it as an argument
        """The receipt of any of ``hashes`` (replacements of one nonce), or ``None``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            for h in hashes:
                try:
                    r = await self.retrying(
                        "eth_getTransactionReceipt",
                        lambda h=h: self.w3.eth.get_transaction_receipt(h),  # type: ignore[misc]
                    )
                except (TransactionNotFound, TimeExhausted):
                    continue
                if r is not None:
                    return r
            if loop.time() >= end:
                return None
            await asyncio.sleep(self.options.poll_interval)

    async def _confirm(self, receipt: Any, tx: dict[str, Any], operation: str) -> Receipt:
        """Wait until ``receipt`` is deep enough and still canonical; check its status."""
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        while True:
            head = await self.block_number()
            if head - int(receipt["blockNumber"]) + 1 >= self.options.confirmations:
                again = await self.retrying(
                    "eth_getTransactionReceipt",
                    lambda: self.w3.eth.get_transaction_receipt(tx_hash),  # type: ignore[arg-type]
                )
                if again is not None and again["blockHash"] == receipt["blockHash"]:
                    break
                # Reorganised away: wait for it to be mined again.
                receipt = await self._wait_receipt([tx_hash], self.options.tx_timeout)
                if receipt is None:
                    raise TransactionTimeoutError(
                        "dropped by a reorganisation", tx=tx_hash, operation=operation
                    )
                continue
            await asyncio.sleep(self.options.poll_interval)
        if int(receipt["status"]) != 1:
            reason = await self._replay(tx, int(receipt["blockNumber"]))
            raise error_for_revert(reason, tx=tx_hash, operation=operation, mined=True)
        log.debug("%s: %s mined in block %s", operation, tx_hash, receipt["blockNumber"])
        return Receipt(
            tx_hash=tx_hash,
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            fee=int(receipt["gasUsed"]) * int(receipt.get("effectiveGasPrice") or 0),
            logs=list(receipt["logs"]),
            operation=operation,
            sender=str(tx["from"]),
        )

    async def _replay(self, tx: dict[str, Any], block: int) -> str:
        """The revert reason of a failed transaction, by calling it again on the state of
        its block (where what made it fail, e.g. an earlier transaction, has happened), then
        on the state before."""
        call = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
        for at in (block, block - 1):
            try:
                await _run_to_end(self.w3.eth.call(call, at))  # type: ignore[arg-type]
            except ContractLogicError as e:
                return revert_reason(e) or "reverted without a reason"
            except Exception as e:  # noqa: BLE001 - the replay only explains a failure; any error becomes the explanation
                return f"failed (replay impossible: {e})"
        return "failed (out of gas, or reverted only inside its block)"

    async def close(self) -> None:
        """Close the HTTP session."""
        with contextlib.suppress(Exception):
            await self.w3.provider.disconnect()


class _NonceTooLowError(Exception):
    """The node already has a transaction with this nonce from this sender."""
