"""The Ethereum Adjudicator: register, progress, conclude and withdraw."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from perun_core.channel.params import Params
from perun_core.channel.state import SignedState, State
from perun_core.channel.types import Address
from perun_core.errors import (
    AlreadyConcludedError,
    InsufficientHoldingsError,
    InvalidSignatureError,
    NotSupportedError,
    StateMismatchError,
)
from perun_core.interfaces import (
    Adjudicator,
    AdjudicatorReq,
    ChannelEvents,
    EventSubscription,
)
from perun_core.interfaces.adjudicator import sub_states_preorder
from perun_eth import bindings as b
from perun_eth.bindings import Phase
from perun_eth.chain import EthChain, checksum
from perun_eth.encoding import channel_id, funding_id, hash_state, sign_withdrawal_auth
from perun_eth.events import EthChannelEvents, EthSubscription
from perun_eth.node import Receipt, ReceiptHook
from perun_eth.wallet import EthAccount

log = logging.getLogger("perun.eth")

DEFAULT_SECONDARY_GRACE = 1.0
"""Seconds a secondary settler waits for the peer's conclusion before concluding itself."""


class EthAdjudicator(Adjudicator):
    """One account's dispute and settlement transactions on one chain.

    Args:
        chain: the deployment.
        account: signs withdrawal authorizations (the participant) and sends transactions.
        receiver: where withdrawals are paid (default: the participant's address).
        secondary_grace: seconds a ``secondary`` request waits for the peer to conclude.
        on_receipt: called with every confirmed transaction.
    """

    def __init__(
        self,
        chain: EthChain,
        account: EthAccount,
        *,
        receiver: Address | None = None,
        secondary_grace: float = DEFAULT_SECONDARY_GRACE,
        on_receipt: ReceiptHook | None = None,
    ) -> None:
        self.chain = chain
        self.account = account
        self.receiver = receiver
        self.secondary_grace = secondary_grace
        self.on_receipt = on_receipt

    async def _send(self, to: str, data: bytes, operation: str) -> Receipt:
        r = await self.chain.node.transact(self.account, to, data, operation=operation)
        log.info("%s: tx %s, gas %d", operation, r.tx_hash, r.gas_used)
        if self.on_receipt is not None:
            self.on_receipt(r)
        return r

    async def register(
        self, req: AdjudicatorReq, sub_states: Mapping[bytes, SignedState] | None = None
    ) -> None:
        """Register ``req.tx`` with the signed states of every locked sub-channel (pre-order).

        Skipped when exactly this state (and these sub-states) is already registered.

        Raises:
            InvalidSignatureError: ``req.tx`` is not fully signed (nothing is sent).
            MissingSubStatesError: a locked sub-channel's signed state is not given.
            StaleStateError: the chain holds the same or a newer version.
            RefutationClosedError: the refutation window is over.
            ChainError: another refusal (the :mod:`perun_core.errors` leaf of its rule).
        """
        if not req.tx.fully_signed:
            raise InvalidSignatureError(
                "the transaction to register is not fully signed",
                channel_id=req.tx.state.channel_id,
                version=req.tx.state.version,
            )
        root = req.signed_state()
        subs = sub_states_preorder(root.state, sub_states or {}, "register")
        if await self._registered(root, subs):
            return
        await self._send(self.chain.adjudicator_hex, b.register_data(root, subs), "register")

    async def _registered(self, root: SignedState, subs: list[SignedState]) -> bool:
        for s in (root, *subs):
            d = await self.chain.dispute(s.state.channel_id)
            if d is None or d.state_hash != hash_state(s.state):
                return False
        return True

    async def progress(self, req: AdjudicatorReq, new_state: State, sig: bytes) -> None:
        """Force-execute ``new_state`` (signed by participant ``req.idx``) over the registered
        ``req.tx.state``.

        Raises:
            NotSupportedError: the channel has no app.
            TimeoutNotElapsedError: the refutation window is still open.
            ForceExecutionClosedError: the force-execution window is over (or concluded).
            StateMismatchError: ``req.tx.state`` is not the state on chain.
            InvalidProgressError: the contract or the app refused the transition.
            ChainError: another refusal (the :mod:`perun_core.errors` leaf of its rule).
        """
        if req.params.app is None:
            raise NotSupportedError("progress needs a channel with an app")
        data = b.progress_data(req.params, req.tx.state, new_state, req.idx, sig)
        await self._send(self.chain.adjudicator_hex, data, "progress")

    async def withdraw(
        self, req: AdjudicatorReq, sub_states: Mapping[bytes, SignedState] | None = None
    ) -> None:
        """Conclude unless concluded, then withdraw our holdings of every asset on this chain.

        A final, fully signed state without locked funds concludes at once
        (``concludeFinal``; a ``secondary`` request first waits ``secondary_grace`` seconds
        for the peer). Otherwise ``req.tx.state`` must be the registered state and its
        timeout must have passed.

        Once the channel is concluded its outcome is fixed, so the withdrawal pays what the
        asset holders hold for us whichever state ``req.tx`` carries (it is only needed to
        conclude). Idempotent: a lost conclusion race counts as success and empty holdings
        are skipped.

        Raises:
            TimeoutNotElapsedError: the dispute's timeout has not passed.
            StateMismatchError: ``req.tx.state`` is not the registered state and the channel
                is not concluded.
            NotRegisteredError: a non-final state, and nothing is registered.
            MissingSubStatesError: a locked sub-channel's state is neither given nor known.
            ChainError: another refusal (the :mod:`perun_core.errors` leaf of its rule).
        """
        params = req.params
        cid = params.id or channel_id(params)
        participant = params.participants[req.idx]
        # One withdrawal per channel and participant at a time in this process: a client may
        # settle from several paths at once (its own settle, the watcher, auto-settle), and
        # two reads of the same holdings would send two withdrawals of which one must fail.
        key = (cid, participant.raw)
        lock = self.chain.withdraw_locks.setdefault(key, asyncio.Lock())
        async with lock:
            await self._withdraw_locked(req, cid, participant, sub_states or {})
        if not lock.locked():  # forget idle locks (a rare overlap is caught below anyway)
            self.chain.withdraw_locks.pop(key, None)

    async def _withdraw_locked(
        self,
        req: AdjudicatorReq,
        cid: bytes,
        participant: Address,
        sub_states: Mapping[bytes, SignedState],
    ) -> None:
        if not await self._concluded(cid):
            await self._conclude(req, cid, sub_states)
        fid = funding_id(cid, participant)
        receiver = self.receiver if self.receiver is not None else participant
        # Every state of a channel has the same assets, so ``req.tx.state``'s are the outcome's.
        for asset in req.tx.state.allocation.assets:
            if not self.chain.is_ours(asset):
                continue  # paid out by that chain's adjudicator
            amount = await self.chain.holdings(asset.holder, fid)
            if amount == 0:
                continue
            sig = sign_withdrawal_auth(self.account.private_key, cid, participant, receiver, amount)
            data = b.withdraw_data(cid, participant, receiver, amount, sig)
            try:
                await self._send(checksum(asset.holder), data, "withdraw")
            except InsufficientHoldingsError:
                # Another process holding the same key withdrew meanwhile: done if empty.
                if await self.chain.holdings(asset.holder, fid) != 0:
                    raise

    async def _conclude(
        self, req: AdjudicatorReq, cid: bytes, sub_states: Mapping[bytes, SignedState]
    ) -> None:
        params, state = req.params, req.tx.state
        try:
            if state.is_final and not state.allocation.locked and req.tx.fully_signed:
                if req.secondary and await self._wait_concluded(cid, self.secondary_grace):
                    return
                sigs = [s for s in req.tx.sigs if s is not None]
                data = b.conclude_final_data(params, state, sigs)
                await self._send(self.chain.adjudicator_hex, data, "concludeFinal")
            else:
                subs = [s.state for s in sub_states_preorder(state, sub_states, "conclude")]
                data = b.conclude_data(params, state, subs)
                await self._send(self.chain.adjudicator_hex, data, "conclude")
        except AlreadyConcludedError:
            pass  # someone else concluded first: that was the goal
        except StateMismatchError:
            # Concluded meanwhile with another state (the contract checks the state before the
            # phase): the outcome is set, which was the goal.
            if not await self._concluded(cid):
                raise

    async def _concluded(self, cid: bytes) -> bool:
        d = await self.chain.dispute(cid)
        return d is not None and d.phase == Phase.CONCLUDED

    async def _wait_concluded(self, cid: bytes, grace: float) -> bool:
        """Whether the channel gets concluded within ``grace`` seconds (polled)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        while True:
            if await self._concluded(cid):
                return True
            if loop.time() >= end:
                return False
            await asyncio.sleep(min(self.chain.node.options.poll_interval, grace))

    def channel_events(self) -> ChannelEvents:
        """Many channels' events in one stream, fed by the chain's one log poller."""
        return EthChannelEvents(self.chain)

    async def subscribe(self, params: Params) -> EventSubscription:
        """The channel's events: the latest past one first, then new ones as mined."""
        return await EthSubscription.start(self.chain, params.id or channel_id(params))
