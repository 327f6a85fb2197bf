"""The simulated ledger: accounts, asset holdings and the adjudicator.

The sim ledger is a product, not a mock: it enforces exactly the rules of the Ethereum
contracts, in the same order, and refuses with the same reason strings in
:attr:`ChainError.reason`, so tests can compare backends. Each refusal is the
:class:`~perun_core.errors.ChainError` leaf of the rule that failed (``StaleStateError``,
``TimeoutNotElapsedError``, ...), chosen where the rule is checked. Every transaction is
atomic: it runs against a journal and is committed only if every check passes (a refused
transaction changes nothing, like a reverted one).

Ledger time is a :class:`~perun_sim.clock.SimClock`; tests use a manual clock and skip
dispute windows with ``clock.advance(d)``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import NoReturn

from perun_core.channel.allocation import Allocation
from perun_core.channel.app import AppRegistry, PaymentApp, bind_apps
from perun_core.channel.limits import BALANCE_BOUND
from perun_core.channel.params import Params
from perun_core.channel.state import SignedState, State
from perun_core.channel.types import Address, Asset
from perun_core.channel.validation import check_allocation
from perun_core.errors import (
    AlreadyConcludedError,
    AppTransitionError,
    ChainError,
    ChannelKindError,
    ConcludedWithOtherStateError,
    ForceExecutionClosedError,
    InsufficientBalanceError,
    InsufficientHoldingsError,
    InvalidLedgerInputError,
    InvalidProgressError,
    InvalidStateError,
    MissingSubStatesError,
    NotFinalError,
    NotRegisteredError,
    NotSettledError,
    ParamsMismatchError,
    RefutationClosedError,
    SignatureRefusedError,
    StaleStateError,
    StateMismatchError,
    SubChannelMismatchError,
    TimeoutNotElapsedError,
)
from perun_core.interfaces import (
    AdjudicatorEvent,
    ConcludedEvent,
    EventSubscription,
    ProgressedEvent,
    QueuedChannelEvents,
    RegisteredEvent,
)
from perun_core.plugins import installed_apps
from perun_core.queues import ClosableQueue
from perun_sim.clock import SimClock, SimTimeout
from perun_sim.crypto import SimSignatureFormatError, sha3, verify_digest
from perun_sim.encoding import (
    PAYMENT_APP_ID,
    channel_id,
    encode_withdrawal_auth,
    funding_id,
    hash_state,
    sim_app_id,
)

DEFAULT_LEDGER_ID = 1337


class DisputePhase(IntEnum):
    """Phase of a channel's dispute on the ledger (numbering of the Ethereum contract)."""

    DISPUTE = 0
    FORCEEXEC = 1
    CONCLUDED = 2


@dataclass(frozen=True, slots=True)
class Dispute:
    """The ledger's record of a registered channel (``disputes(id)`` on Ethereum).

    Attributes:
        version: version of the state on the ledger.
        phase: DISPUTE, FORCEEXEC or CONCLUDED.
        timeout: end of the refutation / force-execution window (ledger seconds).
        has_app: whether the channel has an app (2x rule, progress).
        challenge_duration: the channel's challenge duration.
        state_hash: SHA3-256 of the state's canonical encoding.
        state: the state itself (the sim keeps it; Ethereum rebuilds it from calldata).
    """

    version: int
    phase: DisputePhase
    timeout: int
    has_app: bool
    challenge_duration: int
    state_hash: bytes
    state: State = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class WithdrawalAuth:
    """A participant's authorization to pay out its holdings of one asset of a channel.

    Signed by ``participant`` (sim scheme over :meth:`encode`); anyone may submit it, the
    funds go to ``receiver``. It carries no nonce: it can be reused while holdings suffice.
    """

    channel_id: bytes
    participant: Address
    receiver: Address
    amount: int
    asset: Asset

    def encode(self) -> bytes:
        """The signed bytes (:func:`perun_sim.encoding.encode_withdrawal_auth`)."""
        return encode_withdrawal_auth(
            self.channel_id, self.participant, self.receiver, self.amount, self.asset
        )


HoldingKey = tuple[Asset, bytes]
"""``(asset, funding_id)``"""


