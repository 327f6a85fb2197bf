"""The wire: message types, the envelope, the binary codec and the in-process LocalBus.

``LocalBus`` and ``LocalSubscription`` are loaded on first access: ``perun_core.interfaces.bus``
imports this package for the envelope type, so importing the bus implementation here eagerly
would be circular.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from perun_core.wire.codec import (
    DEFAULT_MAX_SIZE,
    MAX_FRAME_LIMIT,
    UnknownWireVersionError,
    decode,
    decode_envelope,
    decode_record,
    decode_state,
    decode_transaction,
    encode,
    encode_envelope,
    encode_record,
    encode_state,
    encode_transaction,
    wire_format_table,
)
from perun_core.wire.messages import (
    MESSAGE_TYPES,
    WIRE_VERSION,
    AuthConfirm,
    AuthHello,
    AuthReply,
    ChannelProposalRej,
    ChannelSync,
    ChannelUpdate,
    ChannelUpdateAcc,
    ChannelUpdateRej,
    Envelope,
    LedgerChannelProposal,
    LedgerChannelProposalAcc,
    Message,
    Ping,
    Pong,
    Shutdown,
    SubChannelProposal,
    SubChannelProposalAcc,
)

if TYPE_CHECKING:
    from perun_core.wire.local_bus import LocalBus, LocalSubscription

_LAZY = frozenset({"LocalBus", "LocalSubscription"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from perun_core.wire import local_bus  # noqa: PLC0415 - lazy attribute: importing the wire package must not load the bus

        return getattr(local_bus, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MAX_SIZE",
    "MAX_FRAME_LIMIT",
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
    "LocalBus",
    "LocalSubscription",
    "Message",
    "Ping",
    "Pong",
    "Shutdown",
    "SubChannelProposal",
    "SubChannelProposalAcc",
    "UnknownWireVersionError",
    "decode",
    "decode_envelope",
    "decode_record",
    "decode_state",
    "decode_transaction",
    "encode",
    "encode_envelope",
    "encode_record",
    "encode_state",
    "encode_transaction",
    "wire_format_table",
]
