"""Opening a ledger channel: proposal, acceptance, v0 signatures and funding.

Proposer P is participant 0, responder R participant 1. Nothing is deposited before the
initial state carries both signatures, so a failed funding can always be recovered.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from perun_core.channel import limits
from perun_core.channel.allocation import Allocation, Balances, as_balances
from perun_core.channel.params import Params, make_params, nonce_from_shares
from perun_core.channel.phase import Phase
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Address
from perun_core.channel.validation import check_allocation, check_initial
from perun_core.errors import (
    ChannelFundingError,
    InvalidFundingAgreementError,
    InvalidInitialStateError,
    InvalidSignatureError,
    InvalidStateError,
    PeerRejectedError,
    PerunError,
    RejectCode,
    RequestTimedOutError,
    ResponderUsedError,
    UnknownAppError,
    UnsupportedFeatureError,
)
from perun_core.interfaces.funder import FundingRequest
from perun_core.interfaces.persister import ChannelRecord
from perun_core.logging import log_extra
from perun_core.wire import messages as wire

if TYPE_CHECKING:
    from perun_core.client.channel import Channel
    from perun_core.client.engine import Engine

log = logging.getLogger("perun.proposal")


@dataclass(frozen=True, slots=True)
class LedgerChannelProposal:
    """What a user proposes when opening a ledger channel with one peer.

    Attributes:
        peer: the responder's wire address.
        allocation: the initial allocation; column 0 is ours, column 1 the peer's.
        challenge_duration: seconds of each dispute window on the ledger.
        app: the AppID, or ``None`` for a payment channel.
        data: the app's initial data.
        funding_agreement: who deposits what (default: the initial balances).
        aux: backend-specific extra bytes.
    """

    peer: Address
    allocation: Allocation
    challenge_duration: int = 60
    app: bytes | None = None
    data: bytes = b""
    funding_agreement: Balances | None = None
    aux: bytes = b""


@dataclass(frozen=True, slots=True)
class ProposalInfo:
    """A received channel proposal, as the proposal handler sees it."""

    proposer: Address
    participant: Address
    allocation: Allocation
    challenge_duration: int
    app: bytes | None
    data: bytes
    funding_agreement: Balances | None
    msg: wire.LedgerChannelProposal | wire.SubChannelProposal = field(repr=False)
    parent: Channel | None = None
    """For a sub-channel proposal: the parent channel it would be funded from."""

    @property
    def my_balances(self) -> tuple[int, ...]:
        """What the initial state credits us per asset."""
        me = self.parent.idx if self.parent is not None else 1
        return tuple(row[me] for row in self.allocation.balances)

    @property
    def my_deposits(self) -> tuple[int, ...]:
        """What accepting makes us deposit per asset (the funding agreement's column 1,
        else :attr:`my_balances`). Check this, not the balances, before accepting."""
        return _deposits(self.msg)


def _deposits(msg: wire.LedgerChannelProposal | wire.SubChannelProposal) -> tuple[int, ...]:
    if isinstance(msg, wire.SubChannelProposal):
        return tuple(0 for _ in msg.init_alloc.assets)  # funded off-chain, from the parent
    rows = msg.funding_agreement if msg.funding_agreement is not None else msg.init_alloc.balances
    return tuple(row[1] for row in rows)


class ProposalHandler(Protocol):
    """Decides on a channel proposal by calling ``responder.accept()`` or ``reject()``."""

    def __call__(self, proposal: ProposalInfo, responder: ProposalResponder) -> Any: ...


class ProposalResponder:
    """Answers one channel proposal: call exactly one of accept/reject."""

    def __init__(self, protocol: ProposalProtocol, env: wire.Envelope) -> None:
        self._protocol = protocol
        self._env = env
        self.used = False  # accept() or reject() was called
        self.task: asyncio.Task[Any] | None = None

    def _use(self) -> None:
        if self.used:
            raise ResponderUsedError("this proposal was already answered")
        self.used = True

    def accept(
        self, participant: Address | None = None, *, deposits: tuple[int, ...] | None = None
    ) -> asyncio.Task[Channel]:
        """Accept: sign the initial state, fund, and return the open channel.

        Args:
            participant: our wallet address in the channel (default: the client's account).
            deposits: required when the funding agreement makes us deposit more of some
                asset than the initial state credits us: pass ``proposal.my_deposits`` to
                agree to exactly that. Without it such a proposal is not accepted.

        Returns a task resolving to the :class:`Channel` once it is funded (``await`` it in
        async handlers; the client also announces the channel to ``on_new_channel``).

        Raises:
            InvalidFundingAgreementError: we would deposit more than we are credited and
                ``deposits`` does not confirm it (nothing is signed; the proposal is
                rejected).
        """
        msg = self._env.msg
        if isinstance(msg, wire.SubChannelProposal):
            self._use()
            self.task = asyncio.ensure_future(self._protocol.engine.subs.accept(self._env))
            return self.task
        assert isinstance(msg, wire.LedgerChannelProposal)
        wanted = _deposits(msg)
        credited = tuple(row[1] for row in msg.init_alloc.balances)
        if deposits != wanted and any(d > c for d, c in zip(wanted, credited, strict=True)):
            self.reject("the funding agreement's deposits were not confirmed")
            raise InvalidFundingAgreementError(
                f"the funding agreement makes us deposit {wanted} but credits us {credited}; "
                "accept(deposits=proposal.my_deposits) to agree to that"
            )
        self._use()
        coro = self._protocol.accept(self._env, participant)
        self.task = asyncio.ensure_future(coro)
        return self.task

    def reject(self, reason: str = "rejected") -> asyncio.Task[None]:
        """Reject the proposal with a reason the proposer sees."""
        self._use()
        msg = self._env.msg
        assert isinstance(msg, wire.LedgerChannelProposal | wire.SubChannelProposal)
        self.task = asyncio.ensure_future(
            self._protocol.send_rej(self._env.sender, msg.proposal_id, RejectCode.REJECTED, reason)
        )
        return self.task


class ProposalProtocol:
    """The channel-opening protocol of one client."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.client = engine.client
        engine.route(wire.LedgerChannelProposal, self.on_proposal)
        engine.route(wire.LedgerChannelProposalAcc, self.on_answer)
        engine.route(wire.ChannelProposalRej, self.on_answer)
        engine.route(wire.SubChannelProposalAcc, self.on_answer)
        self._pending: dict[bytes, asyncio.Future[wire.Message]] = {}
        # Recent proposal IDs (insertion-ordered, bounded): a repeat is ignored.
        self._seen: dict[bytes, None] = {}

    # --- validation (V1-V6) --------------------------------------------------------------------

    def _validate(self, msg: wire.LedgerChannelProposal, sender: Address, me: Address) -> None:
        backend = self.client.backend
        if msg.backend != backend.name:
            raise UnsupportedFeatureError(
                f"proposal for backend {msg.backend!r}; this client runs {backend.name!r}"
            )
        if not 1 <= msg.challenge_duration < limits.CHALLENGE_DURATION_BOUND:
            raise InvalidStateError("challenge_duration out of range", rule="V1")
        if len(msg.peers) != 2 or msg.peers[0] != sender or msg.peers[1] != me:
            raise InvalidStateError("peers must be [proposer, responder]", rule="V2")
        if len(msg.nonce_share) != 32 or len(msg.proposal_id) != 32:
            raise InvalidStateError("proposal ID and nonce share are 32 bytes", rule="V2")
        check_allocation(msg.init_alloc, 2)
        if msg.init_alloc.locked:
            raise InvalidInitialStateError("the initial allocation cannot lock funds")
        if any(a.ledger_id < 0 for a in msg.init_alloc.assets):
            raise InvalidStateError("bad asset", rule="V3")
        if msg.app is not None and self.client.apps.get(msg.app) is None:
            raise UnknownAppError(f"unknown app 0x{msg.app.hex()}")
        fa = msg.funding_agreement
        if fa is not None:
            bal = msg.init_alloc.balances
            if len(fa) != len(bal) or any(len(r) != len(b) for r, b in zip(fa, bal, strict=True)):
                raise InvalidFundingAgreementError("funding agreement has another shape")
            if any(sum(r) != sum(b) for r, b in zip(fa, bal, strict=True)):
                raise InvalidFundingAgreementError("funding agreement has other totals")
            if any(x < 0 for r in fa for x in r):
                raise InvalidFundingAgreementError("negative deposit in the funding agreement")
        backend.check_aux(msg.aux)

    # --- proposer ------------------------------------------------------------------------------

    async def propose(self, prop: LedgerChannelProposal) -> Channel:
        """Run the proposer side; returns the funded channel."""
        client = self.client
        engine = self.engine
        me = client.address
        msg = wire.LedgerChannelProposal(
            proposal_id=os.urandom(32),
            backend=client.backend.name,
            challenge_duration=prop.challenge_duration,
            nonce_share=os.urandom(32),
            app=prop.app,
            init_data=prop.data,
            init_alloc=prop.allocation,
            funding_agreement=as_balances(prop.funding_agreement)
            if prop.funding_agreement is not None
            else None,
            aux=prop.aux,
            participant=client.account.address,
            peers=(me, prop.peer),
        )
        self._validate(msg, me, prop.peer)
        answer = await self.ask(prop.peer, msg)
        if not isinstance(answer, wire.LedgerChannelProposalAcc):
            raise InvalidStateError("the peer answered with another kind of acceptance")
        params = self._params(msg, answer.nonce_share, answer.participant)
        if params.id in engine.channels:
            raise InvalidStateError("a channel with this ID exists already", rule="duplicate")
        v0 = self._initial_state(params, msg)
        check_initial(params, v0, engine.app_of(params))
        peer_addr = params.participants[1]
        if not client.backend.verify_state(peer_addr, v0, answer.init_sig):
            raise InvalidSignatureError(
                "the responder's initial signature does not verify; no channel was created",
                channel_id=params.id,
                version=0,
            )
        my_sig = client.backend.sign_state(client.account, v0)
        tx = Transaction(v0, (my_sig, answer.init_sig))
        record = ChannelRecord(
            params=params, idx=0, peers=msg.peers, phase=Phase.FUNDING, current=tx
        )
        ch = engine.add_channel(record)
        await ch.io.run(lambda: client.persister.channel_created(record))
        engine.publish_to_watcher(ch, tx)
        await ch.io.run(lambda: engine.send(prop.peer, wire.ChannelUpdateAcc(params.id, 0, my_sig)))
        await self._fund(ch, msg.funding_agreement)
        return ch

    async def ask(
        self, peer: Address, msg: wire.LedgerChannelProposal | wire.SubChannelProposal
    ) -> wire.Message:
        """Send a channel proposal and return the peer's acceptance.

        Raises:
            PeerRejectedError: the peer rejected it.
            RequestTimedOutError: no answer within the proposal timeout.
        """
        timeout = self.client.config.proposal_timeout
        fut: asyncio.Future[wire.Message] = asyncio.get_running_loop().create_future()
        self._pending[msg.proposal_id] = fut
        try:
            await self.engine.send(peer, msg)
            async with asyncio.timeout(timeout):
                answer = await fut
        except TimeoutError:
            raise RequestTimedOutError(
                f"peer {peer} did not answer the channel proposal within {timeout}s"
            ) from None
        finally:
            self._pending.pop(msg.proposal_id, None)
        if isinstance(answer, wire.ChannelProposalRej):
            raise PeerRejectedError(answer.reason, answer.reject_code, what="channel proposal")
        return answer

    def first_time(self, proposal_id: bytes) -> bool:
        """Whether a proposal ID is new (remembered, bounded; a repeat is ignored)."""
        seen = self._seen
        if proposal_id in seen:
            return False
        seen[proposal_id] = None
        if len(seen) > self.client.config.seen_proposals:
            del seen[next(iter(seen))]
        return True

    def _params(
        self, msg: wire.LedgerChannelProposal, share_r: bytes, participant_r: Address
    ) -> Params:
        return make_params(
            self.client.backend,
            challenge_duration=msg.challenge_duration,
            participants=(msg.participant, participant_r),
            nonce=nonce_from_shares(msg.nonce_share, share_r),
            app=msg.app,
            ledger_channel=True,
            virtual_channel=False,
            aux=msg.aux,
        )

    @staticmethod
    def _initial_state(params: Params, msg: wire.LedgerChannelProposal) -> State:
        return State(
            channel_id=params.id,
            version=0,
            allocation=msg.init_alloc,
            app=params.app,
            data=msg.init_data,
            is_final=False,
        )

    def on_answer(self, env: wire.Envelope, msg: wire.Message) -> None:
        """An Acc/Rej for one of our proposals (dispatcher, synchronous)."""
        pid = getattr(msg, "proposal_id", b"")
        fut = self._pending.get(pid)
        if fut is None or fut.done():
            log.debug(
                "answer for unknown proposal 0x%s from %s",
                pid.hex()[:12],
                env.sender,
                extra=log_extra(peer=env.sender),
            )
            return
        fut.set_result(msg)

    # --- responder -----------------------------------------------------------------------------

    def on_proposal(self, env: wire.Envelope, msg: wire.LedgerChannelProposal) -> None:
        """A proposal arrived (dispatcher, synchronous)."""
        if not self.first_time(msg.proposal_id):
            return  # a repeated proposal ID is ignored
        try:
            self._validate(msg, env.sender, self.client.address)
        except PerunError as e:
            log.info(
                "refused invalid proposal from %s: %s",
                env.sender,
                e,
                extra=log_extra(peer=env.sender),
            )
            self.engine.spawn(
                self.send_rej(env.sender, msg.proposal_id, RejectCode.INVALID, str(e))
            )
            return
        self.engine.spawn(self.decide(env, msg))

    async def decide(
        self,
        env: wire.Envelope,
        msg: wire.LedgerChannelProposal | wire.SubChannelProposal,
        parent: Channel | None = None,
    ) -> None:
        """Ask the proposal handler about a valid proposal, then answer it."""
        client = self.client
        engine = self.engine
        responder = ProposalResponder(self, env)
        if isinstance(msg, wire.SubChannelProposal):
            assert parent is not None
            participant = parent.params.participants[parent.peer_idx]
            agreement = None
        else:
            participant, agreement = msg.participant, msg.funding_agreement
        info = ProposalInfo(
            proposer=env.sender,
            participant=participant,
            allocation=msg.init_alloc,
            challenge_duration=msg.challenge_duration,
            app=msg.app,
            data=msg.init_data,
            funding_agreement=agreement,
            msg=msg,
            parent=parent,
        )
        handler = engine.proposal_handler
        try:
            async with asyncio.timeout(client.config.proposal_timeout):
                if handler is None:
                    responder.reject("no proposal handler")
                else:
                    res = handler(info, responder)
                    if asyncio.iscoroutine(res):
                        await res
        except TimeoutError:
            pass
        except Exception as e:
            log.exception("proposal handler failed", extra=log_extra(peer=env.sender))
            if not responder.used:
                responder.reject(f"handler failed: {e}")
        if not responder.used:
            responder.used = True
            await self.send_rej(
                env.sender, msg.proposal_id, RejectCode.TIMEOUT, "no decision in time"
            )
            return
        if responder.task is not None:
            try:
                await asyncio.shield(responder.task)
            except Exception as e:  # noqa: BLE001 - any failure of the accepting task is logged, the dispatcher lives on
                log.info(
                    "accepting a proposal from %s failed: %s",
                    env.sender,
                    e,
                    extra=log_extra(peer=env.sender),
                )
                engine.report_error(e)

    async def send_rej(self, to: Address, proposal_id: bytes, code: int, reason: str) -> None:
        await self.engine.send(to, wire.ChannelProposalRej(proposal_id, code, reason[:1000]))

    async def accept(self, env: wire.Envelope, participant: Address | None) -> Channel:
        client = self.client
        engine = self.engine
        msg = env.msg
        assert isinstance(msg, wire.LedgerChannelProposal)
        part = participant if participant is not None else client.account.address
        share = os.urandom(32)
        params = self._params(msg, share, part)
        if params.id in engine.channels:
            await self.send_rej(
                env.sender, msg.proposal_id, RejectCode.INVALID, "channel exists already"
            )
            raise InvalidStateError("a channel with this ID exists already", rule="duplicate")
        v0 = self._initial_state(params, msg)
        check_initial(params, v0, engine.app_of(params))
        sig = client.backend.sign_state(client.account, v0)
        staging = Transaction(v0, (None, sig))
        record = ChannelRecord(
            params=params, idx=1, peers=msg.peers, phase=Phase.INIT_SIGNING, staging=staging
        )
        ch = engine.add_channel(record)
        ch.rt.v0_sig = asyncio.get_running_loop().create_future()
        acc = wire.LedgerChannelProposalAcc(msg.proposal_id, share, part, sig)
        await ch.io.run(lambda: client.persister.channel_created(record))
        await ch.io.run(lambda: engine.send(env.sender, acc))
        try:
            async with asyncio.timeout(client.config.update_timeout):
                await ch.rt.v0_sig
        except TimeoutError:
            ch.io.write(ch.machine.set_needs_sync(True))
            engine.spawn(engine.sync.start(ch))
            raise RequestTimedOutError(
                "the proposer did not send its initial signature in time; the channel syncs "
                "on the next connection"
            ) from None
        await self._fund(ch, msg.funding_agreement)
        return ch

    def on_v0_sig(self, ch: Channel, msg: wire.ChannelUpdateAcc) -> None:
        """The proposer's initial signature arrived (dispatcher, synchronous)."""
        fut = ch.rt.v0_sig
        staging = ch.machine.staging
        if fut is None or fut.done() or staging is None or ch.machine.phase != Phase.INIT_SIGNING:
            return
        try:
            proposer = ch.params.participants[ch.peer_idx]
            ok = self.client.backend.verify_state(proposer, staging.state, msg.sig)
        except PerunError:
            ok = False
        if not ok:
            fut.set_exception(
                InvalidSignatureError(
                    "the proposer's initial signature does not verify", channel_id=ch.id, version=0
                )
            )
            return
        ch.machine.add_sig(ch.peer_idx, msg.sig)
        enabled = ch.machine.enable()
        tx = enabled.current
        ch.io.write(enabled)
        self.engine.publish_to_watcher(ch, tx)
        fut.set_result(msg.sig)

    # --- funding -------------------------------------------------------------------------------

    async def resume_funding(self, ch: Channel) -> None:
        """Fund a channel again after a restart or a late v0 signature (idempotent)."""
        assert ch.machine.current is not None
        try:
            await self._fund(ch, None)
        except ChannelFundingError as e:
            self.engine.report_error(e)

    async def _fund(self, ch: Channel, agreement: Balances | None) -> None:
        client = self.client
        engine = self.engine
        assert ch.machine.current is not None
        v0 = ch.machine.current.state
        req = FundingRequest(
            params=ch.params,
            state=v0,
            idx=ch.idx,
            agreement=agreement if agreement is not None else v0.allocation.balances,
        )
        try:
            await client.funder.fund(req)
        except Exception as e:
            for env in ch.rt.funding_queue:
                upd = env.msg
                if isinstance(upd, wire.ChannelUpdate):
                    engine.updates.send_rej(
                        ch, upd.state.version, RejectCode.NOT_READY, "funding failed"
                    )
            ch.rt.funding_queue = ()
            raise ChannelFundingError(ch, e) from e
        queued, ch.rt.funding_queue = ch.rt.funding_queue, ()
        if not ch.machine.in_phase(Phase.FUNDING):
            # The ledger took over while we funded (the peer registered v0, say): the
            # channel is funded and in dispute; it is returned and settles through the
            # ledger. Queued updates cannot apply any more.
            for env in queued:
                upd = env.msg
                if isinstance(upd, wire.ChannelUpdate):
                    engine.updates.send_rej(
                        ch, upd.state.version, RejectCode.NOT_READY, "channel in dispute"
                    )
            engine.announce(ch)
            return
        await ch.io.write(ch.machine.funded())
        for env in queued:
            engine.dispatch(env)
        engine.announce(ch)