class _Tx:
    """A journal over the ledger's state; committed only when the operation succeeds."""

    __slots__ = ("balances", "disputes", "events", "holdings", "ledger", "now", "op", "settled")

    def __init__(self, ledger: SimLedger, op: str) -> None:
        self.ledger = ledger
        self.op = op
        self.now = ledger.clock.now()  # one timestamp per transaction, like a block
        self.balances: dict[tuple[Address, Asset], int] = {}
        self.holdings: dict[HoldingKey, int] = {}
        self.disputes: dict[bytes, Dispute] = {}
        self.settled: set[tuple[Asset, bytes]] = set()
        self.events: list[AdjudicatorEvent] = []

    def require(self, cond: bool, error: type[ChainError], reason: str) -> None:
        """Refuse with ``error(reason)`` unless ``cond`` holds."""
        if not cond:
            raise error(reason, operation=self.op)

    def fail(self, error: type[ChainError], reason: str) -> NoReturn:
        """Refuse with ``error(reason)``: the leaf of the rule that failed, the contract's text."""
        raise error(reason, operation=self.op)

    def dispute(self, cid: bytes) -> Dispute | None:
        d = self.disputes.get(cid)
        return d if d is not None else self.ledger.committed_dispute(cid)

    def holding(self, key: HoldingKey) -> int:
        h = self.holdings.get(key)
        return h if h is not None else self.ledger.committed_holding(key)

    def balance(self, who: Address, asset: Asset) -> int:
        b = self.balances.get((who, asset))
        return b if b is not None else self.ledger.committed_balance(who, asset)

    def is_settled(self, asset: Asset, cid: bytes) -> bool:
        return (asset, cid) in self.settled or self.ledger.is_settled(asset, cid)


def _concludable(d: Dispute) -> int:
    """When a registered channel may conclude: its timeout, plus one challenge duration for
    an app channel that was never force-executed (room for ``progress``)."""
    if d.phase == DisputePhase.DISPUTE and d.has_app:
        return d.timeout + d.challenge_duration
    return d.timeout


