"""States, transactions and signed states (see docs/concepts.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from perun_core.channel.allocation import Allocation
from perun_core.channel.params import Params


@dataclass(frozen=True, slots=True)
class State:
    """One version of a channel's state.

    Attributes:
        channel_id: the channel this state belongs to.
        version: strictly increasing per channel; version 0 is the initial state.
        allocation: the distribution of the channel's funds.
        app: the channel's AppID (``None``: no app); always equal to ``params.app``.
        data: the app's canonical data bytes (empty without an app).
        is_final: a final state can never be followed by another state.
    """

    channel_id: bytes
    version: int
    allocation: Allocation
    app: bytes | None = None
    data: bytes = b""
    is_final: bool = False

    @property
    def balances(self) -> tuple[tuple[int, ...], ...]:
        """Shortcut for ``allocation.balances``."""
        return self.allocation.balances

    def replace(self, **changes: object) -> State:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def transfer(self, frm: int, to: int, amount: int, asset: int = 0) -> State:
        """A copy in which ``amount`` of ``asset`` moved from participant ``frm`` to ``to``."""
        alloc = self.allocation.transfer(frm, to, amount, asset)
        if type(self) is State:  # hot path (every payment): cheaper than replace()
            return State(self.channel_id, self.version, alloc, self.app, self.data, self.is_final)
        return replace(self, allocation=alloc)

    def finalized(self) -> State:
        """A copy marked final."""
        return replace(self, is_final=True)


Sigs = tuple[bytes | None, ...]


@dataclass(frozen=True, slots=True)
class Transaction:
    """A state with the signatures collected so far (``None`` where one is missing)."""

    state: State
    sigs: Sigs

    def __post_init__(self) -> None:
        if not isinstance(self.sigs, tuple):
            object.__setattr__(self, "sigs", tuple(self.sigs))

    @property
    def fully_signed(self) -> bool:
        """Whether every participant's signature is present."""
        return None not in self.sigs  # a C-level scan: this runs several times per update

    def with_sig(self, idx: int, sig: bytes) -> Transaction:
        """A copy with participant ``idx``'s signature set."""
        sigs = list(self.sigs)
        sigs[idx] = sig
        return Transaction(self.state, tuple(sigs))

    @classmethod
    def unsigned(cls, state: State, num_parts: int) -> Transaction:
        """A transaction without signatures."""
        return cls(state, (None,) * num_parts)


@dataclass(frozen=True, slots=True)
class SignedState:
    """A fully signed state with its params: what the adjudicator and watchers receive."""

    params: Params
    state: State
    sigs: tuple[bytes, ...]

    @classmethod
    def from_tx(cls, params: Params, tx: Transaction) -> SignedState:
        """Build from a fully signed transaction (``ValueError`` if a signature is missing)."""
        if not tx.fully_signed:
            raise ValueError("transaction is not fully signed")
        sigs: Sequence[bytes] = [s for s in tx.sigs if s is not None]
        return cls(params, tx.state, tuple(sigs))
