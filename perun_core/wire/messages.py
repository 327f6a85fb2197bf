"""The wire message catalogue (see docs/wire-format.md).

Messages are frozen dataclasses over the data model. Each has a fixed ``code`` (its type tag
on the wire); :mod:`perun_core.wire.codec` turns them into bytes and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from perun_core.channel.allocation import Allocation, Balances
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Address

WIRE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Message:
    """Base class of every wire message."""

    code: ClassVar[int]


# --- connection -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping(Message):
    """Keep-alive request."""

    code: ClassVar[int] = 0
    created_ns: int


@dataclass(frozen=True, slots=True)
class Pong(Message):
    """Keep-alive answer."""

    code: ClassVar[int] = 1
    ping_created_ns: int
    created_ns: int


@dataclass(frozen=True, slots=True)
class Shutdown(Message):
    """Announces a graceful close of the connection."""

    code: ClassVar[int] = 2
    reason: str


@dataclass(frozen=True, slots=True)
class AuthHello(Message):
    """Handshake step 1, dialer to listener."""

    code: ClassVar[int] = 3
    wire_version: int
    sender: Address
    recipient: Address
    challenge: bytes


@dataclass(frozen=True, slots=True)
class AuthReply(Message):
    """Handshake step 2, listener to dialer."""

    code: ClassVar[int] = 4
    wire_version: int
    sender: Address
    recipient: Address
    challenge: bytes
    sig: bytes


@dataclass(frozen=True, slots=True)
class AuthConfirm(Message):
    """Handshake step 3, dialer to listener."""

    code: ClassVar[int] = 5
    sig: bytes


# --- channel proposals --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerChannelProposal(Message):
    """Proposal of a new ledger channel (sent by the proposer, index 0)."""

    code: ClassVar[int] = 16
    proposal_id: bytes
    backend: str
    challenge_duration: int
    nonce_share: bytes
    app: bytes | None
    init_data: bytes
    init_alloc: Allocation
    funding_agreement: Balances | None
    aux: bytes
    participant: Address
    peers: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class LedgerChannelProposalAcc(Message):
    """Acceptance of a ledger-channel proposal with the responder's v0 signature."""

    code: ClassVar[int] = 17
    proposal_id: bytes
    nonce_share: bytes
    participant: Address
    init_sig: bytes


@dataclass(frozen=True, slots=True)
class SubChannelProposal(Message):
    """Proposal of a sub-channel funded from the parent channel ``parent`` (either party).

    The participants, peers and indices are the parent's; there is no funding agreement.
    """

    code: ClassVar[int] = 18
    proposal_id: bytes
    backend: str
    challenge_duration: int
    nonce_share: bytes
    app: bytes | None
    init_data: bytes
    init_alloc: Allocation
    aux: bytes
    parent: bytes


@dataclass(frozen=True, slots=True)
class SubChannelProposalAcc(Message):
    """Acceptance of a sub-channel proposal with the responder's v0 signature."""

    code: ClassVar[int] = 19
    proposal_id: bytes
    nonce_share: bytes
    init_sig: bytes


@dataclass(frozen=True, slots=True)
class ChannelProposalRej(Message):
    """Rejection of a channel proposal."""

    code: ClassVar[int] = 22
    proposal_id: bytes
    reject_code: int
    reason: str


# --- updates --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelUpdate(Message):
    """Proposal of the next state, signed by its proposer."""

    code: ClassVar[int] = 32
    state: State
    actor_idx: int
    sig: bytes


@dataclass(frozen=True, slots=True)
class ChannelUpdateAcc(Message):
    """Acceptance of an update (version 0: the initial signature)."""

    code: ClassVar[int] = 33
    channel_id: bytes
    version: int
    sig: bytes


@dataclass(frozen=True, slots=True)
class ChannelUpdateRej(Message):
    """Rejection of an update."""

    code: ClassVar[int] = 34
    channel_id: bytes
    version: int
    reject_code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ChannelSync(Message):
    """A party's view of a channel, exchanged on (re)connect and after timeouts."""

    code: ClassVar[int] = 48
    channel_id: bytes
    phase: int
    current: Transaction | None
    pending: Transaction | None
    version_floor: int
    reply: bool = False  # an answer to the peer's request; answers are never answered


MESSAGE_TYPES: tuple[type[Message], ...] = (
    Ping,
    Pong,
    Shutdown,
    AuthHello,
    AuthReply,
    AuthConfirm,
    LedgerChannelProposal,
    LedgerChannelProposalAcc,
    SubChannelProposal,
    SubChannelProposalAcc,
    ChannelProposalRej,
    ChannelUpdate,
    ChannelUpdateAcc,
    ChannelUpdateRej,
    ChannelSync,
)
"""Every message type this build understands."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message with its sender and recipient wire addresses."""

    sender: Address
    recipient: Address
    msg: Message


__all__ = [
    "MESSAGE_TYPES",
    "WIRE_VERSION",
    "AuthConfirm",
    "AuthHello",
    "AuthReply",
    "ChannelProposalRej",
    "ChannelSync",
    "ChannelUpdate",
    "ChannelUpdateAcc",
    "ChannelUpdateRej",
    "Envelope",
    "LedgerChannelProposal",
    "LedgerChannelProposalAcc",
    "Message",
    "Ping",
    "Pong",
    "Shutdown",
    "SubChannelProposal",
    "SubChannelProposalAcc",
]
