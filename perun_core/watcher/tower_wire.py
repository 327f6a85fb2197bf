"""The watchtower protocol's wire messages (type codes 128-132; see docs/wire-format.md).

A client hands a remote tower the latest fully signed state of each channel with
:class:`WatchRequest`; the tower answers :class:`WatchAck` after its durable write, or
:class:`WatchRefused` with a typed refusal code. :class:`StopWatching` ends the watch
(answered by :class:`StopWatchingAck`). Requests carry an ID the answer echoes, so a client
can match answers to requests whatever their order.

The messages travel on the perun bus like any other; they are plugin-range messages
registered with :func:`perun_core.wire.codec.register_messages` by :func:`register` (the
remote watcher and the tower call it; it is idempotent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from perun_core.channel.params import Params
from perun_core.channel.state import Transaction
from perun_core.channel.types import Address
from perun_core.wire.codec import (
    PluginMessageWire,
    WireAddr,
    WireId,
    WireParams,
    WireReason,
    WireSig,
    WireTransaction,
    WireU8,
    WireU64,
    register_messages,
)
from perun_core.wire.messages import Message

DELEGATION_DOMAIN = b"perun-py/watchtower/delegate/v1"
"""Prefix of the message a participant signs to let another wire identity use a tower."""


def delegation_message(tower: Address, delegate: Address) -> bytes:
    """What participant signs to let ``delegate`` hand its channels' states to ``tower``.

    ``DELEGATION_DOMAIN ‖ len ‖ tower ‖ len ‖ delegate`` (one-byte lengths): bound to the
    tower, so a delegation cannot be replayed to another tower.
    """
    t, d = tower.raw, delegate.raw
    return DELEGATION_DOMAIN + bytes([len(t)]) + t + bytes([len(d)]) + d


@dataclass(frozen=True, slots=True)
class WatchRequest(Message):
    """Watch a channel from this fully signed transaction on (newest wins).

    Attributes:
        request_id: echoed by the answer.
        params: the channel's params (the tower checks the ID against them).
        tx: the latest fully signed transaction.
        parent: the parent channel's ID for a sub- or virtual channel (``None``: a ledger
            channel).
        participant: the participant the sender acts for, when the sender's wire address is
            not a participant itself (``None``: the sender is one).
        delegation: ``participant``'s signature on :func:`delegation_message`.
    """

    code: ClassVar[int] = 128
    request_id: int
    params: Params
    tx: Transaction
    parent: bytes | None = None
    participant: Address | None = None
    delegation: bytes = b""


@dataclass(frozen=True, slots=True)
class WatchAck(Message):
    """The tower stored ``version`` of the channel durably and watches it."""

    code: ClassVar[int] = 129
    request_id: int
    channel_id: bytes
    version: int


@dataclass(frozen=True, slots=True)
class WatchRefused(Message):
    """The tower refused a request (``refusal``: a :data:`~perun_core.errors.WATCH_REFUSALS`
    code); it keeps what it held before."""

    code: ClassVar[int] = 130
    request_id: int
    channel_id: bytes
    refusal: int
    reason: str


@dataclass(frozen=True, slots=True)
class StopWatching(Message):
    """Stop watching a channel (it was withdrawn); the tower deletes its record."""

    code: ClassVar[int] = 131
    request_id: int
    channel_id: bytes


@dataclass(frozen=True, slots=True)
class StopWatchingAck(Message):
    """The tower deleted its record of the channel (also sent if it had none)."""

    code: ClassVar[int] = 132
    request_id: int
    channel_id: bytes


# --- wire structs ---------------------------------------------------------------------------


class _WatchRequestWire(PluginMessageWire, tag=WatchRequest.code):
    doc = "WatchRequest"
    model = WatchRequest
    request_id: WireU64
    params: WireParams
    tx: WireTransaction
    parent: WireId | None
    participant: WireAddr | None
    delegation: WireSig

    @classmethod
    def of(cls, m: WatchRequest) -> _WatchRequestWire:
        who = None if m.participant is None else cls.addr_out(m.participant)
        return cls(
            m.request_id,
            cls.params_of(m.params),
            cls.tx_of(m.tx),
            m.parent,
            who,
            m.delegation,
        )

    def to_model(self) -> WatchRequest:
        return WatchRequest(
            self.request_id,
            self.params_in(self.params, "params"),
            self.tx_in(self.tx, "tx"),
            self.parent,
            None if self.participant is None else Address(self.participant),
            self.delegation,
        )


class _WatchAckWire(PluginMessageWire, tag=WatchAck.code):
    doc = "WatchAck"
    model = WatchAck
    request_id: WireU64
    channel_id: WireId
    version: WireU64

    @classmethod
    def of(cls, m: WatchAck) -> _WatchAckWire:
        return cls(m.request_id, m.channel_id, m.version)

    def to_model(self) -> WatchAck:
        return WatchAck(self.request_id, self.channel_id, self.version)


class _WatchRefusedWire(PluginMessageWire, tag=WatchRefused.code):
    doc = "WatchRefused"
    model = WatchRefused
    request_id: WireU64
    channel_id: WireId
    refusal: WireU8
    reason: WireReason

    @classmethod
    def of(cls, m: WatchRefused) -> _WatchRefusedWire:
        return cls(m.request_id, m.channel_id, m.refusal, cls.text_out(m.reason))

    def to_model(self) -> WatchRefused:
        reason = self.text_in(self.reason, "reason")
        return WatchRefused(self.request_id, self.channel_id, self.refusal, reason)


class _StopWatchingWire(PluginMessageWire, tag=StopWatching.code):
    doc = "StopWatching"
    model = StopWatching
    request_id: WireU64
    channel_id: WireId

    @classmethod
    def of(cls, m: StopWatching) -> _StopWatchingWire:
        return cls(m.request_id, m.channel_id)

    def to_model(self) -> StopWatching:
        return StopWatching(self.request_id, self.channel_id)


class _StopWatchingAckWire(PluginMessageWire, tag=StopWatchingAck.code):
    doc = "StopWatchingAck"
    model = StopWatchingAck
    request_id: WireU64
    channel_id: WireId

    @classmethod
    def of(cls, m: StopWatchingAck) -> _StopWatchingAckWire:
        return cls(m.request_id, m.channel_id)

    def to_model(self) -> StopWatchingAck:
        return StopWatchingAck(self.request_id, self.channel_id)


def register() -> None:
    """Make the watchtower messages encodable and decodable in this process (idempotent)."""
    register_messages(
        _WatchRequestWire,
        _WatchAckWire,
        _WatchRefusedWire,
        _StopWatchingWire,
        _StopWatchingAckWire,
    )


__all__ = [
    "DELEGATION_DOMAIN",
    "StopWatching",
    "StopWatchingAck",
    "WatchAck",
    "WatchRefused",
    "WatchRequest",
    "delegation_message",
    "register",
]
