"""The protocol between a served sim ledger (:mod:`perun_sim.server`) and its clients
(:mod:`perun_sim.remote`): frames, messages, value encodings and errors.

Every frame is a 4-byte big-endian length followed by that many bytes of msgpack (encoded
with msgspec). A frame holds one message, an array whose first element is its kind:

========  =====================================  ================
kind      array                                  direction
========  =====================================  ================
0 CALL    ``[0, call_id, method, [args...]]``    client → server
1 CANCEL  ``[1, call_id]``                       client → server
2 RESULT  ``[2, call_id, value]``                server → client
3 ERROR   ``[3, call_id, [kind, message, reason, operation, error]]``  server → client
4 EVENT   ``[4, subscription_id, event]``        server → client
========  =====================================  ================

A connection starts with ``hello``, whose answer carries a fresh 32-byte challenge. Requests
that move an account's funds (``deposit`` from it, ``withdraw`` of its holdings) are served
only on a connection that has proven control of that account with ``login``: its signature
over :func:`login_transcript` of that challenge. Everything else (views, the faucet, time,
disputes, which carry their own signatures) is open to every connection.

Calls are answered in any order (a ``sleep_until`` may wait for minutes while other calls
are answered); call and subscription IDs are chosen by the client. Values are msgpack arrays
(:class:`msgspec.Struct` with ``array_like``); integers that do not fit msgpack's 64 bits
(balances, nonces) are byte strings: a sign byte (0 or 1) followed by the big-endian
magnitude. Values are carried as they are, even invalid ones, so the served ledger refuses
them with exactly the reasons a local one would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from perun_core import errors as core_errors
from perun_core.channel.allocation import Allocation, SubAlloc
from perun_core.channel.params import Params
from perun_core.channel.state import SignedState, State
from perun_core.channel.types import Address, Asset
from perun_core.errors import (
    ChainConnectionError,
    ChainError,
    FrameTooLargeError,
    MalformedMessageError,
    MissingSubStatesError,
    PerunError,
    ProtocolError,
)
from perun_sim.ledger import Dispute, DisputePhase, WithdrawalAuth

PROTOCOL_VERSION: Final = 2
"""Version of this protocol; client and server must agree (checked by ``hello``). Version 2
added the challenge to ``hello``'s answer and ``login``."""

MAX_LEDGER_TIME: Final = 2**53 - 1
"""Latest ledger time a served ledger reaches (some 285 million years): the clock keeps time
in floating point, which holds whole seconds exactly up to here, and every answer carrying
the time stays a plain msgpack integer."""

LOGIN_DOMAIN: Final = b"perun-sim/ledger-login/v1"
CHALLENGE_LEN: Final = 32

DEFAULT_MAX_FRAME: Final = 4 * 1024 * 1024
"""Largest frame either side sends or accepts by default (4 MiB)."""

MAX_BIG_BYTES: Final = 64
"""Longest magnitude of a big integer on the wire (512 bits: room to carry, and refuse,
values beyond the ledger's 256-bit bounds)."""

CALL: Final = 0
CANCEL: Final = 1
RESULT: Final = 2
ERROR: Final = 3
EVENT: Final = 4


class LedgerConnectionError(ChainConnectionError):
    """The served ledger cannot be reached, refused the connection, or the connection broke.

    A :class:`ChainError`, so code that handles refused ledger operations also handles an
    unreachable ledger (the operation did not happen or its outcome is unknown).
    """

    def __init__(self, reason: str, *, operation: str | None = None) -> None:
        super().__init__(reason, operation=operation)


class LedgerAuthError(ChainError):
    """A request to move an account's funds on a connection that has not proven control of
    that account (:meth:`RemoteLedger.add_account <perun_sim.remote.RemoteLedger.add_account>`
    makes the client prove it), or a ``login`` whose signature does not verify."""

    def __init__(self, reason: str, *, operation: str | None = None) -> None:
        super().__init__(reason, operation=operation)


