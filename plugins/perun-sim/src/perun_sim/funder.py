"""The sim Funder: deposits a participant's share and waits for everyone's."""

from __future__ import annotations

from perun_core.channel.allocation import Balances
from perun_core.channel.types import Asset
from perun_core.errors import FundingTimeoutError
from perun_core.interfaces import Account, Funder, FundingRequest
from perun_sim.api import LedgerAPI, LocalLedger
from perun_sim.encoding import channel_id, funding_id
from perun_sim.ledger import HoldingKey, SimLedger


class SimFunder(Funder):
    """Deposits from one account into channels on one sim ledger.

    Only assets of this ledger are handled (a multi-ledger channel's other assets belong to
    other ledgers' funders). Waiting is event-driven: the funder sleeps until a relevant
    deposit lands or the funding deadline (ledger time) arrives.

    Args:
        ledger: a :class:`SimLedger` of this process or any :class:`LedgerAPI` (e.g. a
            :class:`~perun_sim.remote.RemoteLedger` served by another process).
        account: the account deposits are made from.
    """

    def __init__(self, ledger: SimLedger | LedgerAPI, account: Account) -> None:
        self.ledger: LedgerAPI = LocalLedger(ledger) if isinstance(ledger, SimLedger) else ledger
        self.account = account
        self.ledger.add_account(account)  # a served ledger: deposits from it need its key

    async def fund(self, request: FundingRequest) -> None:
        """Deposit our share of each asset and wait until every participant has funded.

        Idempotent: a share already covered by our holdings is not deposited again, and a
        partly covered one is only topped up.

        Raises:
            FundingTimeoutError: the deadline (``request.deadline_seconds`` of ledger time
                from now) passed; ``missing[a]`` names the participants that did not fund
                asset ``a`` (egoistic funding: only the others, since we never deposited).
            InvalidFundingAgreementError: the agreement does not fit the state's assets and
                participants.
            ChainError: a deposit was refused (e.g. "insufficient balance").
        """
        params, state = request.params, request.state
        cid = params.id or channel_id(params)
        assets = state.allocation.assets
        agreement = request.agreement
        n = params.num_parts
        request.check()
        deadline = await self.ledger.now() + request.deadline_seconds
        fids = [funding_id(cid, p) for p in params.participants]
        own = [a for a, asset in enumerate(assets) if asset.ledger_id == self.ledger.ledger_id]
        others = [j for j in range(n) if j != request.idx]

        if request.egoistic:
            await self._await_funded(cid, assets, own, others, fids, agreement, deadline)
        for a in own:
            share = agreement[a][request.idx]
            have = await self.ledger.holdings(assets[a], fids[request.idx])
            if share > have:
                await self.ledger.deposit(
                    self.account.address, assets[a], fids[request.idx], share - have
                )
        await self._await_funded(cid, assets, own, list(range(n)), fids, agreement, deadline)

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
        ledger = self.ledger
        while True:
            missing: list[list[int]] = [[] for _ in assets]
            seen: dict[HoldingKey, int] = {}
            for a in own:
                for j in parts:
                    held = await ledger.holdings(assets[a], fids[j])
                    if held < agreement[a][j]:
                        missing[a].append(j)
                        seen[(assets[a], fids[j])] = held
            if not seen:
                return
            if await ledger.now() >= deadline:
                raise FundingTimeoutError(missing, channel_id=cid)
            # Passing what we saw closes the gap between reading and waiting: a deposit in
            # between (possible when the ledger is served elsewhere) ends the wait at once.
            await ledger.wait_holdings(seen, deadline)
