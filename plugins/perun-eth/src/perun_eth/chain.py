"""One deployment on one chain: the node, the adjudicator, the asset holders and their views.

:class:`EthChain` is what the funder, adjudicator and subscriptions of a backend share: the
:class:`~perun_eth.node.EthNode`, the adjudicator address, which asset holders hold ETH and
which an ERC-20 token (configured, or detected through ``token()``), and typed view calls.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from eth_utils.address import to_checksum_address

from perun_core.channel.types import Address, Asset
from perun_eth import bindings as b
from perun_eth.bindings import Dispute
from perun_eth.errors import ContractRevertError, DeploymentError
from perun_eth.node import EthNode

ETH: Final = "eth"
ERC20: Final = "erc20"


def checksum(raw: bytes | Address) -> str:
    """The EIP-55 hex form of a 20-byte address."""
    return str(to_checksum_address(raw.raw if isinstance(raw, Address) else raw))


def parse_hex_address(text: str, what: str = "address") -> bytes:
    """20 raw bytes from ``0x``-prefixed (or bare) hex.

    Raises:
        ValueError: not 40 hex digits.
    """
    t = text.strip()
    t = t[2:] if t[:2] in ("0x", "0X") else t
    try:
        raw = bytes.fromhex(t)
    except ValueError:
        raw = b""
    if len(raw) != 20:
        raise ValueError(f"{what} {text!r} is not a 20-byte hex address")
    return raw


@dataclass(frozen=True, slots=True)
class HolderInfo:
    """An asset holder: its kind (``"eth"``, ``"erc20"``, ``""`` until detected) and, for
    ERC-20, the token it keeps."""

    holder: bytes
    kind: str
    token: bytes | None = None


class EthChain:
    """A deployment of the Perun contracts on the chain behind ``node``.

    Args:
        node: the node connection.
        adjudicator: the adjudicator's address.
        holders: known asset holders (others are detected on first use).
        chain_id: the chain ID (asked from the node if omitted).
        from_block: the first block to scan for past events (e.g. the deployment block).
    """

    def __init__(
        self,
        node: EthNode,
        adjudicator: bytes,
        holders: list[HolderInfo] | None = None,
        *,
        chain_id: int,
        from_block: int = 0,
    ) -> None:
        self.node = node
        self.adjudicator = adjudicator
        self.adjudicator_hex = checksum(adjudicator)
        self.chain_id = chain_id
        self.from_block = from_block
        self._holders: dict[bytes, HolderInfo] = {h.holder: h for h in holders or ()}
        self._detect_lock = asyncio.Lock()
        # One lock per (owner, token): approvals and token deposits are serialised.
        self.token_locks: dict[tuple[bytes, bytes], asyncio.Lock] = {}
        # One lock per (channel, participant): withdrawals of one process are serialised.
        self.withdraw_locks: dict[tuple[bytes, bytes], asyncio.Lock] = {}
        #: the shared event poller (a :class:`perun_eth.events.LogPoller`, made on first use)
        self.log_poller: object | None = None

    @property
    def holders(self) -> list[HolderInfo]:
        """Every asset holder known so far (configured first)."""
        return list(self._holders.values())

    def asset(self, holder: bytes) -> Asset:
        """The core asset of ``holder`` on this chain."""
        return Asset(self.chain_id, holder)

    def is_ours(self, asset: Asset) -> bool:
        """Whether ``asset`` lives on this chain."""
        return asset.ledger_id == self.chain_id

    async def holder_info(self, holder: bytes) -> HolderInfo:
        """The kind of ``holder``: configured, or ERC-20 iff ``token()`` answers.

        Raises:
            DeploymentError: no contract at ``holder``.
        """
        info = self._holders.get(holder)
        if info is not None and info.kind:
            return info
        async with self._detect_lock:
            info = self._holders.get(holder)
            if info is not None and info.kind:
                return info
            if not await self.node.code(checksum(holder)):
                raise DeploymentError(
                    f"no contract at asset holder {checksum(holder)}", operation="asset"
                )
            try:
                token = b.decode_address(
                    await self.node.call(checksum(holder), b.TOKEN, operation="token")
                )
                info = HolderInfo(holder, ERC20, token)
            except (ContractRevertError, ValueError):
                info = HolderInfo(holder, ETH)
            self._holders[holder] = info
            return info

    # --- views ------------------------------------------------------------------------------

    async def dispute(self, channel_id: bytes, block: int | str = "latest") -> Dispute | None:
        """``disputes(channelID)``, ``None`` if never registered."""
        out = await self.node.call(
            self.adjudicator_hex, b.disputes_data(channel_id), block=block, operation="disputes"
        )
        return b.decode_dispute(out)

    async def holdings(self, holder: bytes, funding_id: bytes, block: int | str = "latest") -> int:
        """``holdings(fundingID)`` of an asset holder (at ``block``)."""
        out = await self.node.call(
            checksum(holder),
            b.bytes32_arg(b.HOLDINGS, funding_id),
            block=block,
            operation="holdings",
        )
        return b.decode_uint(out)

    async def confirmed_block(self) -> int | str:
        """The newest block with enough confirmations (``"latest"`` for one confirmation)."""
        conf = self.node.options.confirmations
        if conf <= 1:
            return "latest"
        return max(0, await self.node.block_number() - conf + 1)

    async def settled(self, holder: bytes, channel_id: bytes) -> bool:
        """``settled(channelID)`` of an asset holder."""
        out = await self.node.call(
            checksum(holder), b.bytes32_arg(b.SETTLED, channel_id), operation="settled"
        )
        return b.decode_bool(out)

    async def allowance(self, token: bytes, owner: bytes, spender: bytes) -> int:
        """ERC-20 ``allowance(owner, spender)``."""
        out = await self.node.call(
            checksum(token), b.allowance_data(owner, spender), operation="allowance"
        )
        return b.decode_uint(out)

    async def token_balance(self, token: bytes, owner: bytes) -> int:
        """ERC-20 ``balanceOf(owner)``."""
        out = await self.node.call(checksum(token), b.balance_of_data(owner), operation="balanceOf")
        return b.decode_uint(out)

    async def balance_of(self, owner: bytes, asset: Asset) -> int:
        """``owner``'s on-chain balance of ``asset``: ETH for an ETH holder, else the token's."""
        info = await self.holder_info(asset.holder)
        if info.kind == ERC20 and info.token is not None:
            return await self.token_balance(info.token, owner)
        return await self.node.balance(checksum(owner))
