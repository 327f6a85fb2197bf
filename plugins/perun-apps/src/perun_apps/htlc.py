"""A hash-time-locked conditional payment (HTLC) inside a channel.

The payer promises ``amount`` of one asset to the payee, on condition that the payee reveals
the preimage of a SHA-256 hash lock by a deadline (in ledger seconds). SHA-256 because both
sides compute it cheaply (Python's ``hashlib``; a precompiled contract on Ethereum) and
because it is the hash lock of Bitcoin and Lightning HTLCs, so one secret can lock payments
on several ledgers.

The channel's balances hold the promise: while the payment is pending, the amount is still
in the payer's balance, and the pending state never changes. It ends with one final state:

* **claim**: the data gains the preimage, ``amount`` moves from the payer to the payee.
* **refund**: the data is unchanged, the balances are unchanged (the payer keeps it).

Who may end it, and when:

====================  ====================================  ==================================
                      off-chain (both sign, no clock)        on chain (``progress`` at ``now``)
====================  ====================================  ==================================
claim                 the payee, with the preimage           the payee, with the preimage,
                                                             ``now <= deadline``
refund                the payee (releases the payer)         the payee at any time; anybody
                                                             once ``now > deadline``
====================  ====================================  ==================================

Off-chain the other party signs every state, so the rules need no clock: a payer's client
refuses to sign a claim that comes too late (:func:`claimable`), and a payee's client that
sees the deadline pass releases the payer with a refund. A payer cannot propose the refund:
a payee's client that signs whatever the rules allow would otherwise give up a payment it
may still claim. After the deadline the payer forces the refund on chain if the payee does
not release it; a payee whose claim the payer will not sign forces it on chain before the
deadline (start the dispute at least two challenge durations before it). A pending state
that is concluded as it is pays the payer, like a refund.

App data (canonical, big-endian)::

    byte 0        payer (participant index)
    byte 1        payee (participant index, not the payer)
    byte 2        asset (index into the channel's assets)
    bytes 3..35   amount (uint256)
    bytes 35..67  hash lock: SHA-256 of the preimage
    bytes 67..75  deadline (uint64, ledger seconds)
    bytes 75..107 the preimage (32 bytes; only in a claimed state)

The contract ``HTLCApp`` applies the on-chain rules, exactly as :meth:`HtlcApp.valid_progress`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from typing import Final

from perun_apps._rules import decoded, load_artifact, refuse, require_same_outcome
from perun_core.channel.app import App, AppDefinition
from perun_core.channel.params import Params
from perun_core.channel.state import State
from perun_core.errors import InvalidAppDataError

NAME: Final = "htlc"
TERMS_LEN: Final = 75
"""Length of the data of a pending payment."""
PREIMAGE_LEN: Final = 32
CLAIMED_LEN: Final = TERMS_LEN + PREIMAGE_LEN
"""Length of the data of a claimed payment (the terms and the preimage)."""
MAX_AMOUNT: Final = 2**256 - 1
MAX_DEADLINE: Final = 2**64 - 1


def hash_lock(preimage: bytes) -> bytes:
    """SHA-256 of ``preimage``: the lock it opens."""
    return hashlib.sha256(preimage).digest()


def new_secret() -> tuple[bytes, bytes]:
    """A fresh random 32-byte preimage and its hash lock."""
    preimage = secrets.token_bytes(PREIMAGE_LEN)
    return preimage, hash_lock(preimage)


@dataclass(frozen=True, slots=True)
class Htlc:
    """The decoded app data.

    Attributes:
        payer, payee: participant indices.
        asset: the index of the asset paid.
        amount: what the payee gets by claiming.
        lock: SHA-256 of the preimage.
        deadline: the last ledger second (inclusive) at which a claim is valid on chain.
        preimage: the revealed preimage (``None`` while pending).
    """

    payer: int
    payee: int
    asset: int
    amount: int
    lock: bytes
    deadline: int
    preimage: bytes | None = None

    def __post_init__(self) -> None:
        for name, value, top in (
            ("payer", self.payer, 255),
            ("payee", self.payee, 255),
            ("asset", self.asset, 255),
            ("amount", self.amount, MAX_AMOUNT),
            ("deadline", self.deadline, MAX_DEADLINE),
        ):
            if not 0 <= value <= top:
                raise InvalidAppDataError(f"htlc {name} {value} is not in 0..{top}")
        if self.payer == self.payee:
            raise InvalidAppDataError("htlc payer and payee are the same participant")
        if len(self.lock) != 32:
            raise InvalidAppDataError(f"htlc hash lock is 32 bytes, not {len(self.lock)}")
        if self.preimage is not None and len(self.preimage) != PREIMAGE_LEN:
            raise InvalidAppDataError(f"htlc preimage is 32 bytes, not {len(self.preimage)}")

    @property
    def claimed(self) -> bool:
        """Whether the data carries the preimage."""
        return self.preimage is not None

    def encode(self) -> bytes:
        """The canonical bytes (75 pending, 107 claimed)."""
        out = (
            bytes((self.payer, self.payee, self.asset))
            + self.amount.to_bytes(32, "big")
            + self.lock
            + self.deadline.to_bytes(8, "big")
        )
        return out + (self.preimage or b"")

    @classmethod
    def decode(cls, data: bytes) -> Htlc:
        """Parse app data.

        Raises:
            InvalidAppDataError: not 75 or 107 bytes, or payer and payee are the same.
        """
        if len(data) not in (TERMS_LEN, CLAIMED_LEN):
            raise InvalidAppDataError(
                f"htlc data is {TERMS_LEN} or {CLAIMED_LEN} bytes, not {len(data)}"
            )
        return cls(
            payer=data[0],
            payee=data[1],
            asset=data[2],
            amount=int.from_bytes(data[3:35], "big"),
            lock=bytes(data[35:67]),
            deadline=int.from_bytes(data[67:75], "big"),
            preimage=bytes(data[TERMS_LEN:]) if len(data) == CLAIMED_LEN else None,
        )


def lock_data(
    *, payer: int, payee: int, amount: int, lock: bytes, deadline: int, asset: int = 0
) -> bytes:
    """The data of a pending payment (the channel's initial state carries it).

    Raises:
        InvalidAppDataError: a field is out of range.
    """
    return Htlc(payer, payee, asset, amount, lock, deadline).encode()


def _pending(state: State) -> Htlc:
    terms = Htlc.decode(state.data)
    if terms.claimed:
        refuse(NAME, "the payment was already claimed", state)
    return terms


def claim(state: State, preimage: bytes) -> State:
    """The final state in which the payee, revealing ``preimage``, gets the amount.

    Raises:
        AppTransitionError: the payment is not pending, the preimage does not open the lock,
            or the payer's balance is below the amount.
        InvalidAppDataError: ``state`` carries no HTLC data.
    """
    terms = _pending(state)
    if len(preimage) != PREIMAGE_LEN or hash_lock(preimage) != terms.lock:
        refuse(NAME, "the preimage does not open the hash lock", state)
    rows = state.allocation.balances
    if terms.asset >= len(rows):
        refuse(NAME, f"the channel has no asset {terms.asset}", state)
    if max(terms.payer, terms.payee) >= len(rows[terms.asset]):
        refuse(NAME, "payer and payee must be participants", state)
    if rows[terms.asset][terms.payer] < terms.amount:
        refuse(NAME, "the payer's balance is below the amount", state)
    paid = state.allocation.transfer(terms.payer, terms.payee, terms.amount, terms.asset)
    return state.replace(
        version=state.version + 1,
        data=replace(terms, preimage=preimage).encode(),
        allocation=paid,
        is_final=True,
    )


def refund(state: State) -> State:
    """The final state in which the payer keeps the amount (balances and data unchanged).

    Raises:
        AppTransitionError: the payment is not pending.
        InvalidAppDataError: ``state`` carries no HTLC data.
    """
    _pending(state)
    return state.replace(version=state.version + 1, is_final=True)


def claimable(state: State, now: int) -> bool:
    """Whether a claim of the pending payment in ``state`` is in time at ledger time ``now``
    (a payer's client signs a claim only then)."""
    return now <= Htlc.decode(state.data).deadline


class HtlcApp(App):
    """The rules of the hash-time-locked payment (see the module docs)."""

    def __init__(self, app_id: bytes) -> None:
        self.app_id = app_id

    def decode_data(self, data: bytes) -> Htlc:
        """The :class:`Htlc` of ``data`` (:class:`InvalidAppDataError` if malformed)."""
        return Htlc.decode(data)

    def valid_init(self, params: Params, state: State) -> None:
        """A pending payment between two participants that the payer's balance covers."""
        terms = Htlc.decode(state.data)
        if terms.claimed:
            refuse(NAME, "a payment starts pending, without the preimage", state)
        self._check_terms(params, state, terms)
        if terms.amount == 0:
            refuse(NAME, "the amount must be positive", state)
        if state.allocation.balances[terms.asset][terms.payer] < terms.amount:
            refuse(NAME, "the payer's balance does not cover the amount", state)

    def valid_transition(self, params: Params, frm: State, to: State, actor_idx: int) -> None:
        """Off-chain: the payee claims with the preimage or releases the payer (no clock)."""
        self._check(params, frm, to, actor_idx, now=None)

    def valid_progress(
        self, params: Params, frm: State, to: State, actor_idx: int, now: int
    ) -> None:
        """On chain at ``now``: the payee claims up to the deadline; the payee may refund at
        any time, anybody after the deadline."""
        self._check(params, frm, to, actor_idx, now=now)

    def _check_terms(self, params: Params, state: State, terms: Htlc) -> None:
        n = params.num_parts
        if terms.payer >= n or terms.payee >= n:
            refuse(NAME, f"payer and payee must be participants (0..{n - 1})", state)
        if terms.asset >= len(state.allocation.assets):
            refuse(NAME, f"the channel has no asset {terms.asset}", state)

    def _check(self, params: Params, frm: State, to: State, actor: int, now: int | None) -> None:
        before = decoded(NAME, Htlc.decode, frm)
        after = decoded(NAME, Htlc.decode, to)
        self._check_terms(params, frm, before)
        if after.claimed:
            if actor != before.payee:
                refuse(NAME, "only the payee claims", to)
            if now is not None and now > before.deadline:
                refuse(NAME, "the deadline has passed: too late to claim", to)
            assert after.preimage is not None
            expected = claim(frm, after.preimage)
        else:
            if actor != before.payee and (now is None or now <= before.deadline):
                refuse(NAME, "only the payee refunds before the deadline", to)
            expected = refund(frm)
        require_same_outcome(NAME, expected, to)


DEFINITION: Final = AppDefinition(
    name=NAME,
    rules=HtlcApp,
    on_chain={"eth": load_artifact("HTLCApp")},
    summary="hash-time-locked conditional payment (SHA-256 lock, deadline in ledger seconds)",
)
"""The ``htlc`` app as ``perun-apps`` registers it."""