class SimLedger:
    """One simulated ledger shared by every client of a process.

    Args:
        ledger_id: the ledger's ID (the ``ledger_id`` of its assets; Ethereum: chain ID).
        clock: ledger time (default: a realtime clock).
        apps: apps the ledger can run in ``progress`` (like deployed app contracts); by
            default the sim payment app and every installed plugin app
            (:func:`~perun_core.plugins.installed_apps`). Register more with
            ``ledger.apps.register(app)``.
        latency: seconds of real ``asyncio.sleep`` before each transaction (realism for
            demos; default 0).
    """

    def __init__(
        self,
        ledger_id: int = DEFAULT_LEDGER_ID,
        clock: SimClock | None = None,
        *,
        apps: AppRegistry | None = None,
        latency: float = 0.0,
    ) -> None:
        if latency < 0:
            raise ValueError("latency cannot be negative")
        self.ledger_id = ledger_id
        self.clock = clock if clock is not None else SimClock.realtime()
        if apps is None:
            apps = AppRegistry()
            apps.register(PaymentApp(PAYMENT_APP_ID))
            bind_apps(installed_apps(), sim_app_id, apps)
        self.apps = apps
        self.latency = latency
        self._balances: dict[tuple[Address, Asset], int] = {}
        self._holdings: dict[HoldingKey, int] = {}
        self._disputes: dict[bytes, Dispute] = {}
        self._settled: set[tuple[Asset, bytes]] = set()
        self._events: dict[bytes, list[AdjudicatorEvent]] = {}
        self._subs: dict[bytes, set[SimEventSubscription]] = {}
        self._hubs: list[SimChannelEvents] = []  # many-channel streams (one per watchtower)
        self._holding_waiters: dict[HoldingKey, set[asyncio.Future[None]]] = {}
        self._tx_counts: dict[str, int] = {}

    # --- views ----------------------------------------------------------------------------

    def balance_of(self, address: Address, asset: Asset) -> int:
        """The on-ledger account balance of ``address`` in ``asset``."""
        return self._balances.get((address, asset), 0)

    def holdings(self, asset: Asset, fid: bytes) -> int:
        """What funding ID ``fid`` holds of ``asset``."""
        return self._holdings.get((asset, fid), 0)

    def holdings_of(self, asset: Asset, cid: bytes, participant: Address) -> int:
        """What ``participant`` holds of ``asset`` in channel ``cid``."""
        return self.holdings(asset, funding_id(cid, participant))

    def dispute(self, cid: bytes) -> Dispute | None:
        """The dispute record of channel ``cid`` (``None`` if never registered/concluded)."""
        return self._disputes.get(cid)

    def is_settled(self, asset: Asset, cid: bytes) -> bool:
        """Whether channel ``cid``'s outcome of ``asset`` has been set."""
        return (asset, cid) in self._settled

    def events(self, cid: bytes) -> list[AdjudicatorEvent]:
        """Every adjudicator event of channel ``cid``, oldest first."""
        return list(self._events.get(cid, ()))

    def latest_event(self, cid: bytes) -> AdjudicatorEvent | None:
        """The most recent adjudicator event of channel ``cid``, if any."""
        past = self._events.get(cid)
        return past[-1] if past else None

    def committed_dispute(self, cid: bytes) -> Dispute | None:
        """Channel ``cid``'s dispute as committed (no running transaction's changes)."""
        return self._disputes.get(cid)

    def committed_holding(self, key: HoldingKey) -> int:
        """A funding ID's holding as committed."""
        return self._holdings.get(key, 0)

    def committed_balance(self, who: Address, asset: Asset) -> int:
        """An account's balance as committed."""
        return self._balances.get((who, asset), 0)

    def drop_stream(self, hub: SimChannelEvents) -> None:
        """Stop feeding a many-channel stream (called by it when it closes)."""
        if hub in self._hubs:
            self._hubs.remove(hub)

    def tx_count(self, operation: str | None = None) -> int:
        """How many transactions succeeded (of one ``operation``, e.g. ``"deposit"``)."""
        if operation is None:
            return sum(self._tx_counts.values())
        return self._tx_counts.get(operation, 0)

    # --- accounts -------------------------------------------------------------------------

    def mint(self, address: Address, asset: Asset, amount: int) -> None:
        """Create ``amount`` of ``asset`` in ``address``'s account (a faucet for demos/tests)."""
        if amount < 0:
            raise ValueError("cannot mint a negative amount")
        self._check_own_asset(asset)
        key = (address, asset)
        self._balances[key] = self._balances.get(key, 0) + amount

    def _check_own_asset(self, asset: Asset, tx: _Tx | None = None) -> None:
        if asset.ledger_id != self.ledger_id:
            if tx is not None:
                tx.fail(InvalidLedgerInputError, "asset not on this ledger")
            raise ValueError(f"asset {asset} is not on this ledger ({self.ledger_id})")

    # --- transactions -----------------------------------------------------------------------

    async def _begin(self, op: str) -> _Tx:
        if self.latency:
            await asyncio.sleep(self.latency)
        return _Tx(self, op)

    def _commit(self, tx: _Tx) -> None:
        self._balances.update(tx.balances)
        self._holdings.update(tx.holdings)
        self._disputes.update(tx.disputes)
        self._settled |= tx.settled
        self._tx_counts[tx.op] = self._tx_counts.get(tx.op, 0) + 1
        for key in tx.holdings:
            for fut in self._holding_waiters.pop(key, ()):
                if not fut.done():
                    fut.set_result(None)
        for ev in tx.events:
            self._events.setdefault(ev.channel_id, []).append(ev)
            for sub in tuple(self._subs.get(ev.channel_id, ())):
                sub.push(ev)
            for hub in self._hubs:
                if hub.follows(ev.channel_id):
                    hub.push(ev.channel_id, ev)

    async def deposit(self, sender: Address, asset: Asset, fid: bytes, amount: int) -> None:
        """Move ``amount`` of ``asset`` from ``sender``'s account into funding ID ``fid``.

        Anyone may deposit into any funding ID at any time (also after settlement).

        Raises:
            InvalidLedgerInputError: "asset not on this ledger", "invalid amount",
                "invalid funding id".
            InsufficientBalanceError: "insufficient balance".
        """
        tx = await self._begin("deposit")
        self._check_own_asset(asset, tx)
        tx.require(
            isinstance(amount, int) and amount >= 0, InvalidLedgerInputError, "invalid amount"
        )
        tx.require(len(fid) == 32, InvalidLedgerInputError, "invalid funding id")
        bal = tx.balance(sender, asset)
        tx.require(bal >= amount, InsufficientBalanceError, "insufficient balance")
        tx.balances[(sender, asset)] = bal - amount
        tx.holdings[(asset, fid)] = tx.holding((asset, fid)) + amount
        self._commit(tx)

    async def register(
        self, channel: SignedState, sub_channels: Sequence[SignedState] = ()
    ) -> None:
        """Register (or refute with) a ledger channel's state and its sub-channels' states.

        ``sub_channels`` holds the signed state of every locked sub-allocation, depth-first
        pre-order (extra trailing entries are ignored).

        Raises:
            StaleStateError: "invalid version" (the registered version is the same or newer).
            RefutationClosedError: "refutation timeout passed", "incorrect phase".
            SignatureRefusedError: "signatures length mismatch", "invalid signature", ...
            ParamsMismatchError: "invalid params".
            ChannelKindError: "not ledger", "cannot have app", "cannot have locked funds".
            SubChannelMismatchError: the sub-channel states do not match the locked funds.
            MissingSubStatesError: "subChannels: too short".
            InvalidLedgerInputError: a state the ledger cannot encode or whose allocation
                is malformed.
        """
        tx = await self._begin("register")
        tx.require(channel.params.ledger_channel, ChannelKindError, "not ledger")
        self._register_tree(tx, channel, sub_channels, [0])
        self._commit(tx)

    def _register_tree(
        self, tx: _Tx, ch: SignedState, subs: Sequence[SignedState], pos: list[int]
    ) -> None:
        self._register_single(tx, ch)
        parent = ch.state.allocation
        for sa in parent.locked:
            tx.require(pos[0] < len(subs), MissingSubStatesError, "subChannels: too short")
            sub = subs[pos[0]]
            pos[0] += 1
            tx.require(
                sa.id == sub.state.channel_id, SubChannelMismatchError, "invalid sub-channel id"
            )
            self._register_tree(tx, sub, subs, pos)
            _require_equal_assets(
                tx, SubChannelMismatchError, parent.assets, sub.state.allocation.assets
            )
            _require_equal_uints(
                tx, SubChannelMismatchError, sa.balances, sub.state.allocation.totals()
            )
            # Sim extra: the outcome is paid through the index map, so it must cover exactly
            # the sub-channel's participants (Ethereum would fail later, in conclude).
            tx.require(
                len(sa.index_map) == sub.params.num_parts,
                SubChannelMismatchError,
                "invalid index map",
            )

    def _require_signatures(
        self, tx: _Tx, params: Params, digest: bytes, sigs: Sequence[bytes]
    ) -> None:
        tx.require(
            len(sigs) == len(params.participants),
            SignatureRefusedError,
            "signatures length mismatch",
        )
        for part, sig in zip(params.participants, sigs, strict=True):
            _require_signed(tx, part, digest, sig, "invalid signature")

    def _register_single(self, tx: _Tx, ch: SignedState) -> None:
        params, state = ch.params, ch.state
        cid = channel_id(params)
        tx.require(state.channel_id == cid, ParamsMismatchError, "invalid params")
        digest = _hash(tx, state)
        self._require_signatures(tx, params, digest, ch.sigs)
        if params.virtual_channel:
            tx.require(params.app is None, ChannelKindError, "cannot have app")
            tx.require(not state.allocation.locked, ChannelKindError, "cannot have locked funds")
        _require_well_formed(tx, params, state)
        d = tx.dispute(cid)
        if d is not None:
            if d.state_hash == digest:
                return  # the same state again: no-op, no event
            tx.require(state.version > d.version, StaleStateError, "invalid version")
            tx.require(d.phase == DisputePhase.DISPUTE, RefutationClosedError, "incorrect phase")
            tx.require(tx.now < d.timeout, RefutationClosedError, "refutation timeout passed")
        if state.is_final:
            timeout = tx.now
        elif d is None:
            timeout = tx.now + params.challenge_duration
        else:
            timeout = d.timeout  # a refutation never extends the window
        tx.disputes[cid] = Dispute(
            version=state.version,
            phase=DisputePhase.DISPUTE,
            timeout=timeout,
            has_app=params.app is not None,
            challenge_duration=params.challenge_duration,
            state_hash=digest,
            state=state,
        )
        tx.events.append(
            RegisteredEvent(cid, state.version, SimTimeout(self.clock, timeout), state=state)
        )

    async def progress(
        self, params: Params, old_state: State, new_state: State, actor_idx: int, sig: bytes
    ) -> None:
        """Force-execute ``new_state`` (signed by ``participants[actor_idx]`` only).

        Raises:
            NotRegisteredError: "not registered".
            TimeoutNotElapsedError: "timeout not passed" (the refutation window is open).
            ForceExecutionClosedError: "timeout passed", "invalid phase" (concluded).
            ChannelKindError: "must have app".
            StateMismatchError: "wrong old state".
            SignatureRefusedError: the actor's signature does not verify.
            InvalidProgressError: the transition breaks the generic rules ("version must
                increment by one", ...) or the app refused it (the app's reason).
        """
        tx = await self._begin("progress")
        cid = new_state.channel_id
        d = tx.dispute(cid)
        if d is None:
            tx.fail(NotRegisteredError, "not registered")
        if d.phase == DisputePhase.DISPUTE:
            tx.require(tx.now >= d.timeout, TimeoutNotElapsedError, "timeout not passed")
        elif d.phase == DisputePhase.FORCEEXEC:
            tx.require(tx.now < d.timeout, ForceExecutionClosedError, "timeout passed")
        else:
            tx.fail(ForceExecutionClosedError, "invalid phase")
        app_id = params.app
        if app_id is None:
            tx.fail(ChannelKindError, "must have app")
        tx.require(0 <= actor_idx < params.num_parts, InvalidProgressError, "actorIdx out of range")
        tx.require(channel_id(params) == cid, ParamsMismatchError, "invalid params")
        tx.require(d.state_hash == _hash(tx, old_state), StateMismatchError, "wrong old state")
        digest = _hash(tx, new_state)
        _require_signed(tx, params.participants[actor_idx], digest, sig, "invalid signature")
        _require_valid_transition(tx, params, old_state, new_state)
        _require_well_formed(tx, params, new_state)
        app = self.apps.get(app_id)
        if app is None:
            tx.fail(InvalidProgressError, "unknown app")
        try:
            app.valid_progress(params, old_state, new_state, actor_idx, tx.now)
        except AppTransitionError as e:
            tx.fail(InvalidProgressError, str(e))
        except Exception as e:  # noqa: BLE001 - an app fault is a refusal, like a reverting app contract
            tx.fail(InvalidProgressError, f"app fault: {type(e).__name__}: {e}")
        timeout = tx.now if new_state.is_final else tx.now + d.challenge_duration
        tx.disputes[cid] = replace(
            d,
            version=new_state.version,
            phase=DisputePhase.FORCEEXEC,
            timeout=timeout,
            state_hash=digest,
            state=new_state,
        )
        tx.events.append(
            ProgressedEvent(
                cid,
                new_state.version,
                SimTimeout(self.clock, timeout),
                state=new_state,
                actor_idx=actor_idx,
            )
        )
        self._commit(tx)

    async def conclude(
        self, params: Params, state: State, sub_states: Sequence[State] = ()
    ) -> None:
        """Conclude a registered ledger channel after its timeout and push its outcome.

        ``sub_states`` are the registered states of every locked sub-allocation,
        depth-first pre-order; their outcomes are paid to the parent via the index maps.

        Raises:
            ChannelKindError: "not ledger".
            ParamsMismatchError: "invalid params".
            NotRegisteredError: "not registered".
            StateMismatchError: "invalid channel state" (not the registered state;
                :class:`ConcludedWithOtherStateError` once concluded with another one).
            AlreadyConcludedError: "channel already concluded".
            TimeoutNotElapsedError: "timeout not passed yet".
            SubChannelMismatchError: "invalid subchannel id".
            MissingSubStatesError: fewer sub-states than locked sub-allocations.
        """
        tx = await self._begin("conclude")
        tx.require(params.ledger_channel, ChannelKindError, "not ledger")
        cid = channel_id(params)
        tx.require(state.channel_id == cid, ParamsMismatchError, "invalid params")
        d = tx.dispute(cid)
        if d is None:
            tx.fail(NotRegisteredError, "not registered")
        if d.state_hash != _hash(tx, state):
            # The contract's text either way; the sim can tell the concluded case apart.
            concluded = d.phase == DisputePhase.CONCLUDED
            tx.fail(
                ConcludedWithOtherStateError if concluded else StateMismatchError,
                "invalid channel state",
            )
        tx.require(
            d.phase != DisputePhase.CONCLUDED, AlreadyConcludedError, "channel already concluded"
        )
        tx.require(tx.now >= _concludable(d), TimeoutNotElapsedError, "timeout not passed yet")
        self._set_concluded(tx, cid, d)
        outcome = [list(row) for row in state.allocation.balances]
        self._conclude_subs(tx, state.allocation, sub_states, [0], outcome)
        self._push_outcome(tx, cid, params.participants, state.allocation.assets, outcome)
        self._commit(tx)

    def _set_concluded(self, tx: _Tx, cid: bytes, d: Dispute) -> None:
        tx.disputes[cid] = replace(d, phase=DisputePhase.CONCLUDED)
        tx.events.append(ConcludedEvent(cid, d.version, SimTimeout(self.clock, d.timeout)))

    def _conclude_subs(
        self,
        tx: _Tx,
        alloc: Allocation,
        sub_states: Sequence[State],
        pos: list[int],
        outcome: list[list[int]],
    ) -> None:
        for sa in alloc.locked:
            if pos[0] >= len(sub_states):
                raise MissingSubStatesError(
                    f"subStates: too short; the state of sub-channel 0x{sa.id.hex()} is "
                    "missing (pass every locked sub-channel's registered state, pre-order)",
                    operation=tx.op,
                )
            sub = sub_states[pos[0]]
            pos[0] += 1
            tx.require(sub.channel_id == sa.id, SubChannelMismatchError, "invalid subchannel id")
            sd = tx.dispute(sa.id)
            if sd is None:
                tx.fail(NotRegisteredError, "not registered")
            tx.require(sd.state_hash == _hash(tx, sub), StateMismatchError, "invalid channel state")
            if sd.phase != DisputePhase.CONCLUDED:
                # An app sub-channel keeps its force-execution window: the tree concludes
                # only once every sub-channel could conclude on its own.
                tx.require(
                    tx.now >= _concludable(sd), TimeoutNotElapsedError, "timeout not passed yet"
                )
                self._set_concluded(tx, sa.id, sd)
            sub_outcome = [list(row) for row in sub.allocation.balances]
            self._conclude_subs(tx, sub.allocation, sub_states, pos, sub_outcome)
            for a, row in enumerate(sub_outcome):
                for j, p in enumerate(sa.index_map):
                    outcome[a][p] += row[j]

    async def conclude_final(self, params: Params, state: State, sigs: Sequence[bytes]) -> None:
        """Conclude a ledger channel at once with a fully signed final state.

        Overrides any running dispute (even of a higher version) unless already concluded.

        Raises:
            ChannelKindError: "not ledger", "cannot have sub-channels".
            NotFinalError: "state not final".
            ParamsMismatchError: "invalid params".
            SignatureRefusedError: a signature is missing or does not verify.
            AlreadyConcludedError: "channel already concluded".
        """
        tx = await self._begin("conclude_final")
        tx.require(params.ledger_channel, ChannelKindError, "not ledger")
        tx.require(state.is_final, NotFinalError, "state not final")
        tx.require(not state.allocation.locked, ChannelKindError, "cannot have sub-channels")
        cid = channel_id(params)
        tx.require(state.channel_id == cid, ParamsMismatchError, "invalid params")
        digest = _hash(tx, state)
        self._require_signatures(tx, params, digest, sigs)
        _require_well_formed(tx, params, state)
        d = tx.dispute(cid)
        if d is not None:
            tx.require(
                d.phase != DisputePhase.CONCLUDED,
                AlreadyConcludedError,
                "channel already concluded",
            )
        tx.disputes[cid] = Dispute(
            version=state.version,
            phase=DisputePhase.CONCLUDED,
            timeout=tx.now,
            has_app=params.app is not None,
            challenge_duration=params.challenge_duration,
            state_hash=digest,
            state=state,
        )
        tx.events.append(ConcludedEvent(cid, state.version, SimTimeout(self.clock, tx.now)))
        outcome = [list(row) for row in state.allocation.balances]
        self._push_outcome(tx, cid, params.participants, state.allocation.assets, outcome)
        self._commit(tx)

    def _push_outcome(
        self,
        tx: _Tx,
        cid: bytes,
        participants: Sequence[Address],
        assets: Sequence[Asset],
        outcome: list[list[int]],
    ) -> None:
        fids = [funding_id(cid, p) for p in participants]
        for asset, row in zip(assets, outcome, strict=True):
            if asset.ledger_id != self.ledger_id:
                continue  # another ledger's asset (multi-ledger channel)
            tx.require(
                not tx.is_settled(asset, cid),
                AlreadyConcludedError,
                "trying to set already settled channel",
            )
            held = sum(tx.holding((asset, f)) for f in fids)
            # Under-funded channels keep every deposit as it is: everyone gets back exactly
            # what it put in, which is what makes fund recovery after failed funding work.
            if held >= sum(row):
                for f, amount in zip(fids, row, strict=True):
                    tx.holdings[(asset, f)] = amount
            tx.settled.add((asset, cid))

    async def withdraw(self, auth: WithdrawalAuth, sig: bytes) -> None:
        """Pay ``auth.amount`` of a settled channel's holdings to ``auth.receiver``'s account.

        Raises:
            NotSettledError: "channel not settled".
            SignatureRefusedError: "signature verification failed".
            InsufficientHoldingsError: "insufficient funds".
            InvalidLedgerInputError: "asset not on this ledger", "invalid amount".
        """
        tx = await self._begin("withdraw")
        self._check_own_asset(auth.asset, tx)
        tx.require(
            tx.is_settled(auth.asset, auth.channel_id), NotSettledError, "channel not settled"
        )
        tx.require(
            isinstance(auth.amount, int) and 0 <= auth.amount < BALANCE_BOUND,
            InvalidLedgerInputError,
            "invalid amount",
        )
        _require_signed(
            tx, auth.participant, sha3(auth.encode()), sig, "signature verification failed"
        )
        key = (auth.asset, funding_id(auth.channel_id, auth.participant))
        held = tx.holding(key)
        tx.require(held >= auth.amount, InsufficientHoldingsError, "insufficient funds")
        tx.holdings[key] = held - auth.amount  # debit before paying
        tx.balances[(auth.receiver, auth.asset)] = (
            tx.balance(auth.receiver, auth.asset) + auth.amount
        )
        self._commit(tx)

    # --- notifications --------------------------------------------------------------------

    def subscribe(self, cid: bytes) -> SimEventSubscription:
        """Events of channel ``cid``: the most recent past event first (if any), then new ones."""
        sub = SimEventSubscription(self, cid)
        past = self._events.get(cid)
        if past:
            sub.push(past[-1])
        self._subs.setdefault(cid, set()).add(sub)
        return sub

    def channel_events(self) -> SimChannelEvents:
        """One event stream for many channels (each added channel: its latest event first)."""
        hub = SimChannelEvents(self)
        self._hubs.append(hub)
        return hub

    def unsubscribe(self, sub: SimEventSubscription) -> None:
        """Stop delivering to ``sub`` (called by the subscription when it closes)."""
        subs = self._subs.get(sub.channel_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.channel_id]

    async def wait_holdings(self, seen: Mapping[HoldingKey, int], until: int) -> bool:
        """Wait until a holding differs from its value in ``seen`` or ledger time reaches
        ``until``.

        Unlike :meth:`wait_holdings_change` this cannot miss a change that happened after the
        caller read the holdings (e.g. while the answer travelled from a served ledger).

        Returns:
            Whether a holding differs (``False``: the deadline came first).
        """
        if any(self.holdings(*key) != value for key, value in seen.items()):
            return True
        return await self.wait_holdings_change(seen.keys(), until)

    async def wait_holdings_change(self, keys: Iterable[HoldingKey], until: int) -> bool:
        """Wait until one of ``keys``' holdings changes or ledger time reaches ``until``.

        Returns:
            Whether a holding changed (``False``: the deadline came first).
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        keys = list(keys)
        for k in keys:
            self._holding_waiters.setdefault(k, set()).add(fut)
        timer = loop.create_task(self.clock.sleep_until(until))
        try:
            await asyncio.wait((fut, timer), return_when=asyncio.FIRST_COMPLETED)
            return fut.done()
        finally:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
            for k in keys:
                waiters = self._holding_waiters.get(k)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._holding_waiters[k]
            if not fut.done():
                fut.cancel()

    def __repr__(self) -> str:
        return f"SimLedger(id={self.ledger_id}, clock={self.clock!r})"


class SimEventSubscription(EventSubscription):
    """Adjudicator events of one channel on a :class:`SimLedger` (queue-fed, no polling)."""

    def __init__(self, ledger: SimLedger, cid: bytes) -> None:
        self._ledger = ledger
        self.channel_id = cid
        self._queue: ClosableQueue[AdjudicatorEvent] = ClosableQueue()

    def push(self, ev: AdjudicatorEvent) -> None:
        """Queue an event for :meth:`next` (called by the ledger)."""
        self._queue.put(ev)

    async def next(self) -> AdjudicatorEvent | None:
        """The next event, or ``None`` once the subscription is closed."""
        return await self._queue.get()

    async def close(self) -> None:
        """Stop the subscription; a pending ``next()`` returns ``None``."""
        if self._queue.closed:
            return
        self._queue.close()
        self._ledger.unsubscribe(self)


class SimChannelEvents(QueuedChannelEvents):
    """Adjudicator events of many channels on a :class:`SimLedger` through one queue.

    Watching a channel costs one set entry (no subscription object, queue or task of its
    own), which is what lets one client watch 100,000 channels.
    """

    def __init__(self, ledger: SimLedger) -> None:
        super().__init__()
        self._ledger = ledger
        self._cids: dict[bytes, None] = {}  # a dict: more compact than a set when large

    def add(self, params: Params) -> None:
        """Follow one more channel; its most recent past event (if any) comes first."""
        cid = params.id or channel_id(params)
        if self._closed or cid in self._cids:
            return
        self._cids[cid] = None
        past = self._ledger.latest_event(cid)
        if past is not None:
            self.push(cid, past)

    def follows(self, channel_id: bytes) -> bool:
        """Whether this stream follows ``channel_id``."""
        return channel_id in self._cids

    def remove(self, channel_id: bytes) -> None:
        """Stop following one channel."""
        self._cids.pop(channel_id, None)

    async def close(self) -> None:
        """Stop the stream; a pending ``next()`` returns ``None``."""
        if not self._end():
            return
        self._cids.clear()
        self._ledger.drop_stream(self)


# --- checks shared by several operations ------------------------------------------------------


def _hash(tx: _Tx, state: State) -> bytes:
    # A state the encoding refuses (negative or oversized numbers) could never have been
    # signed honestly; the ledger refuses it like any other bad input instead of crashing.
    try:
        return hash_state(state)
    except InvalidStateError as e:
        tx.fail(InvalidLedgerInputError, f"invalid state: {e}")


def _require_signed(tx: _Tx, signer: Address, digest: bytes, sig: bytes, reason: str) -> None:
    try:
        ok = verify_digest(signer, digest, sig)
    except SimSignatureFormatError as e:
        tx.fail(SignatureRefusedError, e.reason)
    if not ok:
        tx.fail(SignatureRefusedError, reason)


def _require_well_formed(tx: _Tx, params: Params, state: State) -> None:
    # Sim extras beyond the Ethereum checks: Python integers can be negative or huge and
    # sim states carry the AppID, so refuse what an EVM could not even encode.
    tx.require(state.app == params.app, InvalidLedgerInputError, "app mismatch")
    try:
        check_allocation(state.allocation, params.num_parts, channel_id=state.channel_id)
    except InvalidStateError as e:
        tx.fail(InvalidLedgerInputError, f"invalid allocation: {e}")


def _require_equal_assets(
    tx: _Tx, error: type[ChainError], a: Sequence[Asset], b: Sequence[Asset]
) -> None:
    # ``error``: the same check refuses mismatched sub-channels in register and a changed
    # allocation in progress.
    tx.require(len(a) == len(b), error, "Asset[]: unequal length")
    for x, y in zip(a, b, strict=True):
        tx.require(x.ledger_id == y.ledger_id, error, "Asset: unequal chainID")
        tx.require(x.holder == y.holder, error, "Asset: unequal holder")


def _require_equal_uints(
    tx: _Tx, error: type[ChainError], a: Sequence[int], b: Sequence[int], kind: str = "uint256"
) -> None:
    tx.require(len(a) == len(b), error, f"{kind}[]: unequal length")
    for x, y in zip(a, b, strict=True):
        tx.require(x == y, error, f"{kind}[]: unequal item")


def _require_valid_transition(tx: _Tx, params: Params, old: State, new: State) -> None:
    """The generic force-execution rules, in the order of the Ethereum contract."""
    tx.require(
        new.version == old.version + 1, InvalidProgressError, "version must increment by one"
    )
    tx.require(not old.is_final, InvalidProgressError, "cannot progress from final state")
    fa, ta = old.allocation, new.allocation
    tx.require(
        len(fa.balances) == len(ta.balances), InvalidProgressError, "balances length mismatch"
    )
    tx.require(len(fa.assets) == len(ta.assets), InvalidProgressError, "assets length mismatch")
    _require_equal_assets(tx, InvalidProgressError, fa.assets, ta.assets)
    tx.require(len(fa.locked) == len(ta.locked), InvalidProgressError, "SubAlloc[]: unequal length")
    for x, y in zip(fa.locked, ta.locked, strict=True):
        tx.require(x.id == y.id, InvalidProgressError, "SubAlloc: unequal ID")
        _require_equal_uints(tx, InvalidProgressError, x.balances, y.balances)
        _require_equal_uints(tx, InvalidProgressError, x.index_map, y.index_map, "uint16")
    n = params.num_parts
    for old_row, new_row in zip(fa.balances, ta.balances, strict=True):
        tx.require(len(old_row) == n, InvalidProgressError, "old balances length mismatch")
        tx.require(len(new_row) == n, InvalidProgressError, "new balances length mismatch")
        tx.require(sum(old_row) == sum(new_row), InvalidProgressError, "sum of balances mismatch")
