"""The sim Adjudicator: register, progress, conclude and withdraw on a :class:`SimLedger`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from perun_core.channel.params import Params
from perun_core.channel.state import SignedState, State
from perun_core.channel.types import Address
from perun_core.errors import (
    AlreadyConcludedError,
    InsufficientHoldingsError,
    InvalidSignatureError,
    MissingSubStatesError,
    StateMismatchError,
)
from perun_core.interfaces import (
    Account,
    Adjudicator,
    AdjudicatorReq,
    ChannelEvents,
    EventSubscription,
)
from perun_core.interfaces.adjudicator import sub_states_preorder
from perun_sim.api import LedgerAPI, LocalLedger
from perun_sim.encoding import channel_id, funding_id
from perun_sim.ledger import DisputePhase, SimLedger, WithdrawalAuth

DEFAULT_SECONDARY_GRACE = 0.2
"""Real seconds a secondary settler waits for its peer's conclusion before concluding itself."""


class SimAdjudicator(Adjudicator):
    """Sends one account's dispute and settlement transactions to a sim ledger.

    Args:
        ledger: a :class:`SimLedger` of this process or any :class:`LedgerAPI` (e.g. a
            :class:`~perun_sim.remote.RemoteLedger` served by another process).
        account: signs withdrawal authorizations (must be the participant withdrawn for).
        receiver: where withdrawals are paid (default: the participant's own address).
        secondary_grace: real seconds a ``secondary`` request waits for the peer to conclude.
    """

    def __init__(
        self,
        ledger: SimLedger | LedgerAPI,
        account: Account,
        *,
        receiver: Address | None = None,
        secondary_grace: float = DEFAULT_SECONDARY_GRACE,
    ) -> None:
        self.ledger: LedgerAPI = LocalLedger(ledger) if isinstance(ledger, SimLedger) else ledger
        self.account = account
        self.receiver = receiver
        self.secondary_grace = secondary_grace

    async def register(
        self, req: AdjudicatorReq, sub_states: Mapping[bytes, SignedState] | None = None
    ) -> None:
        """Register ``req.tx`` with the signed states of all locked sub-channels (pre-order).

        Registering the state already registered is a no-op.

        Raises:
            MissingSubStatesError: a locked sub-channel's signed state is not in ``sub_states``.
            InvalidSignatureError: ``req.tx`` is not fully signed.
            StaleStateError: the ledger holds the same or a newer version.
            RefutationClosedError: the refutation window is over.
            ChainError: another refusal (a leaf of the rule that failed).
        """
        root = _signed(req)
        subs = sub_states_preorder(root.state, sub_states or {}, "register")
        await self.ledger.register(root, subs)

    async def progress(self, req: AdjudicatorReq, new_state: State, sig: bytes) -> None:
        """Force-execute ``new_state`` (signed by participant ``req.idx``) over ``req.tx.state``.

        Raises:
            TimeoutNotElapsedError: the refutation window is still open.
            ForceExecutionClosedError: the force-execution window is over (or concluded).
            StateMismatchError: ``req.tx.state`` is not the state on the ledger.
            InvalidProgressError: the ledger or the app refused the transition.
            ChainError: another refusal (a leaf of the rule that failed).
        """
        await self.ledger.progress(req.params, req.tx.state, new_state, req.idx, sig)

    async def withdraw(
        self, req: AdjudicatorReq, sub_states: Mapping[bytes, SignedState] | None = None
    ) -> None:
        """Conclude the channel unless concluded, then withdraw our holdings of every asset.

        A final, fully signed state without locked funds concludes at once
        (``conclude_final``; a ``secondary`` request first waits ``secondary_grace`` seconds
        for the peer's conclusion). Otherwise ``req.tx.state`` must be the registered state
        and its timeout must have passed; the caller waits for the event's timeout itself.

        Once the channel is concluded its outcome is fixed, so the withdrawal pays what the
        ledger holds for us whichever state ``req.tx`` carries (it is only needed to
        conclude). A lost race (concluded by someone else) counts as success and holdings
        already withdrawn are skipped, so the call is idempotent.

        Raises:
            TimeoutNotElapsedError: the dispute's timeout has not passed.
            StateMismatchError: ``req.tx.state`` is not the registered state and the channel
                is not concluded.
            NotRegisteredError: a non-final state, and nothing is registered.
            MissingSubStatesError: a locked sub-channel's state is neither registered nor given.
            ChainError: another refusal (a leaf of the rule that failed).
        """
        params, state = req.params, req.tx.state
        cid = params.id or channel_id(params)
        if not await self._concluded(cid):
            await self._conclude(req, cid, sub_states or {})
        participant = params.participants[req.idx]
        fid = funding_id(cid, participant)
        receiver = self.receiver if self.receiver is not None else participant
        # Every state of a channel has the same assets, so ``state``'s are the outcome's.
        for asset in state.allocation.assets:
            if asset.ledger_id != self.ledger.ledger_id:
                continue  # paid out by that ledger's adjudicator
            amount = await self.ledger.holdings(asset, fid)
            if amount == 0:
                continue
            auth = WithdrawalAuth(cid, participant, receiver, amount, asset)
            try:
                await self.ledger.withdraw(auth, self.account.sign(auth.encode()))
            except InsufficientHoldingsError:
                # A concurrent withdrawal for the same participant paid it out: done if empty.
                if await self.ledger.holdings(asset, fid) != 0:
                    raise

    async def _concluded(self, cid: bytes) -> bool:
        d = await self.ledger.dispute(cid)
        return d is not None and d.phase == DisputePhase.CONCLUDED

    async def _conclude(
        self, req: AdjudicatorReq, cid: bytes, sub_states: Mapping[bytes, SignedState]
    ) -> None:
        params, state = req.params, req.tx.state
        try:
            if state.is_final and not state.allocation.locked and req.tx.fully_signed:
                if req.secondary and await self._wait_concluded(cid, self.secondary_grace):
                    return
                sigs = tuple(s for s in req.tx.sigs if s is not None)
                await self.ledger.conclude_final(params, state, sigs)
            else:
                subs = await self._sub_states(state, sub_states)
                await self.ledger.conclude(params, state, subs)
        except AlreadyConcludedError:
            pass  # someone else concluded first: that was the goal
        except StateMismatchError:
            # Concluded meanwhile with another state (the ledger checks the state before the
            # phase): the outcome is set, which was the goal.
            if not await self._concluded(cid):
                raise

    async def _sub_states(self, state: State, given: Mapping[bytes, SignedState]) -> list[State]:
        """Every locked sub-channel's state, pre-order; the ledger's registered one first,
        since conclusion accepts nothing else."""
        out: list[State] = []

        async def collect(s: State) -> None:
            for sa in s.allocation.locked:
                d = await self.ledger.dispute(sa.id)
                if d is not None:
                    sub = d.state
                elif sa.id in given:
                    sub = given[sa.id].state
                else:
                    raise MissingSubStatesError(
                        f"sub-channel 0x{sa.id.hex()} is neither registered nor given",
                        operation="conclude",
                    )
                out.append(sub)
                await collect(sub)

        await collect(state)
        return out

    async def _wait_concluded(self, cid: bytes, grace: float) -> bool:
        """Wait up to ``grace`` real seconds for the channel's conclusion (event-driven)."""
        if await self._concluded(cid):
            return True
        sub = await self.ledger.subscribe(cid)
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + grace
            while not await self._concluded(cid):
                left = end - loop.time()
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(sub.next(), left) is None:
                        return await self._concluded(cid)
            return True
        finally:
            await sub.close()

    async def subscribe(self, params: Params) -> EventSubscription:
        """Events of the channel: the most recent past event first, then new ones."""
        return await self.ledger.subscribe(params.id or channel_id(params))

    def channel_events(self) -> ChannelEvents:
        """Many channels' events in one stream: natively on a ledger of this process (a set
        entry per channel), through one subscription per channel on a served one."""
        if isinstance(self.ledger, LocalLedger):
            return self.ledger.ledger.channel_events()
        return super().channel_events()


def _signed(req: AdjudicatorReq) -> SignedState:
    if not req.tx.fully_signed:
        raise InvalidSignatureError(
            "the transaction to register is not fully signed",
            channel_id=req.tx.state.channel_id,
            version=req.tx.state.version,
        )
    return req.signed_state()
