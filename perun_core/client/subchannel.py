"""Sub-channels: opened, funded and settled off-chain inside a parent channel (see
docs/protocols.md).

A sub-channel has its parent's participants, in the same order (so each party keeps its
index), and is funded by a parent update that moves the sub-channel's initial balances into a
locked sub-allocation. Either party proposes; the responder's user decides through the
ordinary proposal handler. The parent update that funds it, and the one that folds its final
state back, are *expected*: both parties compute them from the sub-channel's state, and the
responder accepts exactly that update without asking its user. Sub-channels nest at any
depth. A dispute registers the whole tree from its root ledger channel.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from perun_core.channel import limits
from perun_core.channel.allocation import Allocation, Balances, as_balances
from perun_core.channel.machine import IN_DISPUTE
from perun_core.channel.params import Params, make_params, nonce_from_shares
from perun_core.channel.phase import Phase
from perun_core.channel.state import State, Transaction
from perun_core.channel.tree import free_balances_cover, funded_allocation, settled_allocation
from perun_core.channel.validation import check_allocation, check_initial
from perun_core.client.update import check_updatable
from perun_core.errors import (
    ChannelFundingError,
    ChannelNotReadyError,
    InsufficientFundsError,
    InvalidInitialStateError,
    InvalidSignatureError,
    InvalidStateError,
    PerunError,
    RejectCode,
    RequestTimedOutError,
    SubChannelsPresentError,
    UnknownAppError,
    UnknownChannelError,
    UnsupportedFeatureError,
    UpdateConflictError,
)
from perun_core.interfaces.persister import ChannelRecord
from perun_core.logging import channel_extra
from perun_core.wire import messages as wire

if TYPE_CHECKING:
    from perun_core.client.channel import Channel
    from perun_core.client.engine import Engine

log = logging.getLogger("perun.subchannel")

RESUME_ATTEMPTS = 6
"""How often a restored FUNDING sub-channel tries to get funded before it waits for a restart."""


@dataclass(frozen=True, slots=True)
class SubChannelProposal:
    """What a user proposes when opening a sub-channel of an open channel.

    Attributes:
        balances: the initial balances, ``balances[asset][participant]`` in the parent's
            participant order; taken from the parent's free balances.
        app: the AppID, or ``None`` for a payment sub-channel.
        data: the app's initial data.
        challenge_duration: seconds of each dispute window (default: the parent's).
        aux: backend-specific extra bytes.
    """

    balances: Balances
    app: bytes | None = None
    data: bytes = b""
    challenge_duration: int | None = None
    aux: bytes = b""


class SubChannelProtocol:
    """Opening, funding and settling sub-channels for one client."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.client = engine.client
        engine.route(wire.SubChannelProposal, self.on_proposal)
        self._folds: dict[bytes, asyncio.Future[None]] = {}
        self._retiring: dict[bytes, asyncio.Future[None]] = {}

    # --- validation ------------------------------------------------------------------------------

    def _check(self, parent: Channel, msg: wire.SubChannelProposal) -> None:
        """Check a sub-channel proposal against its parent (either side)."""
        backend = self.client.backend
        if msg.backend != backend.name:
            raise UnsupportedFeatureError(
                f"proposal for backend {msg.backend!r}; this client runs {backend.name!r}"
            )
        if not 1 <= msg.challenge_duration < limits.CHALLENGE_DURATION_BOUND:
            raise InvalidStateError("challenge_duration out of range", rule="V1")
        if len(msg.nonce_share) != 32 or len(msg.proposal_id) != 32:
            raise InvalidStateError("proposal ID and nonce share are 32 bytes", rule="V2")
        check_updatable(parent)
        if parent.state.is_final:
            raise ChannelNotReadyError(
                "the parent's state is final", phase=parent.phase, channel_id=parent.id
            )
        check_allocation(msg.init_alloc, parent.params.num_parts)
        if msg.init_alloc.locked:
            raise InvalidInitialStateError("the initial allocation cannot lock funds")
        if msg.init_alloc.assets != parent.state.allocation.assets:
            raise InvalidStateError("a sub-channel has its parent's assets, in order", rule="V3")
        if not free_balances_cover(parent.state.allocation, msg.init_alloc):
            raise InsufficientFundsError("the parent's free balances do not cover the sub-channel")
        if msg.app is not None and self.client.apps.get(msg.app) is None:
            raise UnknownAppError(f"unknown app 0x{msg.app.hex()}")
        backend.check_aux(msg.aux)

    def _params(self, parent: Channel, msg: wire.SubChannelProposal, share_r: bytes) -> Params:
        return make_params(
            self.client.backend,
            challenge_duration=msg.challenge_duration,
            participants=parent.params.participants,
            nonce=nonce_from_shares(msg.nonce_share, share_r),
            app=msg.app,
            ledger_channel=False,
            virtual_channel=False,
            aux=msg.aux,
        )

    @staticmethod
    def _initial_state(params: Params, msg: wire.SubChannelProposal) -> State:
        return State(params.id, 0, msg.init_alloc, params.app, msg.init_data, False)

    def _record(self, parent: Channel, params: Params, **fields: object) -> ChannelRecord:
        return ChannelRecord(
            params=params,
            idx=parent.idx,
            peers=parent.peers,
            parent=parent.id,
            **fields,  # type: ignore[arg-type]
        )

    # --- proposer -------------------------------------------------------------------------------

    async def propose(self, parent: Channel, prop: SubChannelProposal) -> Channel:
        """Open a sub-channel of ``parent`` (the caller holds the parent's slot)."""
        client = self.client
        engine = self.engine
        msg = wire.SubChannelProposal(
            proposal_id=os.urandom(32),
            backend=client.backend.name,
            challenge_duration=prop.challenge_duration or parent.params.challenge_duration,
            nonce_share=os.urandom(32),
            app=prop.app,
            init_data=prop.data,
            init_alloc=Allocation(parent.state.allocation.assets, as_balances(prop.balances)),
            aux=prop.aux,
            parent=parent.id,
        )
        self._check(parent, msg)
        answer = await engine.proposals.ask(parent.peer, msg)
        if not isinstance(answer, wire.SubChannelProposalAcc):
            raise InvalidStateError("the peer answered with another kind of acceptance")
        params = self._params(parent, msg, answer.nonce_share)
        if params.id in engine.channels:
            raise InvalidStateError("a channel with this ID exists already", rule="duplicate")
        v0 = self._initial_state(params, msg)
        check_initial(params, v0, engine.app_of(params))
        if not client.backend.verify_state(
            params.participants[parent.peer_idx], v0, answer.init_sig
        ):
            raise InvalidSignatureError(
                "the responder's initial signature does not verify; no channel was created",
                channel_id=params.id,
                version=0,
            )
        my_sig = client.backend.sign_state(client.account, v0)
        sigs: list[bytes | None] = [None] * params.num_parts
        sigs[parent.idx], sigs[parent.peer_idx] = my_sig, answer.init_sig
        tx = Transaction(v0, tuple(sigs))
        record = self._record(parent, params, phase=Phase.FUNDING, current=tx)
        sub = engine.add_channel(record)
        await sub.io.run(lambda: client.persister.channel_created(record))
        engine.publish_to_watcher(sub, tx)
        await sub.io.run(lambda: engine.send(parent.peer, wire.ChannelUpdateAcc(sub.id, 0, my_sig)))
        await self._fund(parent, sub)
        return sub

    async def _fund(self, parent: Channel, sub: Channel) -> None:
        """Lock the sub-channel's initial balances in the parent (holding the parent's slot)."""
        assert sub.machine.current is not None
        init = sub.machine.current.state.allocation
        cfg = self.client.config
        try:
            for attempt in range(cfg.conflict_retries + 2):
                if self.locks(parent, sub.id):
                    break
                try:
                    await self.engine.updates.propose(
                        parent,
                        lambda s: s.replace(
                            allocation=funded_allocation(s.allocation, sub.id, init)
                        ),
                        tree_change=True,
                    )
                    break
                except UpdateConflictError:
                    # The peer updated the parent at the same moment (it may pay while it
                    # waits for the funding): its update goes first, then ours again.
                    if attempt > cfg.conflict_retries:
                        raise
                    await asyncio.sleep(cfg.update_timeout / 10 * (attempt + 1))
        except Exception as e:
            raise ChannelFundingError(sub, e) from e
        await self._mark_funded(sub)

    async def resume_funding(self, sub: Channel) -> None:
        """Fund a restored FUNDING sub-channel (either side may; a second try is a no-op)."""
        parent = self.engine.channels.get(sub.parent or b"")
        if parent is None:
            return
        wait = self.client.config.update_timeout
        for attempt in range(RESUME_ATTEMPTS):
            if sub.machine.phase != Phase.FUNDING:
                return
            if self.locks(parent, sub.id):
                await self._mark_funded(sub)
                return
            try:
                # The peer may first need a sync round (it restarted too, or has not seen
                # our initial signature): a refusal now is retried after a pause.
                await parent.tree_update(lambda p: self._fund(p, sub))
                return
            except PerunError as e:
                log.info(
                    "funding sub-channel 0x%s again failed (%d): %s",
                    sub.id.hex()[:12],
                    attempt + 1,
                    e,
                    extra=channel_extra(sub),
                )
            await asyncio.sleep(wait / 2 * (attempt + 1))

    # --- responder ------------------------------------------------------------------------------

    def on_proposal(self, env: wire.Envelope, msg: wire.SubChannelProposal) -> None:
        """A sub-channel proposal arrived (dispatcher, synchronous)."""
        engine = self.engine
        if not engine.proposals.first_time(msg.proposal_id):
            return
        parent = engine.channels.get(msg.parent)
        try:
            if parent is None or parent.peer != env.sender:
                raise UnknownChannelError("no such parent channel with this peer")
            self._check(parent, msg)
        except PerunError as e:
            log.info("refused sub-channel proposal from %s: %s", env.sender, e)
            engine.spawn(
                engine.proposals.send_rej(env.sender, msg.proposal_id, RejectCode.INVALID, str(e))
            )
            return
        engine.spawn(engine.proposals.decide(env, msg, parent))

    async def accept(self, env: wire.Envelope) -> Channel:
        """Accept a sub-channel proposal: sign v0, wait for the proposer's, and for funding."""
        client = self.client
        engine = self.engine
        msg = env.msg
        assert isinstance(msg, wire.SubChannelProposal)
        parent = engine.channels.get(msg.parent)
        try:
            if parent is None:
                raise UnknownChannelError("the parent channel is gone")
            self._check(parent, msg)  # again: the parent may have moved while the user decided
        except PerunError as e:
            await engine.proposals.send_rej(env.sender, msg.proposal_id, RejectCode.INVALID, str(e))
            raise
        share = os.urandom(32)
        params = self._params(parent, msg, share)
        if params.id in engine.channels:
            await engine.proposals.send_rej(
                env.sender, msg.proposal_id, RejectCode.INVALID, "channel exists already"
            )
            raise InvalidStateError("a channel with this ID exists already", rule="duplicate")
        v0 = self._initial_state(params, msg)
        check_initial(params, v0, engine.app_of(params))
        sig = client.backend.sign_state(client.account, v0)
        sigs: list[bytes | None] = [None] * params.num_parts
        sigs[parent.idx] = sig
        record = self._record(
            parent, params, phase=Phase.INIT_SIGNING, staging=Transaction(v0, tuple(sigs))
        )
        sub = engine.add_channel(record)
        sub.rt.v0_sig = asyncio.get_running_loop().create_future()
        acc = wire.SubChannelProposalAcc(msg.proposal_id, share, sig)
        await sub.io.run(lambda: client.persister.channel_created(record))
        await sub.io.run(lambda: engine.send(env.sender, acc))
        timeout = client.config.update_timeout
        try:
            async with asyncio.timeout(timeout):
                await sub.rt.v0_sig
        except TimeoutError:
            sub.io.write(sub.machine.set_needs_sync(True))
            engine.spawn(engine.sync.start(sub))
            raise RequestTimedOutError(
                "the proposer did not send its initial signature in time; the sub-channel "
                "syncs on the next connection"
            ) from None
        try:
            await sub.wait_phase(Phase.ACTING, *IN_DISPUTE, timeout=timeout * 2)
        except TimeoutError:
            raise RequestTimedOutError(
                "the proposer did not fund the sub-channel in time; either party funds it "
                "when the client restarts"
            ) from None
        return sub

    # --- expected parent updates ----------------------------------------------------------------

    @staticmethod
    def locks(parent: Channel, sub_id: bytes) -> bool:
        """Whether the parent's current state locks funds in ``sub_id``."""
        return any(sa.id == sub_id for sa in parent.state.allocation.locked)

    def expected(self, parent: Channel, cur: State, new: State) -> bool:
        """Whether ``new`` is exactly the funding or the settlement of a known sub-channel.

        Only the allocation may change (data, app and finality stay), and it must equal what
        funding a FUNDING sub-channel, or folding back a FINAL one, gives.
        """
        if new.data != cur.data or new.is_final or new.app != cur.app:
            return False
        for kid in self.engine.children(parent):
            tx = kid.machine.current
            if tx is None:
                continue
            try:
                if kid.machine.phase == Phase.FUNDING:
                    want = funded_allocation(cur.allocation, kid.id, tx.state.allocation)
                elif kid.machine.phase == Phase.FINAL:
                    want = settled_allocation(cur.allocation, tx.state)
                else:
                    continue
            except PerunError:
                continue
            if want == new.allocation:
                return True
        return False

    def on_enabled(self, ch: Channel, old: State | None, new: State) -> None:
        """A channel has a new current state: fund or retire its sub-channels as it says,
        and fold a sub-channel that became final into its parent (index 0 proposes)."""
        if old is None or old.allocation.locked != new.allocation.locked:
            locked = {sa.id for sa in new.allocation.locked}
            for kid in self.engine.children(ch):
                phase = kid.machine.phase
                if phase == Phase.FUNDING and kid.id in locked:
                    self.engine.spawn(self._mark_funded(kid))
                elif phase == Phase.FINAL and kid.id not in locked:
                    self._retire(kid)
        if ch.parent is not None and new.is_final and not new.allocation.locked and ch.idx == 0:
            if ch.machine.phase in IN_DISPUTE:
                return  # a forced final state: the tree's conclusion on the ledger pays it
            self.ensure_fold(ch)

    async def _mark_funded(self, sub: Channel) -> None:
        if sub.machine.phase != Phase.FUNDING:
            return
        await sub.io.write(sub.machine.funded())
        queued, sub.rt.funding_queue = sub.rt.funding_queue, ()
        for env in queued:
            self.engine.dispatch(env)
        self.engine.announce(sub)

    def _retire(self, sub: Channel) -> asyncio.Future[None]:
        """Record (once) that the parent no longer locks the final ``sub``: it is settled."""
        task = self._retiring.get(sub.id)
        if task is None:
            task = self._retiring[sub.id] = self.engine.spawn(self._retire_once(sub))
            task.add_done_callback(lambda _t: self._retiring.pop(sub.id, None))
        return task

    async def _retire_once(self, sub: Channel) -> None:
        if sub.machine.phase == Phase.WITHDRAWN or sub.rt.removed:
            return
        await sub.io.write(sub.machine.withdrawing())
        sub.rt.concluded = True  # nothing on the ledger to wait for
        await self.engine.finish_channel(sub)

    # --- settlement -----------------------------------------------------------------------------

    def ensure_fold(self, sub: Channel) -> asyncio.Future[None]:
        """Start (once) the parent update that folds the final ``sub`` back; returns it."""
        task = self._folds.get(sub.id)
        if task is None or (task.done() and task.exception() is not None):
            task = self._folds[sub.id] = self.engine.spawn(self._fold(sub))
        return task

    async def _fold(self, sub: Channel) -> None:
        parent = self.engine.channels.get(sub.parent or b"")
        if parent is None:
            raise UnknownChannelError("the parent channel is gone")
        assert sub.machine.current is not None
        final = sub.machine.current.state

        async def fold(p: Channel) -> None:
            if p.machine.needs_sync or not p.rt.sync_done.is_set():
                # After a restart or a lost answer: the peer may hold the fold already.
                await self.engine.settlement.sync_first(p)
            if not self.locks(p, sub.id):
                return
            await self.engine.updates.propose(
                p,
                lambda s: s.replace(allocation=settled_allocation(s.allocation, final)),
                tree_change=True,
            )

        try:
            await parent.tree_update(fold)
        finally:
            self._folds.pop(sub.id, None)
        await asyncio.shield(self._retire(sub))

    async def settle(self, sub: Channel) -> None:
        """Settle a sub-channel into its parent (the caller holds the sub-channel's slot).

        Cooperative: finalize, then the parent update folds it back (index 0 proposes it,
        the other party waits for it). If that fails, the tree's root is disputed on the
        ledger, which settles every channel of the tree.
        """
        m = sub.machine
        if m.phase == Phase.WITHDRAWN:
            return
        parent = self.engine.channels.get(sub.parent or b"")
        if m.phase == Phase.WITHDRAWING and (parent is None or not self.locks(parent, sub.id)):
            # folded back before a restart: only the removal is left
            await asyncio.shield(self._retire(sub))
            return
        if sub.state.allocation.locked:
            raise SubChannelsPresentError(
                f"channel 0x{sub.id.hex()[:12]} still locks funds in sub-channels"
            )
        engine = self.engine
        if m.in_phase(Phase.ACTING):
            try:
                await engine.settlement.finalize(sub)
            except PerunError as e:
                log.warning("sub-channel finalization failed (%s); disputing", e)
        if m.in_phase(Phase.FINAL):
            wait = self.client.config.update_timeout * 3
            try:
                if sub.idx == 0:
                    await asyncio.wait_for(asyncio.shield(self.ensure_fold(sub)), wait)
                else:
                    await sub.wait_phase(Phase.WITHDRAWN, *IN_DISPUTE, timeout=wait)
            except (PerunError, TimeoutError) as e:
                log.warning(
                    "sub-channel 0x%s: settling into the parent failed (%s); disputing",
                    sub.id.hex()[:12],
                    e,
                    extra=channel_extra(sub),
                )
        if m.in_phase(Phase.WITHDRAWN):
            return
        root = engine.root_of(sub)
        await engine.disputes.settle(root)
        await sub.wait_phase(Phase.WITHDRAWN, timeout=self.client.config.sync_timeout * 4)
