"""Checking a configuration against the chain it names, before any funds move.

A backend configured for another chain, or for contracts that are not (or not wired like)
the Perun contracts, can open and fund channels that then never settle: with ``chain_id``
999 on a 31337 node the adjudicator skips every asset of "chain 999" when it pushes the
outcome, and the deposits stay locked for good. So :meth:`EthBackend.from_config
<perun_eth.backend.EthBackend.from_config>` checks, before it returns a backend:

* the node serves the configured chain ID;
* the adjudicator has code and computes channel IDs and state hashes as we do;
* every asset holder has code, belongs to that adjudicator, and is the kind configured: an
  ERC-20 holder keeps the configured token (which has code, and the configured ``decimals``
  if given), an ETH holder keeps none; holders given without a kind get theirs detected;
* the app contracts have code;
* in strict mode, the adjudicator's and holders' runtime code is our artifacts'.

``perun eth validate`` runs the same checks (:func:`check_chain`), on a deployment record.
A mismatch raises :class:`EthChainConfigError`, a
:class:`~perun_core.errors.ChainConfigError` (and a
:class:`~perun_eth.errors.DeploymentError`) naming what does not fit.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Protocol, TypeVar

from eth_abi.abi import decode as abi_decode

from perun_core.channel.allocation import Allocation
from perun_core.channel.params import Params
from perun_core.channel.state import State
from perun_core.channel.types import Address, Asset
from perun_core.errors import ChainConfigError, ChainError
from perun_eth import bindings as b
from perun_eth.chain import ERC20, ETH, HolderInfo, checksum, parse_hex_address
from perun_eth.contracts import load_artifact
from perun_eth.encoding import channel_id, hash_state, keccak256
from perun_eth.errors import (
    ContractRevertError,
    DeploymentError,
    NodeConnectionError,
    error_for_revert,
)

T = TypeVar("T")

DECIMALS: Final = keccak256(b"decimals()")[:4]
_ERROR_SELECTOR: Final = bytes.fromhex("08c379a0")  # Error(string)


class EthChainConfigError(ChainConfigError, DeploymentError):
    """The configuration does not fit the chain: another chain ID, a contract missing or not
    behaving as the Perun contracts, an asset holder of another adjudicator or kind, another
    token or token decimals. ``reason`` says which."""


class ContractReader(Protocol):
    """What the checks read from a node (:class:`~perun_eth.node.EthNode` has it)."""

    async def chain_id(self) -> int:
        """The node's chain ID."""
        ...

    async def code(self, address: str) -> bytes:
        """The runtime code at ``address``."""
        ...

    async def call(
        self, to: str, data: str | bytes, *, block: int | str = "latest", operation: str = "call"
    ) -> bytes:
        """``eth_call``; a revert raises :class:`~perun_eth.errors.ContractRevertError`."""
        ...


def _mismatch(reason: str) -> EthChainConfigError:
    return EthChainConfigError(reason, operation="validate")


async def _present(node: ContractReader, address: str, what: str) -> bytes:
    code = await node.code(address)
    if not code:
        raise _mismatch(f"no contract code at the {what} {address}")
    return code


async def _token_of(node: ContractReader, holder: str) -> bytes | None:
    """The token an asset holder keeps; ``None`` if ``token()`` reverts (an ETH holder)."""
    try:
        out = await node.call(holder, b.TOKEN, operation="token")
    except ContractRevertError:
        return None
    try:
        return b.decode_address(out)
    except (ValueError, TypeError, OverflowError) as e:  # eth_abi's errors derive from these
        raise _mismatch(f"the asset holder {holder} answers token() with garbage ({e})") from e