class ClockRangeError(PerunError, ValueError):
    """An ``advance`` that would take ledger time past :data:`MAX_LEDGER_TIME`."""


class LedgerURLError(PerunError, ValueError):
    """A served ledger's URL is not ``tcp://HOST:PORT``, ``tcp://[IPv6]:PORT`` or
    ``unix:///absolute/path``."""


# --- URLs ----------------------------------------------------------------------------------------


def parse_url(url: str) -> tuple[str, str, int]:
    """Split a ledger URL into ``(kind, host_or_path, port)``; ``kind`` is "tcp" or "unix".

    Raises:
        LedgerURLError: anything but the accepted forms.
    """
    forms = "expected tcp://HOST:PORT, tcp://[IPv6]:PORT or unix:///absolute/path"
    if not isinstance(url, str):
        raise LedgerURLError(f"a ledger URL is a string, got {type(url).__name__}; {forms}")
    if url.startswith("unix://"):
        path = url[len("unix://") :]
        if not path.startswith("/"):
            raise LedgerURLError(f"{url!r}: the socket path must be absolute; {forms}")
        return "unix", path, 0
    if url.startswith("tcp://"):
        rest = url[len("tcp://") :]
        host, sep, port_text = rest.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            host = ""  # a bare IPv6 address needs brackets
        if sep and host and port_text.isdigit() and 0 <= int(port_text) < 65536:
            return "tcp", host, int(port_text)
    raise LedgerURLError(f"{url!r} is not a ledger URL; {forms}")


def format_tcp_url(host: str, port: int) -> str:
    """``tcp://host:port`` (IPv6 hosts in brackets)."""
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def login_transcript(ledger_id: int, challenge: bytes, address: Address) -> bytes:
    """What an account signs to prove control of ``address`` on one connection:
    ``LOGIN_DOMAIN ‖ i256be(ledger_id) ‖ challenge ‖ u16be(len(address)) ‖ address``.

    The challenge is the connection's own (from ``hello``), so a login cannot be replayed
    on another connection; the ledger ID keeps it from serving on another ledger.
    """
    raw = address.raw
    return b"".join(
        (
            LOGIN_DOMAIN,
            ledger_id.to_bytes(32, "big", signed=True),
            challenge,
            len(raw).to_bytes(2, "big"),
            raw,
        )
    )


# --- framing -------------------------------------------------------------------------------------


async def read_frame(reader: asyncio.StreamReader, max_size: int) -> bytes | None:
    """The next frame's payload, or ``None`` at a clean end of stream.

    Raises:
        FrameTooLargeError: the announced length exceeds ``max_size`` (nothing more is read).
        MalformedMessageError: an empty frame.
        asyncio.IncompleteReadError: the stream ended inside a frame.
    """
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise
    size = int.from_bytes(head, "big")
    if size > max_size:
        raise FrameTooLargeError(size, max_size)
    if size == 0:
        raise MalformedMessageError("empty frame")
    return await reader.readexactly(size)


def frame(payload: bytes) -> bytes:
    """``payload`` with its 4-byte big-endian length in front."""
    return len(payload).to_bytes(4, "big") + payload


def call_head(payload: bytes) -> tuple[int, str] | None:  # noqa: C901 - one straight pass over the MessagePack bytes; its branches are the format's cases
    """``(call_id, method)`` of a call frame, read without decoding its arguments.

    Lets the server answer a call whose arguments cannot be decoded at all (a nesting bomb
    makes the decoder give up with ``RecursionError`` before it gets to them); ``None`` if
    the frame does not start like a call.
    """
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(payload):
            raise IndexError
        pos += n
        return payload[pos - n : pos]

    def integer() -> int:
        b = take(1)[0]
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        widths = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
        if b not in widths:
            raise ValueError
        return int.from_bytes(take(widths[b]), "big", signed=b >= 0xD0)

    try:
        head = take(1)[0]
        if head == 0xDC:
            take(2)
        elif head == 0xDD:
            take(4)
        elif not 0x90 <= head <= 0x9F:
            return None
        if integer() != CALL:
            return None
        call_id = integer()
        b = take(1)[0]
        if 0xA0 <= b <= 0xBF:
            n = b - 0xA0
        elif b in (0xD9, 0xDA, 0xDB):
            n = int.from_bytes(take({0xD9: 1, 0xDA: 2, 0xDB: 4}[b]), "big")
        else:
            return None
        return call_id, take(n).decode("utf-8", "replace")
    except (IndexError, ValueError):
        return None


