"""The Ethereum Funder: deposits into asset holders, waits for everyone."""

from __future__ import annotations

import asyncio
import logging

from perun_core.channel.allocation import Balances
from perun_core.channel.types import Asset
from perun_core.errors import FundingTimeoutError
from perun_core.interfaces import Funder, FundingRequest
from perun_eth import bindings as b
from perun_eth.chain import ERC20, EthChain, checksum
from perun_eth.encoding import channel_id, funding_id
from perun_eth.node import Receipt, ReceiptHook
from perun_eth.wallet import EthAccount

log = logging.getLogger("perun.eth")


class EthFunder(Funder):
    """Deposits one account's shares into channels on one chain.

    Assets of other chains are left to those chains' funders. Idempotent: a share already
    covered by on-chain holdings is not deposited again (only topped up).

    Args:
        chain: the deployment.
        account: deposits from (and pays gas with) this account.
        on_receipt: called with every confirmed transaction (demo output, gas accounting).
    """

    def __init__(
        self,
        chain: EthChain,
        account: EthAccount,
        *,
        on_receipt: ReceiptHook | None = None,
    ) -> None:
        self.chain = chain
        self.account = account
        self.on_receipt = on_receipt

    async def fund(self, request: FundingRequest) -> None:
        """Deposit our share of each asset on this chain; wait until every participant funded.

        Raises:
            FundingTimeoutError: the funding window (ledger time, from now) passed; names the
                participants per asset that did not fund.
            InvalidFundingAgreementError: the agreement does not fit assets and participants.
            ChainError: a deposit was refused (e.g. :class:`~perun_eth.errors.DepositError`).
        """
        params, state = request.params, request.state
        cid = params.id or channel_id(params)
        assets = state.allocation.assets
        agreement = request.agreement
        n = params.num_parts
        request.check()
        node = self.chain.node
        deadline = await node.timestamp() + request.deadline_seconds
        fids = [funding_id(cid, p) for p in params.participants]
        own = [a for a, asset in enumerate(assets) if self.chain.is_ours(asset)]
        others = [j for j in range(n) if j != request.idx]
        if request.egoistic:
            await self._await_funded(cid, assets, own, others, fids, agreement, deadline)
        await asyncio.gather(
            *(self._deposit(assets[a], fids[request.idx], agreement[a][request.idx]) for a in own)
        )
        await self._await_funded(cid, assets, own, list(range(n)), fids, agreement, deadline)

    async def _deposit(self, asset: Asset, fid: bytes, share: int) -> None:
        if share == 0:
            return
        chain = self.chain
        info = await chain.holder_info(asset.holder)
        if info.kind == ERC20 and info.token is not None:
            # Serialised per (owner, token): two deposits must not race on one allowance.
            key = (self.account.address.raw, info.token)
            lock = chain.token_locks.setdefault(key, asyncio.Lock())
            async with lock:
                missing = share - await chain.holdings(asset.holder, fid)
                if missing <= 0:
                    return
                allowance = await chain.allowance(info.token, self.account.address.raw, info.holder)
                if allowance < missing:
                    await self._send(
                        checksum(info.token), b.approve_data(info.holder, missing), 0, "approve"
                    )
                await self._send(checksum(asset.holder), b.deposit_data(fid, missing), 0, "deposit")
            return
        missing = share - await chain.holdings(asset.holder, fid)
        if missing > 0:
            await self._send(
                checksum(asset.holder), b.deposit_data(fid, missing), missing, "deposit"
            )

    async def _send(self, to: str, data: bytes, value: int, operation: str) -> Receipt:
        r = await self.chain.node.transact(self.account, to, data, value=value, operation=operation)
        log.info("%s: tx %s, gas %d", operation, r.tx_hash, r.gas_used)
        if self.on_receipt is not None:
            self.on_receipt(r)
        return r

    async def _await_funded(
        self,
        cid: bytes,
        assets: tuple[Asset, ...],
        own: list[int],
        parts: list[int],
        fids: list[bytes],
        agreement: Balances,
        deadline: int,
    ) -> None:
        chain = self.chain
        interval = chain.node.options.poll_interval
        while True:
            # Read the time first: holdings seen complete at or after it count as in time.
            # Others' deposits count once confirmed (see docs/plugins/ethereum-contracts.md).
            now = await chain.node.timestamp()
            at = await chain.confirmed_block()
            missing: list[list[int]] = [[] for _ in assets]
            lacking = False
            for a in own:
                for j in parts:
                    if (
                        agreement[a][j]
                        and await chain.holdings(assets[a].holder, fids[j], at) < (agreement[a][j])
                    ):
                        missing[a].append(j)
                        lacking = True
            if not lacking:
                return
            if now >= deadline:
                raise FundingTimeoutError(missing, channel_id=cid)
            await asyncio.sleep(interval)