async def check_contracts(
    node: ContractReader,
    adjudicator: str,
    holders: Sequence[tuple[str, str | None]] = (),
    *,
    strict: bool = False,
) -> None:
    """Check that the contracts at the given addresses behave as the Perun contracts.

    Args:
        node: the chain's node.
        adjudicator: the adjudicator address.
        holders: ``(holder, token)`` pairs; ``token`` is ``None`` for an ETH holder.
        strict: also require the runtime bytecode of our artifacts.

    Raises:
        EthChainConfigError: what is wrong, naming the contract.
        ValueError: an address is not 20 bytes of hex.
    """
    adjudicator = checksum(parse_hex_address(adjudicator, "adjudicator"))
    pairs = [
        (
            checksum(parse_hex_address(h, "asset holder")),
            None if t is None else checksum(parse_hex_address(t, "token")),
        )
        for h, t in holders
    ]
    code = await _present(node, adjudicator, "adjudicator")
    params, state = _probe()
    try:
        cid = await node.call(adjudicator, b.channel_id_data(params), operation="channelID")
        sh = await node.call(adjudicator, b.hash_state_data(state), operation="hashState")
    except ContractRevertError as e:
        raise _mismatch(f"{adjudicator} is not a Perun adjudicator ({e.reason})") from e
    if cid != channel_id(params) or sh != hash_state(state):
        raise _mismatch(f"the adjudicator at {adjudicator} encodes params or states differently")
    if strict and not _same_runtime(code, "Adjudicator"):
        raise _mismatch(f"the adjudicator at {adjudicator} is not our artifact (strict mode)")
    adj_raw = parse_hex_address(adjudicator)
    for holder, token in pairs:
        hcode = await _present(node, holder, "asset holder")
        try:
            their_adj = b.decode_address(await node.call(holder, b.ADJUDICATOR, operation="adj"))
        except ContractRevertError as e:
            raise _mismatch(f"{holder} is not a Perun asset holder ({e.reason})") from e
        except (ValueError, TypeError, OverflowError) as e:
            raise _mismatch(f"{holder} is not a Perun asset holder ({e})") from e
        if their_adj != adj_raw:
            raise _mismatch(
                f"the asset holder {holder} belongs to adjudicator {checksum(their_adj)}, "
                f"not {adjudicator}"
            )
        their_token = await _token_of(node, holder)
        if token is not None and their_token != parse_hex_address(token):
            kept = "no token (it holds ETH)" if their_token is None else checksum(their_token)
            raise _mismatch(f"the asset holder {holder} keeps token {kept}, not {token}")
        if token is None and their_token is not None:
            raise _mismatch(
                f"the asset holder {holder} is configured for ETH but keeps token "
                f"{checksum(their_token)}"
            )
        name = "AssetHolderETH" if token is None else "AssetHolderERC20"
        if strict and not _same_runtime(hcode, name):
            raise _mismatch(f"the asset holder {holder} is not our {name} artifact (strict mode)")


async def check_chain(
    node: ContractReader,
    *,
    chain_id: int | None,
    adjudicator: bytes,
    holders: Sequence[HolderInfo] = (),
    decimals: Mapping[bytes, int] | None = None,
    apps: Mapping[str, bytes | None] | None = None,
    strict: bool = False,
) -> tuple[int, list[HolderInfo]]:
    """Check a whole configuration against the node (see the module docs).

    Args:
        node: the chain's node.
        chain_id: the configured chain ID (``None``: whatever the node serves).
        adjudicator: the adjudicator's address.
        holders: the asset holders; a kind of ``""`` is detected (``token()`` answers or not).
        decimals: token address -> the decimals the configuration expects of it.
        apps: what -> address of app contracts that must have code (``None``: not used).
        strict: also require our artifacts' runtime code.

    Returns:
        The chain ID and the holders, each with its kind (and token) known.

    Raises:
        EthChainConfigError: the first thing that does not fit.
        NodeConnectionError: the node cannot be reached.
    """
    served = await node.chain_id()
    if chain_id is not None and chain_id != served:
        raise _mismatch(
            f"configured for chain {chain_id}, but the node serves chain {served} (funds "
            "deposited under another chain's ID could never be paid out)"
        )
    resolved: list[HolderInfo] = []
    for info in holders:
        if info.kind:
            resolved.append(info)
            continue
        hex_holder = checksum(info.holder)
        await _present(node, hex_holder, "asset holder")
        token = await _token_of(node, hex_holder)
        resolved.append(
            HolderInfo(info.holder, ERC20, token) if token else HolderInfo(info.holder, ETH)
        )
    await check_contracts(
        node,
        checksum(adjudicator),
        [(checksum(h.holder), checksum(h.token) if h.token else None) for h in resolved],
        strict=strict,
    )
    wanted = dict(decimals or {})
    for info in resolved:
        if info.token is None:
            continue
        token_hex = checksum(info.token)
        await _present(node, token_hex, "token")
        if info.token in wanted:
            try:
                out = await node.call(token_hex, DECIMALS, operation="decimals")
                have = int(abi_decode(["uint8"], out)[0])
            except (ContractRevertError, ValueError, TypeError, OverflowError) as e:
                raise _mismatch(f"the token {token_hex} does not answer decimals() ({e})") from e
            if have != wanted[info.token]:
                raise _mismatch(
                    f"the token {token_hex} has {have} decimals, the configuration says "
                    f"{wanted[info.token]}"
                )
    for what, app in (apps or {}).items():
        if app:
            await _present(node, checksum(app), what)
    return served, resolved


