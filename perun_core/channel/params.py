"""Channel parameters: fixed when a channel is created (see docs/concepts.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from perun_core.channel import limits
from perun_core.channel.types import Address
from perun_core.errors import InvalidStateError

if TYPE_CHECKING:
    from perun_core.interfaces.chain import ChainBackend


@dataclass(frozen=True, slots=True)
class Params:
    """Immutable parameters of a channel.

    Attributes:
        challenge_duration: seconds of each dispute window on the ledger.
        participants: wallet addresses; the order is the participant index.
        nonce: makes the channel ID unique (derived from both parties' nonce shares).
        app: the AppID, or ``None`` for a plain payment channel.
        ledger_channel: funded on a ledger (opened by a ledger-channel proposal).
        virtual_channel: opened by a virtual-channel proposal.
        aux: backend-specific extra bytes; the backend binds them into the ID or forbids them.
        backend: name of the chain backend defining ID, addresses and signatures.
        id: the channel ID; filled in by :meth:`with_id` / :func:`make_params`.
    """

    challenge_duration: int
    participants: tuple[Address, ...]
    nonce: int
    app: bytes | None = None
    ledger_channel: bool = True
    virtual_channel: bool = False
    aux: bytes = b""
    backend: str = "sim"
    id: bytes = field(default=b"", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.participants, tuple):
            object.__setattr__(self, "participants", tuple(self.participants))
        self.check()

    def check(self) -> None:
        """Validate the data-model limits (raises :class:`InvalidStateError`)."""
        if not 1 <= self.challenge_duration < limits.CHALLENGE_DURATION_BOUND:
            raise InvalidStateError(
                f"challenge_duration {self.challenge_duration} not in [1, 2**32)",
                rule="params-challenge-duration",
            )
        if not 1 <= len(self.participants) <= limits.MAX_PARTICIPANTS:
            raise InvalidStateError("1..1024 participants required", rule="params-participants")
        if len(set(self.participants)) != len(self.participants):
            raise InvalidStateError("participants must be distinct", rule="params-participants")
        if not 0 <= self.nonce < limits.NONCE_BOUND:
            raise InvalidStateError("nonce not in [0, 2**256)", rule="params-nonce")
        if len(self.aux) > limits.MAX_AUX:
            raise InvalidStateError("aux longer than 256 bytes", rule="params-aux")
        if self.ledger_channel and self.virtual_channel:
            raise InvalidStateError(
                "a channel cannot be both ledger and virtual", rule="params-flags"
            )
        if self.app is not None and not 1 <= len(self.app) <= 64:
            raise InvalidStateError("an AppID is 1..64 bytes", rule="params-app")

    @property
    def num_parts(self) -> int:
        """Number of participants."""
        return len(self.participants)

    def index_of(self, address: Address) -> int:
        """The participant index of ``address`` (``ValueError`` if absent)."""
        return self.participants.index(address)

    def with_id(self, backend: ChainBackend) -> Params:
        """A copy whose ``id`` is the backend's channel ID of these params."""
        return replace(self, backend=backend.name, id=backend.channel_id(self))


def make_params(
    backend: ChainBackend,
    *,
    challenge_duration: int,
    participants: tuple[Address, ...] | list[Address],
    nonce: int,
    app: bytes | None = None,
    ledger_channel: bool = True,
    virtual_channel: bool = False,
    aux: bytes = b"",
) -> Params:
    """Build params with their channel ID computed by ``backend``."""
    p = Params(
        challenge_duration=challenge_duration,
        participants=tuple(participants),
        nonce=nonce,
        app=app,
        ledger_channel=ledger_channel,
        virtual_channel=virtual_channel,
        aux=aux,
        backend=backend.name,
    )
    return p.with_id(backend)


def nonce_from_shares(share_proposer: bytes, share_responder: bytes) -> int:
    """The channel nonce from both nonce shares: SHA3-256 (FIPS-202) of their concatenation."""
    return int.from_bytes(hashlib.sha3_256(share_proposer + share_responder).digest(), "big")