# --- value encodings -----------------------------------------------------------------------------

Big = int | bytes
"""An integer on the wire: a msgpack integer if it fits 64 bits, else sign byte ‖ magnitude."""

_I64_MIN: Final = -(2**63)
_U64_BOUND: Final = 2**64


def big(n: int) -> Big:
    """Encode an integer of any size (see :data:`Big`)."""
    if _I64_MIN <= n < _U64_BOUND:
        return n
    mag = abs(n)
    return (b"\x01" if n < 0 else b"\x00") + mag.to_bytes((mag.bit_length() + 7) // 8, "big")


def unbig(v: Big) -> int:
    """Decode :func:`big`.

    Raises:
        MalformedMessageError: not a sign byte and a magnitude of at most 64 bytes.
    """
    if isinstance(v, int):
        return v
    if len(v) < 2 or v[0] not in (0, 1) or len(v) - 1 > MAX_BIG_BYTES:
        raise MalformedMessageError("a big integer is a sign byte and 1..64 magnitude bytes")
    mag = int.from_bytes(v[1:], "big")
    return -mag if v[0] else mag


class WAsset(msgspec.Struct, array_like=True, frozen=True):
    """An :class:`Asset`: ``[ledger_id, holder]``."""

    ledger_id: Big
    holder: bytes


class WSubAlloc(msgspec.Struct, array_like=True, frozen=True):
    """A :class:`SubAlloc`: ``[id, [balance...], [index...]]``."""

    id: bytes
    balances: list[Big]
    index_map: list[Big]


class WState(msgspec.Struct, array_like=True, frozen=True):
    """A :class:`State` with its allocation flattened into it."""

    channel_id: bytes
    version: Big
    assets: list[WAsset]
    balances: list[list[Big]]
    locked: list[WSubAlloc]
    app: bytes | None
    data: bytes
    is_final: bool


class WParams(msgspec.Struct, array_like=True, frozen=True):
    """:class:`Params` (the ID is recomputed by whoever needs it)."""

    challenge_duration: Big
    participants: list[bytes]
    nonce: Big
    app: bytes | None
    ledger_channel: bool
    virtual_channel: bool
    aux: bytes
    backend: str


class WSigned(msgspec.Struct, array_like=True, frozen=True):
    """A :class:`SignedState`: ``[params, state, [sig...]]``."""

    params: WParams
    state: WState
    sigs: list[bytes]


class WDispute(msgspec.Struct, array_like=True, frozen=True):
    """A ledger :class:`Dispute` record."""

    version: Big
    phase: int
    timeout: Big
    has_app: bool
    challenge_duration: Big
    state_hash: bytes
    state: WState


class WEvent(msgspec.Struct, array_like=True, frozen=True):
    """An adjudicator event; ``kind`` 0 registered, 1 progressed, 2 concluded."""

    kind: int
    channel_id: bytes
    version: Big
    deadline: Big
    state: WState | None
    actor_idx: int


class WAuth(msgspec.Struct, array_like=True, frozen=True):
    """A :class:`WithdrawalAuth`."""

    channel_id: bytes
    participant: bytes
    receiver: bytes
    amount: Big
    asset: WAsset


EVENT_REGISTERED: Final = 0
EVENT_PROGRESSED: Final = 1
EVENT_CONCLUDED: Final = 2


def _checked(what: str, build: Any, *args: Any) -> Any:
    """Build a core value; its own checks (``ValueError``) become a malformed message."""
    try:
        return build(*args)
    except (ValueError, TypeError) as e:
        raise MalformedMessageError(f"malformed {what}: {e}") from None


def w_address(a: Address) -> bytes:
    """An address as its raw bytes."""
    return a.raw


def address(raw: bytes) -> Address:
    """Inverse of :func:`w_address` (raises :class:`MalformedMessageError`)."""
    result: Address = _checked("address", Address, raw)
    return result


def w_asset(a: Asset) -> WAsset:
    """Encode an asset."""
    return WAsset(big(a.ledger_id), a.holder)


def asset(w: WAsset) -> Asset:
    """Decode an asset (raises :class:`MalformedMessageError`)."""
    result: Asset = _checked("asset", Asset, unbig(w.ledger_id), w.holder)
    return result


def w_state(s: State) -> WState:
    """Encode a state."""
    alloc = s.allocation
    return WState(
        s.channel_id,
        big(s.version),
        [w_asset(a) for a in alloc.assets],
        [[big(x) for x in row] for row in alloc.balances],
        [
            WSubAlloc(sa.id, [big(x) for x in sa.balances], [big(x) for x in sa.index_map])
            for sa in alloc.locked
        ],
        s.app,
        s.data,
        s.is_final,
    )


def state(w: WState) -> State:
    """Decode a state (raises :class:`MalformedMessageError`)."""
    locked = tuple(
        SubAlloc(sa.id, tuple(unbig(x) for x in sa.balances), tuple(unbig(x) for x in sa.index_map))
        for sa in w.locked
    )
    alloc = Allocation(
        tuple(asset(a) for a in w.assets),
        tuple(tuple(unbig(x) for x in row) for row in w.balances),
        locked,
    )
    return State(w.channel_id, unbig(w.version), alloc, w.app, w.data, w.is_final)


def w_params(p: Params) -> WParams:
    """Encode params."""
    return WParams(
        big(p.challenge_duration),
        [a.raw for a in p.participants],
        big(p.nonce),
        p.app,
        p.ledger_channel,
        p.virtual_channel,
        p.aux,
        p.backend,
    )


def params(w: WParams) -> Params:
    """Decode params; their ID is not transmitted and left empty.

    Raises:
        MalformedMessageError: the params break a rule of :meth:`Params.check`.
    """
    parts = tuple(address(a) for a in w.participants)

    def build() -> Params:
        return Params(
            unbig(w.challenge_duration),
            parts,
            unbig(w.nonce),
            w.app,
            w.ledger_channel,
            w.virtual_channel,
            w.aux,
            w.backend,
        )

    result: Params = _checked("params", build)
    return result


def w_signed(s: SignedState) -> WSigned:
    """Encode a signed state."""
    return WSigned(w_params(s.params), w_state(s.state), list(s.sigs))


def signed(w: WSigned) -> SignedState:
    """Decode a signed state (raises :class:`MalformedMessageError`)."""
    return SignedState(params(w.params), state(w.state), tuple(w.sigs))


def w_dispute(d: Dispute) -> WDispute:
    """Encode a dispute record."""
    return WDispute(
        big(d.version),
        int(d.phase),
        big(d.timeout),
        d.has_app,
        big(d.challenge_duration),
        d.state_hash,
        w_state(d.state),
    )


def dispute(w: WDispute) -> Dispute:
    """Decode a dispute record (raises :class:`MalformedMessageError`)."""
    phase: DisputePhase = _checked("dispute phase", DisputePhase, w.phase)
    return Dispute(
        unbig(w.version),
        phase,
        unbig(w.timeout),
        w.has_app,
        unbig(w.challenge_duration),
        w.state_hash,
        state(w.state),
    )


def w_auth(a: WithdrawalAuth) -> WAuth:
    """Encode a withdrawal authorization."""
    return WAuth(a.channel_id, a.participant.raw, a.receiver.raw, big(a.amount), w_asset(a.asset))


def auth(w: WAuth) -> WithdrawalAuth:
    """Decode a withdrawal authorization (raises :class:`MalformedMessageError`)."""
    return WithdrawalAuth(
        w.channel_id, address(w.participant), address(w.receiver), unbig(w.amount), asset(w.asset)
    )


def w_states(states: Sequence[State]) -> list[WState]:
    """Encode a list of states."""
    return [w_state(s) for s in states]


# --- errors --------------------------------------------------------------------------------------

ERR_AUTH: Final = "auth"
ERR_CLOCK_RANGE: Final = "clock-range"
ERR_CHAIN: Final = "chain"
ERR_MISSING_SUB_STATES: Final = "missing-sub-states"
ERR_VALUE: Final = "value"
ERR_MALFORMED: Final = "malformed"
ERR_PROTOCOL: Final = "protocol"
ERR_INTERNAL: Final = "internal"


class WError(msgspec.Struct, array_like=True, frozen=True):
    """An error answer: ``[kind, message, reason, operation, error]``.

    ``error`` names the :mod:`perun_core.errors` class of a ledger refusal (e.g.
    ``"StaleStateError"``), so the client raises the same type the ledger did. It is last and
    optional: peers without it still decode each other's answers.
    """

    kind: str
    message: str
    reason: str | None = None
    operation: str | None = None
    error: str | None = None


def w_error(e: BaseException, method: str) -> WError:
    """What the server answers for an exception raised by ``method``."""
    if isinstance(e, MissingSubStatesError):
        return WError(ERR_MISSING_SUB_STATES, str(e), e.reason, e.operation)
    if isinstance(e, LedgerAuthError):
        return WError(ERR_AUTH, str(e), e.reason, e.operation or method)
    if isinstance(e, ClockRangeError):
        return WError(ERR_CLOCK_RANGE, str(e), None, method)
    if isinstance(e, ChainError):
        return WError(ERR_CHAIN, str(e), e.reason, e.operation, _core_name(type(e)))
    if isinstance(e, MalformedMessageError):
        return WError(ERR_MALFORMED, str(e), None, method)
    if isinstance(e, ProtocolError):
        return WError(ERR_PROTOCOL, str(e), None, method)
    if isinstance(e, ValueError):
        return WError(ERR_VALUE, str(e), None, method)
    return WError(ERR_INTERNAL, f"{type(e).__name__}: {e}", None, method)


def _core_name(cls: type[ChainError]) -> str:
    """The name of the nearest :mod:`perun_core.errors` class of ``cls``."""
    for base in cls.__mro__:
        name: str = base.__name__
        if getattr(core_errors, name, None) is base:
            return name
    return ChainError.__name__


def error(w: WError) -> Exception:
    """The exception a client raises for an error answer (the server's type where known)."""
    if w.kind == ERR_MISSING_SUB_STATES:
        return MissingSubStatesError(w.reason or w.message, operation=w.operation)
    if w.kind == ERR_AUTH:
        return LedgerAuthError(w.reason or w.message, operation=w.operation)
    if w.kind == ERR_CLOCK_RANGE:
        return ClockRangeError(w.message)
    if w.kind == ERR_CHAIN:
        cls = getattr(core_errors, w.error or "", None)
        if not (isinstance(cls, type) and issubclass(cls, ChainError)):
            cls = ChainError
        return cls(w.reason or w.message, operation=w.operation)
    if w.kind == ERR_VALUE:
        return ValueError(w.message)
    if w.kind == ERR_MALFORMED:
        return MalformedMessageError(f"the ledger server refused the request: {w.message}")
    if w.kind == ERR_PROTOCOL:
        return ProtocolError(f"the ledger server refused the request: {w.message}")
    return ChainError(f"ledger server fault: {w.message}", operation=w.operation)