def _probe() -> tuple[Params, State]:
    a, c = Address(bytes.fromhex("aa" * 20)), Address(bytes.fromhex("cc" * 20))
    params = Params(
        challenge_duration=60, participants=(a, c), nonce=0xC0FFEE, app=None, backend="eth"
    )
    cid = channel_id(params)
    state = State(
        channel_id=cid,
        version=3,
        allocation=Allocation((Asset(1, bytes(19) + b"\x01"),), ((5, 7),)),
        data=b"",
        is_final=True,
    )
    return params, state


def _same_runtime(code: bytes, name: str) -> bool:
    """Runtime code equality with the artifact, ignoring immutable placeholders (zeros)."""
    ref = load_artifact(name).deployed_bytecode
    if len(ref) != len(code):
        return False
    return all(r == c or r == 0 for r, c in zip(ref, code, strict=True))


# --- at configuration time: plain JSON-RPC, off the caller's event loop -------------------------


class RpcReader:
    """A :class:`ContractReader` over plain blocking JSON-RPC requests (no web3).

    For :func:`run_blocking`: configuration is synchronous and may happen inside a running
    event loop, so the checks run on a private loop in a worker thread, with no state shared
    with the process's own node connections.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout

    def _request(self, method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        req = urllib.request.Request(
            self.url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                answer = json.loads(resp.read())
        except (OSError, urllib.error.URLError, ValueError) as e:
            raise NodeConnectionError(
                f"cannot reach an Ethereum node at {self.url} ({e})", operation=method
            ) from e
        if not isinstance(answer, dict):
            raise NodeConnectionError(f"the node at {self.url} answered garbage", operation=method)
        if "error" in answer:
            err = answer["error"] if isinstance(answer["error"], dict) else {}
            message = str(err.get("message", answer["error"]))
            if method == "eth_call" and "revert" in message.lower():
                raise error_for_revert(_revert_reason(message, err.get("data")), operation=method)
            raise ChainError(message, operation=method)
        return answer.get("result")

    async def chain_id(self) -> int:
        """``eth_chainId``."""
        try:
            return int(self._request("eth_chainId"), 16)
        except (TypeError, ValueError) as e:
            raise NodeConnectionError(f"the node at {self.url} answered garbage ({e})") from e

    async def code(self, address: str) -> bytes:
        """``eth_getCode`` at the latest block."""
        return _hex_bytes(self._request("eth_getCode", address, "latest"), self.url)

    async def call(
        self, to: str, data: str | bytes, *, block: int | str = "latest", operation: str = "call"
    ) -> bytes:
        """``eth_call``; a revert raises :class:`ContractRevertError` (or a subclass)."""
        hex_data = data if isinstance(data, str) else "0x" + data.hex()
        tag = block if isinstance(block, str) else hex(block)
        try:
            out = self._request("eth_call", {"to": to, "data": hex_data}, tag)
        except ContractRevertError as e:
            raise error_for_revert(e.reason, operation=operation) from e
        return _hex_bytes(out, self.url)


def _hex_bytes(value: Any, url: str) -> bytes:
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise NodeConnectionError(f"the node at {url} answered garbage: {value!r:.80}")


def _revert_reason(message: str, data: Any) -> str:
    if isinstance(data, str) and data.startswith("0x"):
        try:
            raw = bytes.fromhex(data[2:])
            if raw[:4] == _ERROR_SELECTOR:
                return str(abi_decode(["string"], raw[4:])[0])
        except (ValueError, TypeError, OverflowError):
            pass
    prefix = "execution reverted: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def run_blocking(make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()`` to its end on a private event loop in a worker thread; safe to call
    from synchronous code and from inside a running event loop alike."""

    async def run() -> T:
        return await make()

    with ThreadPoolExecutor(1, thread_name_prefix="perun-eth-config") as pool:
        return pool.submit(asyncio.run, run()).result()
