"""The binary wire codec (the format is documented in ``docs/wire-format.md``).

Every encoding is one header byte, the codec version
(:data:`~perun_core.wire.messages.WIRE_VERSION`), followed by one MessagePack value: an array
with a fixed field order, never a map. A message is ``[type_code, field, ...]``; an envelope is
``[sender, recipient, message]``. Integers that may exceed 64 bits (balances, nonces) are
big-endian byte strings without leading zero bytes (zero is the empty string); addresses, assets
(:meth:`Asset.encode`), AppIDs, IDs and signatures are byte strings.

The schema is a set of array-like :class:`msgspec.Struct` types, one per message (tagged with
its type code) and one per nested value, whose field types carry the data-model limits
(:mod:`perun_core.channel.limits`) as :class:`msgspec.Meta`. One msgspec decoder over the union
of the message structs parses and checks a frame in C; each struct then builds the data-model
value (``to_model``), checking the few rules msgspec cannot express (canonical big integers,
UTF-8 byte lengths, the model's own constructors). Encoding builds the structs from the model
(``of``) and runs the decoder over the
result, so anything that encodes also decodes: ``decode(encode(m)) == m``.

Decoding is strict: anything but a well-formed value within the limits raises
:class:`~perun_core.errors.MalformedMessageError` naming the type code and the field, and input
above the size limit is refused before it is parsed (:class:`FrameTooLargeError`). Every decoder
is typed all the way down (no ``Any``), so the parser never nests deeper than the schema: a
nesting bomb fails at its first level, whatever the interpreter's recursion limit.

The same encodings serve persistence (:func:`encode_state`, :func:`encode_transaction`,
:func:`encode_record`), so a stored record carries the version byte too.
:func:`wire_format_table` renders the structs for the docs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Final, TypeVar, get_args

import msgspec
import msgspec.inspect as mi
from msgspec import Meta, Struct

from perun_core.channel import limits
from perun_core.channel.allocation import Allocation, SubAlloc
from perun_core.channel.params import Params
from perun_core.channel.phase import Phase
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Address, Asset
from perun_core.errors import (
    FrameTooLargeError,
    MalformedMessageError,
    PluginConflictError,
    UnsupportedWireVersionError,
)
from perun_core.interfaces.persister import ChannelRecord
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

DEFAULT_MAX_SIZE: Final = 1 << 20
"""Default maximum size of one encoded message or envelope (1 MiB)."""

MAX_FRAME_LIMIT: Final = 16 << 20
"""The largest ``max_size`` a transport may configure (16 MiB)."""

MAX_SIG_LEN: Final = 8192
"""Longest signature accepted (room for post-quantum schemes; ECDSA needs 65 bytes)."""

MAX_NAME_LEN: Final = 64
"""Longest backend name (UTF-8 bytes) in params and proposals."""

MAX_ADDRESS_LEN: Final = 64
MAX_APP_ID_LEN: Final = 64
MAX_ASSET_LEN: Final = 32 + 64  # 32-byte ledger ID + holder of at most 64 bytes

_HEADER: Final = bytes([WIRE_VERSION])


class UnknownWireVersionError(MalformedMessageError, UnsupportedWireVersionError):
    """An encoding whose version byte this build does not know.

    It is both a :class:`MalformedMessageError` (code that drops bad frames needs no extra case)
    and an :class:`UnsupportedWireVersionError` (code that wants to tell the peer can).

    Attributes:
        version: the version byte found.
        supported: the versions this build decodes.
    """

    def __init__(self, version: int) -> None:
        self.version = version
        self.supported = (WIRE_VERSION,)
        super().__init__(
            f"unsupported wire version {version}; this build speaks version {WIRE_VERSION}"
        )


# --- checks msgspec cannot express ----------------------------------------------------------


class _Bad(Exception):
    """Internal: a value failed a check; collects the field path while it propagates."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.parts: list[str] = []

    def at(self, part: str) -> _Bad:
        self.parts.append(part)
        return self

    def path(self) -> str:
        return "".join(reversed(self.parts)).lstrip(".") or "<value>"


class _Invalid:
    """Stands in, on encoding, for a model value that has no wire form.

    msgspec refuses to encode it, and :func:`_locate` reports its field path and ``reason``.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _uint_in(raw: bytes) -> int:
    """A ``uint256`` from its wire bytes (length already checked by the schema)."""
    if raw and not raw[0]:
        raise _Bad("non-canonical integer (leading zero byte)")
    return int.from_bytes(raw, "big")


def _uint_out(v: object) -> bytes | _Invalid:
    if type(v) is not int and (isinstance(v, bool) or not isinstance(v, int)):
        return _Invalid(f"expected an integer, got {type(v).__name__}")
    if v < 0:
        return _Invalid(f"negative integer {v}")
    n = (v.bit_length() + 7) >> 3
    if n > 32:
        return _Invalid("integer not below 2**256")
    return v.to_bytes(n, "big")


def _text_in(s: str, max_bytes: int) -> str:
    # The schema bounds the characters; each is 1..4 UTF-8 bytes, so measure only when unsure.
    if 4 * len(s) > max_bytes and len(s.encode()) > max_bytes:
        raise _Bad(f"string longer than {max_bytes} UTF-8 bytes")
    return s


def _text_out(s: object, max_bytes: int) -> object:
    if type(s) is not str:
        return s  # the schema check after encoding names the type
    try:
        n = len(s.encode())
    except UnicodeEncodeError:
        return _Invalid("string is not encodable as UTF-8")
    return s if n <= max_bytes else _Invalid(f"string longer than {max_bytes} UTF-8 bytes")


def _addr_out(a: object) -> bytes | _Invalid:
    return a.raw if isinstance(a, Address) else _Invalid(f"expected an Address, got {_tname(a)}")


def _asset_out(a: object) -> bytes | _Invalid:
    return a.encode() if isinstance(a, Asset) else _Invalid(f"expected an Asset, got {_tname(a)}")


_T = TypeVar("_T")


def _each(fn: Callable[[Any], _T], items: Sequence[Any]) -> tuple[_T, ...]:
    """``tuple(map(fn, items))``; a failure names its index."""
    try:
        return tuple([fn(x) for x in items])
    except _Bad:
        for i, x in enumerate(items):
            try:
                fn(x)
            except _Bad as e:
                raise e.at(f"[{i}]") from None
        raise


def _tname(v: object) -> str:
    return type(v).__name__


# --- field types: the limits ----------------------------------------------------------------
# ``doc`` (in Meta.extra) names a type in the docs' table where its constraints alone do not.

_U8 = Annotated[int, Meta(ge=0, le=(1 << 8) - 1)]
_U16 = Annotated[int, Meta(ge=0, le=(1 << 16) - 1)]
_U64 = Annotated[int, Meta(ge=0)]  # MessagePack integers end at 2**64 - 1
_Challenge = Annotated[int, Meta(ge=1, le=limits.CHALLENGE_DURATION_BOUND - 1)]
_Id = Annotated[bytes, Meta(min_length=limits.ID_LEN, max_length=limits.ID_LEN)]
_Sig = Annotated[bytes, Meta(max_length=MAX_SIG_LEN)]
_AppId = Annotated[bytes, Meta(min_length=1, max_length=MAX_APP_ID_LEN)] | None
_AppData = Annotated[bytes, Meta(max_length=limits.MAX_APP_DATA)]
_Aux = Annotated[bytes, Meta(max_length=limits.MAX_AUX)]
_Reason = Annotated[str, Meta(max_length=limits.MAX_REASON, extra={"doc": "str≤{}B"})]
_Backend = Annotated[str, Meta(max_length=MAX_NAME_LEN, extra={"doc": "str≤{}B"})]
_UInt256 = Annotated[bytes, Meta(max_length=32, extra={"doc": "uint256"})]
_Addr = Annotated[bytes, Meta(min_length=1, max_length=MAX_ADDRESS_LEN, extra={"doc": "addr"})]
_AssetBytes = Annotated[
    bytes, Meta(min_length=33, max_length=MAX_ASSET_LEN, extra={"doc": "asset"})
]
_Parties = Annotated[list[_Addr], Meta(max_length=limits.MAX_PARTICIPANTS)]
_Balances = Annotated[
    list[Annotated[list[_UInt256], Meta(max_length=limits.MAX_PARTICIPANTS)]],
    Meta(max_length=limits.MAX_ASSETS),
]
_Sigs = Annotated[tuple[_Sig | None, ...], Meta(max_length=limits.MAX_PARTICIPANTS)]


def _balances_in(rows: list[list[bytes]]) -> tuple[tuple[int, ...], ...]:
    try:  # _uint_in inline for canonical values (the hot path of every update)
        return tuple(
            [
                tuple([int.from_bytes(x, "big") if not x or x[0] else _uint_in(x) for x in row])
                for row in rows
            ]
        )
    except _Bad:
        _each(lambda row: _each(_uint_in, row), rows)  # raises again, naming the indices
        raise


_BALANCE_BOUND: Final = limits.BALANCE_BOUND


def _row_out(row: object) -> object:
    if isinstance(row, (tuple, list)):
        return [_uint_out(b) for b in row]
    return row  # the schema check after encoding names the type


def _balances_out(rows: object) -> object:
    if type(rows) is not tuple and not isinstance(rows, list):
        return rows  # the schema check after encoding names the type
    out = []
    for row in rows:
        out.append(_row_out(row))
    return out


# --- the schema -----------------------------------------------------------------------------


class _Wire(Struct, array_like=True, forbid_unknown_fields=True, gc=False):
    """A value as a MessagePack array of its fields, in declaration order."""

    doc: ClassVar[str]
    """The value's name in errors and the docs."""


class _SubAllocWire(_Wire):
    doc = "SubAlloc"
    id: _Id
    balances: Annotated[list[_UInt256], Meta(max_length=limits.MAX_ASSETS)]
    index_map: Annotated[tuple[_U16, ...], Meta(max_length=limits.MAX_PARTICIPANTS)]

    @staticmethod
    def of(s: SubAlloc) -> _SubAllocWire:
        return _SubAllocWire(s.id, [_uint_out(b) for b in s.balances], s.index_map)  # type: ignore[misc]

    def to_model(self) -> SubAlloc:
        try:
            (balances,) = _balances_in([self.balances])
        except _Bad as e:
            e.parts.pop()  # the index of the one row
            raise e.at(".balances") from None
        return SubAlloc(self.id, balances, self.index_map)


class _AllocationWire(_Wire):
    doc = "Allocation"
    assets: Annotated[list[_AssetBytes], Meta(max_length=limits.MAX_ASSETS)]
    balances: _Balances
    locked: Annotated[list[_SubAllocWire], Meta(max_length=limits.MAX_SUBALLOCS)]

    @staticmethod
    def of(a: Allocation) -> _AllocationWire:
        # Plain loops with _asset_out and _row_out inline for valid values: every update and
        # every stored state passes here (codec_micro.py measures it).
        assets: list[Any] = []
        for x in a.assets:
            assets.append(x.encode() if type(x) is Asset else _asset_out(x))
        rows: Any = a.balances
        if type(rows) is tuple:
            out_rows = []
            for row in rows:
                if type(row) is not tuple:
                    out_rows.append(_row_out(row))
                    continue
                out: list[Any] = []
                for v in row:
                    if type(v) is int and 0 <= v < _BALANCE_BOUND:
                        out.append(v.to_bytes((v.bit_length() + 7) >> 3, "big"))
                    else:
                        out.append(_uint_out(v))
                out_rows.append(out)
            rows = out_rows
        else:
            rows = _balances_out(rows)
        locked = [_SubAllocWire.of(s) for s in a.locked] if a.locked else []
        return _AllocationWire(assets, rows, locked)

    def to_model(self) -> Allocation:
        try:
            balances = _balances_in(self.balances)
        except _Bad as e:
            raise e.at(".balances") from None
        locked: tuple[SubAlloc, ...] = ()
        if self.locked:
            try:
                locked = _each(_SubAllocWire.to_model, self.locked)
            except _Bad as e:
                raise e.at(".locked") from None
        assets = tuple([Asset(int.from_bytes(x[:32], "big"), x[32:]) for x in self.assets])
        return Allocation(assets, balances, locked)


class _StateWire(_Wire):
    doc = "State"
    channel_id: _Id
    version: _U64
    allocation: _AllocationWire
    app: _AppId
    data: _AppData
    is_final: bool

    @staticmethod
    def of(s: State) -> _StateWire:
        return _StateWire(
            s.channel_id, s.version, _AllocationWire.of(s.allocation), s.app, s.data, s.is_final
        )

    def to_model(self) -> State:
        try:
            alloc = self.allocation.to_model()
        except _Bad as e:
            raise e.at(".allocation") from None
        return State(self.channel_id, self.version, alloc, self.app, self.data, self.is_final)


class _TransactionWire(_Wire):
    doc = "Transaction"
    state: _StateWire
    sigs: _Sigs

    @staticmethod
    def of(t: Transaction) -> _TransactionWire:
        return _TransactionWire(_StateWire.of(t.state), t.sigs)

    def to_model(self) -> Transaction:
        try:
            state = self.state.to_model()
        except _Bad as e:
            raise e.at(".state") from None
        return Transaction(state, self.sigs)


def _tx_of(t: Transaction | None) -> _TransactionWire | None:
    return None if t is None else _TransactionWire.of(t)


def _tx_in(w: _TransactionWire | None, name: str) -> Transaction | None:
    if w is None:
        return None
    try:
        return w.to_model()
    except _Bad as e:
        raise e.at("." + name) from None


class _ParamsWire(_Wire):
    doc = "Params"
    challenge_duration: _Challenge
    participants: _Parties
    nonce: _UInt256
    app: _AppId
    ledger_channel: bool
    virtual_channel: bool
    aux: _Aux
    backend: _Backend
    id: _Id

    @staticmethod
    def of(p: Params) -> _ParamsWire:
        return _ParamsWire(
            p.challenge_duration,
            [_addr_out(a) for a in p.participants],  # type: ignore[misc]
            _uint_out(p.nonce),  # type: ignore[arg-type]
            p.app,
            p.ledger_channel,
            p.virtual_channel,
            p.aux,
            _text_out(p.backend, MAX_NAME_LEN),  # type: ignore[arg-type]
            p.id,
        )

    def to_model(self) -> Params:
        try:
            nonce = _uint_in(self.nonce)
        except _Bad as e:
            raise e.at(".nonce") from None
        try:
            backend = _text_in(self.backend, MAX_NAME_LEN)
        except _Bad as e:
            raise e.at(".backend") from None
        return _construct(
            Params,
            self.challenge_duration,
            tuple([Address(a) for a in self.participants]),
            nonce,
            self.app,
            self.ledger_channel,
            self.virtual_channel,
            self.aux,
            backend,
            self.id,
        )


def _construct(cls: Callable[..., _T], *args: Any) -> _T:
    # The model's own constructor checks are the last line; its errors become _Bad.
    try:
        return cls(*args)
    except (ValueError, TypeError) as e:
        raise _Bad(f"invalid {getattr(cls, '__qualname__', 'value')}: {e}") from None


class _RecordWire(_Wire):
    doc = "ChannelRecord"
    params: _ParamsWire
    idx: _U16
    peers: _Parties
    phase: Phase
    current: _TransactionWire | None
    staging: _TransactionWire | None
    parent: _Id | None
    version_floor: _U64
    needs_sync: bool

    @staticmethod
    def of(r: ChannelRecord) -> _RecordWire:
        return _RecordWire(
            _ParamsWire.of(r.params),
            r.idx,
            [_addr_out(a) for a in r.peers],  # type: ignore[misc]
            r.phase,
            _tx_of(r.current),
            _tx_of(r.staging),
            r.parent,
            r.version_floor,
            r.needs_sync,
        )

    def to_model(self) -> ChannelRecord:
        try:
            params = self.params.to_model()
        except _Bad as e:
            raise e.at(".params") from None
        return ChannelRecord(
            params,
            self.idx,
            tuple([Address(a) for a in self.peers]),
            self.phase,
            _tx_in(self.current, "current"),
            _tx_in(self.staging, "staging"),
            self.parent,
            self.version_floor,
            self.needs_sync,
        )


# One struct per message, tagged with its type code (the array's first element). ``of`` and
# ``to_model`` convert between the struct and the data-model message.


class _MessageWire(_Wire):
    model: ClassVar[type[Message]]

    @classmethod
    def of(cls, m: Any) -> _MessageWire:
        raise NotImplementedError

    def to_model(self) -> Message:
        raise NotImplementedError


class _PingWire(_MessageWire, tag=Ping.code):
    model = Ping
    created_ns: _U64

    @classmethod
    def of(cls, m: Ping) -> _PingWire:
        return cls(m.created_ns)

    def to_model(self) -> Ping:
        return Ping(self.created_ns)


class _PongWire(_MessageWire, tag=Pong.code):
    model = Pong
    ping_created_ns: _U64
    created_ns: _U64

    @classmethod
    def of(cls, m: Pong) -> _PongWire:
        return cls(m.ping_created_ns, m.created_ns)

    def to_model(self) -> Pong:
        return Pong(self.ping_created_ns, self.created_ns)


class _ShutdownWire(_MessageWire, tag=Shutdown.code):
    model = Shutdown
    reason: _Reason

    @classmethod
    def of(cls, m: Shutdown) -> _ShutdownWire:
        return cls(_text_out(m.reason, limits.MAX_REASON))  # type: ignore[arg-type]

    def to_model(self) -> Shutdown:
        return Shutdown(_field(_text_in, "reason", self.reason, limits.MAX_REASON))


class _AuthHelloWire(_MessageWire, tag=AuthHello.code):
    model = AuthHello
    wire_version: _U16
    sender: _Addr
    recipient: _Addr
    challenge: _Id

    @classmethod
    def of(cls, m: AuthHello) -> _AuthHelloWire:
        return cls(m.wire_version, _addr_out(m.sender), _addr_out(m.recipient), m.challenge)  # type: ignore[arg-type]

    def to_model(self) -> AuthHello:
        return AuthHello(
            self.wire_version, Address(self.sender), Address(self.recipient), self.challenge
        )


class _AuthReplyWire(_MessageWire, tag=AuthReply.code):
    model = AuthReply
    wire_version: _U16
    sender: _Addr
    recipient: _Addr
    challenge: _Id
    sig: _Sig

    @classmethod
    def of(cls, m: AuthReply) -> _AuthReplyWire:
        return cls(
            m.wire_version,
            _addr_out(m.sender),  # type: ignore[arg-type]
            _addr_out(m.recipient),  # type: ignore[arg-type]
            m.challenge,
            m.sig,
        )

    def to_model(self) -> AuthReply:
        return AuthReply(
            self.wire_version,
            Address(self.sender),
            Address(self.recipient),
            self.challenge,
            self.sig,
        )


class _AuthConfirmWire(_MessageWire, tag=AuthConfirm.code):
    model = AuthConfirm
    sig: _Sig

    @classmethod
    def of(cls, m: AuthConfirm) -> _AuthConfirmWire:
        return cls(m.sig)

    def to_model(self) -> AuthConfirm:
        return AuthConfirm(self.sig)


class _LedgerChannelProposalWire(_MessageWire, tag=LedgerChannelProposal.code):
    model = LedgerChannelProposal
    proposal_id: _Id
    backend: _Backend
    challenge_duration: _Challenge
    nonce_share: _Id
    app: _AppId
    init_data: _AppData
    init_alloc: _AllocationWire
    funding_agreement: _Balances | None
    aux: _Aux
    participant: _Addr
    peers: _Parties

    @classmethod
    def of(cls, m: LedgerChannelProposal) -> _LedgerChannelProposalWire:
        fa = m.funding_agreement
        return cls(
            m.proposal_id,
            _text_out(m.backend, MAX_NAME_LEN),  # type: ignore[arg-type]
            m.challenge_duration,
            m.nonce_share,
            m.app,
            m.init_data,
            _AllocationWire.of(m.init_alloc),
            None if fa is None else _balances_out(fa),  # type: ignore[arg-type]
            m.aux,
            _addr_out(m.participant),  # type: ignore[arg-type]
            [_addr_out(a) for a in m.peers],  # type: ignore[misc]
        )

    def to_model(self) -> LedgerChannelProposal:
        fa = self.funding_agreement
        return LedgerChannelProposal(
            self.proposal_id,
            _field(_text_in, "backend", self.backend, MAX_NAME_LEN),
            self.challenge_duration,
            self.nonce_share,
            self.app,
            self.init_data,
            _field(_AllocationWire.to_model, "init_alloc", self.init_alloc),
            None if fa is None else _field(_balances_in, "funding_agreement", fa),
            self.aux,
            Address(self.participant),
            tuple([Address(a) for a in self.peers]),
        )


class _LedgerChannelProposalAccWire(_MessageWire, tag=LedgerChannelProposalAcc.code):
    model = LedgerChannelProposalAcc
    proposal_id: _Id
    nonce_share: _Id
    participant: _Addr
    init_sig: _Sig

    @classmethod
    def of(cls, m: LedgerChannelProposalAcc) -> _LedgerChannelProposalAccWire:
        return cls(m.proposal_id, m.nonce_share, _addr_out(m.participant), m.init_sig)  # type: ignore[arg-type]

    def to_model(self) -> LedgerChannelProposalAcc:
        return LedgerChannelProposalAcc(
            self.proposal_id, self.nonce_share, Address(self.participant), self.init_sig
        )


class _SubChannelProposalWire(_MessageWire, tag=SubChannelProposal.code):
    model = SubChannelProposal
    proposal_id: _Id
    backend: _Backend
    challenge_duration: _Challenge
    nonce_share: _Id
    app: _AppId
    init_data: _AppData
    init_alloc: _AllocationWire
    aux: _Aux
    parent: _Id

    @classmethod
    def of(cls, m: SubChannelProposal) -> _SubChannelProposalWire:
        return cls(
            m.proposal_id,
            _text_out(m.backend, MAX_NAME_LEN),  # type: ignore[arg-type]
            m.challenge_duration,
            m.nonce_share,
            m.app,
            m.init_data,
            _AllocationWire.of(m.init_alloc),
            m.aux,
            m.parent,
        )

    def to_model(self) -> SubChannelProposal:
        return SubChannelProposal(
            self.proposal_id,
            _field(_text_in, "backend", self.backend, MAX_NAME_LEN),
            self.challenge_duration,
            self.nonce_share,
            self.app,
            self.init_data,
            _field(_AllocationWire.to_model, "init_alloc", self.init_alloc),
            self.aux,
            self.parent,
        )


class _SubChannelProposalAccWire(_MessageWire, tag=SubChannelProposalAcc.code):
    model = SubChannelProposalAcc
    proposal_id: _Id
    nonce_share: _Id
    init_sig: _Sig

    @classmethod
    def of(cls, m: SubChannelProposalAcc) -> _SubChannelProposalAccWire:
        return cls(m.proposal_id, m.nonce_share, m.init_sig)

    def to_model(self) -> SubChannelProposalAcc:
        return SubChannelProposalAcc(self.proposal_id, self.nonce_share, self.init_sig)


class _ChannelProposalRejWire(_MessageWire, tag=ChannelProposalRej.code):
    model = ChannelProposalRej
    proposal_id: _Id
    reject_code: _U8
    reason: _Reason

    @classmethod
    def of(cls, m: ChannelProposalRej) -> _ChannelProposalRejWire:
        return cls(m.proposal_id, m.reject_code, _text_out(m.reason, limits.MAX_REASON))  # type: ignore[arg-type]

    def to_model(self) -> ChannelProposalRej:
        reason = _field(_text_in, "reason", self.reason, limits.MAX_REASON)
        return ChannelProposalRej(self.proposal_id, self.reject_code, reason)


class _ChannelUpdateWire(_MessageWire, tag=ChannelUpdate.code):
    model = ChannelUpdate
    state: _StateWire
    actor_idx: _U16
    sig: _Sig

    @classmethod
    def of(cls, m: ChannelUpdate) -> _ChannelUpdateWire:
        return cls(_StateWire.of(m.state), m.actor_idx, m.sig)

    def to_model(self) -> ChannelUpdate:
        state = _field(_StateWire.to_model, "state", self.state)
        return ChannelUpdate(state, self.actor_idx, self.sig)


class _ChannelUpdateAccWire(_MessageWire, tag=ChannelUpdateAcc.code):
    model = ChannelUpdateAcc
    channel_id: _Id
    version: _U64
    sig: _Sig

    @classmethod
    def of(cls, m: ChannelUpdateAcc) -> _ChannelUpdateAccWire:
        return cls(m.channel_id, m.version, m.sig)

    def to_model(self) -> ChannelUpdateAcc:
        return ChannelUpdateAcc(self.channel_id, self.version, self.sig)


class _ChannelUpdateRejWire(_MessageWire, tag=ChannelUpdateRej.code):
    model = ChannelUpdateRej
    channel_id: _Id
    version: _U64
    reject_code: _U8
    reason: _Reason

    @classmethod
    def of(cls, m: ChannelUpdateRej) -> _ChannelUpdateRejWire:
        reason = _text_out(m.reason, limits.MAX_REASON)
        return cls(m.channel_id, m.version, m.reject_code, reason)  # type: ignore[arg-type]

    def to_model(self) -> ChannelUpdateRej:
        reason = _field(_text_in, "reason", self.reason, limits.MAX_REASON)
        return ChannelUpdateRej(self.channel_id, self.version, self.reject_code, reason)


class _ChannelSyncWire(_MessageWire, tag=ChannelSync.code):
    model = ChannelSync
    channel_id: _Id
    phase: _U8
    current: _TransactionWire | None
    pending: _TransactionWire | None
    version_floor: _U64
    reply: bool

    @classmethod
    def of(cls, m: ChannelSync) -> _ChannelSyncWire:
        return cls(
            m.channel_id,
            m.phase,
            _tx_of(m.current),
            _tx_of(m.pending),
            m.version_floor,
            m.reply,
        )

    def to_model(self) -> ChannelSync:
        return ChannelSync(
            self.channel_id,
            self.phase,
            _tx_in(self.current, "current"),
            _tx_in(self.pending, "pending"),
            self.version_floor,
            self.reply,
        )


def _field(fn: Callable[..., _T], name: str, *args: Any) -> _T:
    try:
        return fn(*args)
    except _Bad as e:
        raise e.at("." + name) from None


_AnyMessage = (
    _PingWire
    | _PongWire
    | _ShutdownWire
    | _AuthHelloWire
    | _AuthReplyWire
    | _AuthConfirmWire
    | _LedgerChannelProposalWire
    | _LedgerChannelProposalAccWire
    | _SubChannelProposalWire
    | _SubChannelProposalAccWire
    | _ChannelProposalRejWire
    | _ChannelUpdateWire
    | _ChannelUpdateAccWire
    | _ChannelUpdateRejWire
    | _ChannelSyncWire
)
_MESSAGE_WIRES: Final[tuple[type[_MessageWire], ...]] = get_args(_AnyMessage)
_WIRE_OF: Final = MappingProxyType({w.model: w for w in _MESSAGE_WIRES})
_WIRE_OF_CODE: Final = MappingProxyType({w.model.code: w for w in _MESSAGE_WIRES})


class _EnvelopeWire(_Wire):
    doc = "envelope"
    sender: _Addr
    recipient: _Addr
    msg: _AnyMessage


# msgspec's Encoder/Decoder hold only their (immutable) configuration; per-call state lives on
# the C stack, so one shared instance of each is safe across calls, tasks and threads.
_ENCODER: Final = msgspec.msgpack.Encoder()
_MESSAGE_DECODER: Final = msgspec.msgpack.Decoder(_AnyMessage)
_ENVELOPE_DECODER: Final = msgspec.msgpack.Decoder(_EnvelopeWire)
_VALUE_DECODERS: Final[MappingProxyType[type[_Wire], msgspec.msgpack.Decoder[Any]]] = (
    MappingProxyType(
        {w: msgspec.msgpack.Decoder(w) for w in (_StateWire, _TransactionWire, _RecordWire)}
    )
)
_VALUES: Final[tuple[type[_Wire], ...]] = (
    _AllocationWire,
    _SubAllocWire,
    _StateWire,
    _TransactionWire,
    _ParamsWire,
    _RecordWire,
)
# The schema as msgspec sees it: the field names of error paths and the docs' table.
_TRANSACTION_DECODER: Final = _VALUE_DECODERS[_TransactionWire]
_INFO: Final[MappingProxyType[type[_Wire], mi.Type]] = MappingProxyType(
    dict(
        zip(
            (*_MESSAGE_WIRES, _EnvelopeWire, *_VALUES),
            mi.multi_type_info((*_MESSAGE_WIRES, _EnvelopeWire, *_VALUES)),
            strict=True,
        )
    )
)


# --- errors: msgspec's paths in field names -------------------------------------------------

_AT: Final = re.compile(r" - at `\$((?:\[\d+\])*)`$")


def _split(err: msgspec.ValidationError) -> tuple[list[int], str]:
    """msgspec's ``"reason - at `$[1][0]`"`` as ``([1, 0], "reason")``."""
    text = str(err)
    m = _AT.search(text)
    if m is None:
        return [], text
    return [int(i) for i in re.findall(r"\d+", m.group(1))], text[: m.start()]


def _field_path(info: mi.Type, idx: Sequence[int]) -> str:
    """Array indices under a struct type as field names: ``[1][2][0]`` → ``state.allocation[0]``."""
    out = ""
    for i in idx:
        while isinstance(info, (mi.UnionType, mi.Metadata)):
            if isinstance(info, mi.Metadata):
                info = info.type
            else:
                info = next(t for t in info.types if not isinstance(t, mi.NoneType))
        if isinstance(info, mi.StructType):
            field = info.fields[i - (info.tag is not None)]  # a tag is element 0
            out += "." + field.name
            info = field.type
        else:
            out += f"[{i}]"
            info = getattr(info, "item_type", info)
    return out.lstrip(".")


_INT_WIDTHS: Final = MappingProxyType(
    {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
)
_BIN_WIDTHS: Final = MappingProxyType({0xC4: 1, 0xC5: 2, 0xC6: 4})


def _after_array_header(buf: memoryview, pos: int) -> int:
    b = buf[pos]
    if 0x90 <= b <= 0x9F:
        return pos + 1
    if b in (0xDC, 0xDD):
        return pos + (3 if b == 0xDC else 5)
    raise IndexError("not an array")


def _peek_code(buf: memoryview, pos: int) -> int | None:
    """The integer starting the array at ``pos`` (a message's type code), if there is one.

    Only the error path reads the bytes by hand, to name the message whose fields msgspec refused.
    """
    try:
        pos = _after_array_header(buf, pos)
        b = buf[pos]
        if b < 0x80 or b >= 0xE0:  # positive and negative fixints
            return b if b < 0x80 else b - 0x100
        width = _INT_WIDTHS[b]
        return int.from_bytes(buf[pos + 1 : pos + 1 + width], "big", signed=b >= 0xD0)
    except (IndexError, KeyError):
        return None


def _envelope_message_offset(buf: memoryview) -> int:
    """Where an envelope's message starts (its addresses passed the schema, so they are bins)."""
    try:
        pos = _after_array_header(buf, 0)
        for _ in range(2):
            width = _BIN_WIDTHS[buf[pos]]
            pos += 1 + width + int.from_bytes(buf[pos + 1 : pos + 1 + width], "big")
    except (IndexError, KeyError):
        return len(buf)
    return pos


def _name(w: type[_MessageWire]) -> str:
    return f"{w.model.__name__} (code {w.model.code})"


def _message_problem(buf: memoryview, pos: int, idx: list[int], reason: str) -> str:
    """The text of a message the schema refused (``idx``: msgspec's path from the message)."""
    code = _peek_code(buf, pos)
    if idx[:1] == [0]:
        if code is not None:
            return f"unknown message type code {code}"
        m = re.search(r"got `(\w+)`", reason)  # never echo the value itself
        return f"unknown message type code of type {m.group(1) if m else 'unknown'}"
    w = _WIRE_OF_CODE.get(code) if code is not None else None
    if w is None:
        return f"a message is an array [type_code, field, ...]: {reason}"
    if not idx:
        return f"malformed {_name(w)}: wrong number of fields: {reason}"
    return f"malformed {_name(w)}: {_field_path(_INFO[w], idx)}: {reason}"


def _find_unencodable(value: object, path: str) -> tuple[str, str] | None:
    if isinstance(value, _Invalid):
        return path.lstrip(".") or "<value>", value.reason
    if isinstance(value, Struct):
        items = [("." + n, getattr(value, n)) for n in value.__struct_fields__]
    elif isinstance(value, (list, tuple)):
        items = [(f"[{i}]", x) for i, x in enumerate(value)]
    else:
        try:
            _ENCODER.encode(value)
        except (TypeError, ValueError, OverflowError) as e:
            return path.lstrip(".") or "<value>", str(e)
        return None
    for part, x in items:
        found = _find_unencodable(x, path + part)
        if found is not None:
            return found
    return None


def _refusal(what: str, info: mi.Type, wire: _Wire | None, err: Exception) -> str:
    """Why encoding failed: building the struct (``wire`` is None), encoding it, or its check."""
    if isinstance(err, msgspec.ValidationError):
        idx, reason = _split(err)
        return f"cannot encode {what}: {_field_path(info, idx) or '<value>'}: {reason}"
    found = None if wire is None else _find_unencodable(wire, "")
    path, reason = found or ("<value>", str(err))
    return f"cannot encode {what}: {path}: {reason}"


# What building, encoding or checking a struct raises for a value that has no wire form.
_REFUSED: Final = (AttributeError, TypeError, ValueError, OverflowError, msgspec.ValidationError)


def _message_model(wire: _MessageWire) -> Message:
    try:
        return wire.to_model()
    except _Bad as e:
        raise MalformedMessageError(
            f"malformed {_name(type(wire))}: {e.path()}: {e.reason}"
        ) from None


# --- framing --------------------------------------------------------------------------------


def _payload(data: bytes | bytearray | memoryview, max_size: int, what: str) -> memoryview:
    """Size check and version check, in this order; the MessagePack part, without a copy."""
    if not 0 < max_size <= MAX_FRAME_LIMIT:
        raise ValueError(f"max_size must be in 1..{MAX_FRAME_LIMIT}, got {max_size}")
    view = memoryview(data)
    if view.nbytes > max_size:
        raise FrameTooLargeError(view.nbytes, max_size)
    if view.nbytes == 0:
        raise MalformedMessageError(f"empty {what} encoding")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if view[0] != WIRE_VERSION:
        raise UnknownWireVersionError(view[0])
    return view[1:]


_V = TypeVar("_V", _StateWire, _TransactionWire, _RecordWire)


def _encode_value(w: type[_V], value: Any) -> bytes:
    wire = None
    try:
        wire = w.of(value)
        data = _ENCODER.encode(wire)
        _VALUE_DECODERS[w].decode(data)  # the check: what encodes, decodes
    except _REFUSED as e:
        raise MalformedMessageError(_refusal(w.doc, _INFO[w], wire, e)) from None
    return _HEADER + data


def _decode_value(w: type[_V], data: bytes | bytearray | memoryview, max_size: int) -> _V:
    body = _payload(data, max_size, w.doc)
    try:
        wire: _V = _VALUE_DECODERS[w].decode(body)
    except msgspec.ValidationError as e:
        idx, reason = _split(e)
        path = _field_path(_INFO[w], idx)
        raise MalformedMessageError(
            f"malformed {w.doc}: {path + ': ' if path else ''}{reason}"
        ) from None
    except msgspec.DecodeError as e:
        raise MalformedMessageError(f"undecodable {w.doc}: {e}") from None
    return wire


def _value_model(wire: _StateWire | _TransactionWire | _RecordWire) -> Any:
    try:
        return wire.to_model()
    except _Bad as e:
        raise MalformedMessageError(f"malformed {wire.doc}: {e.path()}: {e.reason}") from None


# --- public API -----------------------------------------------------------------------------


def encode(msg: Message) -> bytes:
    """Encode one wire message.

    Raises:
        MalformedMessageError: ``msg`` is not a known message type or a field breaks a limit
            (the message would be refused by the peer).
    """
    w = _WIRE_OF.get(type(msg))
    if w is None:
        return _HEADER + _PLUGIN_MESSAGES.encode(msg)
    wire = None
    try:
        wire = w.of(msg)
        data = _ENCODER.encode(wire)
        _MESSAGE_DECODER.decode(data)  # the check: what encodes, decodes
    except _REFUSED as e:
        raise MalformedMessageError(_refusal(_name(w), _INFO[w], wire, e)) from None
    return _HEADER + data


def decode(data: bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_SIZE) -> Message:
    """Decode one wire message.

    Args:
        data: an encoding produced by :func:`encode`.
        max_size: refuse larger input before parsing it (at most :data:`MAX_FRAME_LIMIT`).

    Raises:
        FrameTooLargeError: ``data`` is longer than ``max_size``.
        UnknownWireVersionError: the version byte is not :data:`WIRE_VERSION`.
        MalformedMessageError: anything else wrong; the text names the type code and field.
    """
    body = _payload(data, max_size, "message")
    try:
        wire = _MESSAGE_DECODER.decode(body)
    except msgspec.ValidationError as e:
        idx, reason = _split(e)
        if idx[:1] == [0] and (plugin := _PLUGIN_MESSAGES.decode(body, 0)) is not None:
            return plugin
        raise MalformedMessageError(_message_problem(body, 0, idx, reason)) from None
    except msgspec.DecodeError as e:
        raise MalformedMessageError(f"undecodable message: {e}") from None
    return _message_model(wire)


def encode_envelope(env: Envelope) -> bytes:
    """Encode an envelope: ``[sender, recipient, [code, fields...]]``.

    Raises:
        MalformedMessageError: as :func:`encode`, or the addresses are not :class:`Address`.
    """
    if not isinstance(env, Envelope):
        raise MalformedMessageError(f"cannot encode {_tname(env)} as an envelope")
    w = _WIRE_OF.get(type(env.msg))
    if w is None:
        return _HEADER + _PLUGIN_MESSAGES.encode_envelope(env)
    wire = None
    try:
        wire = _EnvelopeWire(_addr_out(env.sender), _addr_out(env.recipient), w.of(env.msg))  # type: ignore[arg-type]
        data = _ENCODER.encode(wire)
        _ENVELOPE_DECODER.decode(data)
    except _REFUSED as e:
        what = f"envelope of {_name(w)}"
        if isinstance(e, msgspec.ValidationError):
            idx, reason = _split(e)
            if idx[:1] == [2]:  # in the message: name its fields, not the union's
                path = _field_path(_INFO[w], idx[1:])
                raise MalformedMessageError(f"cannot encode {what}: msg.{path}: {reason}") from None
        raise MalformedMessageError(_refusal(what, _INFO[_EnvelopeWire], wire, e)) from None
    return _HEADER + data


def decode_envelope(
    data: bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_SIZE
) -> Envelope:
    """Decode an envelope (errors as :func:`decode`)."""
    body = _payload(data, max_size, "envelope")
    try:
        wire = _ENVELOPE_DECODER.decode(body)
    except msgspec.ValidationError as e:
        idx, reason = _split(e)
        if not idx:
            problem = f"an envelope is an array [sender, recipient, message]: {reason}"
        elif idx[0] < 2:
            problem = f"malformed envelope address ({('sender', 'recipient')[idx[0]]}): {reason}"
        else:
            at = _envelope_message_offset(body)
            if idx[1:2] == [0] and (plugin := _PLUGIN_MESSAGES.decode(body, at)) is not None:
                return _PLUGIN_MESSAGES.envelope(body, plugin)
            problem = _message_problem(body, at, idx[1:], reason)
        raise MalformedMessageError(problem) from None
    except msgspec.DecodeError as e:
        raise MalformedMessageError(f"undecodable envelope: {e}") from None
    return Envelope(Address(wire.sender), Address(wire.recipient), _message_model(wire.msg))


def encode_state(state: State) -> bytes:
    """Encode a :class:`State` (for persistence; same rules as the wire)."""
    return _encode_value(_StateWire, state)


def decode_state(data: bytes | bytearray | memoryview, *, max_size: int = MAX_FRAME_LIMIT) -> State:
    """Inverse of :func:`encode_state` (raises :class:`MalformedMessageError`)."""
    state: State = _value_model(_decode_value(_StateWire, data, max_size))
    return state


def encode_transaction(tx: Transaction) -> bytes:
    """Encode a :class:`Transaction`: ``[state, [sig or nil, ...]]``."""
    wire = None
    try:  # _encode_value inline: three calls per update when persisting
        wire = _TransactionWire.of(tx)
        data = _ENCODER.encode(wire)
        _TRANSACTION_DECODER.decode(data)
    except _REFUSED as e:
        raise MalformedMessageError(
            _refusal("Transaction", _INFO[_TransactionWire], wire, e)
        ) from None
    return _HEADER + data


def decode_transaction(
    data: bytes | bytearray | memoryview, *, max_size: int = MAX_FRAME_LIMIT
) -> Transaction:
    """Inverse of :func:`encode_transaction` (raises :class:`MalformedMessageError`)."""
    tx: Transaction = _value_model(_decode_value(_TransactionWire, data, max_size))
    return tx


def encode_record(record: ChannelRecord) -> bytes:
    """Encode a :class:`ChannelRecord` (params with their ``id`` and ``backend``; phase as int)."""
    return _encode_value(_RecordWire, record)


def decode_record(
    data: bytes | bytearray | memoryview, *, max_size: int = MAX_FRAME_LIMIT
) -> ChannelRecord:
    """Inverse of :func:`encode_record` (raises :class:`MalformedMessageError`)."""
    record: ChannelRecord = _value_model(_decode_value(_RecordWire, data, max_size))
    return record


# --- plugin messages (type codes 128-255) ---------------------------------------------------
# The core's messages are one static union; a plugin's messages (e.g. the watchtower's) are
# registered at run time with :func:`register_messages` and decoded when the static union
# does not know a frame's type code. The same strict rules apply: typed structs with limits,
# MalformedMessageError naming the message and field, the size limit before parsing.

PLUGIN_CODES: Final = range(128, 256)
"""The type codes plugins may use for their messages."""

WireU8 = _U8
WireU64 = _U64
WireId = _Id
WireSig = _Sig
WireAddr = _Addr
WireReason = _Reason
WireParams = _ParamsWire
WireTransaction = _TransactionWire
"""Field types with their limits, for plugin message structs (a str field's byte length is
checked with :meth:`PluginMessageWire.text_in`)."""


class PluginMessageWire(_MessageWire):
    """The wire struct of a plugin-defined message.

    Subclass it with ``tag=CODE`` (``CODE`` in :data:`PLUGIN_CODES`), set ``model`` to the
    message class (a :class:`~perun_core.wire.messages.Message` with the same ``code``),
    declare the fields in wire order with limit-carrying types (``WireId``, ``WireU64``, the
    nested ``WireTransaction`` and ``WireParams`` structs, ...), implement
    ``of(message)`` and ``to_model()``, and pass the class to :func:`register_messages`.
    ``to_model`` may raise ``ValueError`` for a rule the types cannot express; the peer's
    frame is then refused with :class:`~perun_core.errors.MalformedMessageError`.
    """

    @staticmethod
    def tx_of(tx: Transaction) -> _TransactionWire:
        """The wire form of a transaction."""
        return _TransactionWire.of(tx)

    @staticmethod
    def tx_in(w: _TransactionWire, name: str) -> Transaction:
        """A decoded transaction field as the model (errors name ``name``)."""
        tx = _tx_in(w, name)
        assert tx is not None
        return tx

    @staticmethod
    def params_of(p: Params) -> _ParamsWire:
        """The wire form of channel params."""
        return _ParamsWire.of(p)

    @staticmethod
    def params_in(w: _ParamsWire, name: str) -> Params:
        """A decoded params field as the model (errors name ``name``)."""
        return _field(_ParamsWire.to_model, name, w)

    @staticmethod
    def text_in(s: str, name: str, max_bytes: int = limits.MAX_REASON) -> str:
        """A decoded text field, checked for its UTF-8 byte length."""
        return _field(_text_in, name, s, max_bytes)

    @staticmethod
    def text_out(s: str, max_bytes: int = limits.MAX_REASON) -> Any:
        """A text field for encoding (refused on encoding when too long)."""
        return _text_out(s, max_bytes)

    @staticmethod
    def addr_out(a: Address) -> Any:
        """An address field for encoding."""
        return _addr_out(a)


class _EnvelopeHeadWire(_Wire):
    doc = "envelope"
    sender: _Addr
    recipient: _Addr
    msg: msgspec.Raw  # a plugin message its own decoder has checked already


_ENVELOPE_HEAD_DECODER: Final = msgspec.msgpack.Decoder(_EnvelopeHeadWire)


class _PluginMessages:
    """The registered plugin message structs, by type code and by model class."""

    def __init__(self) -> None:
        self._by_code: dict[int, tuple[type[PluginMessageWire], msgspec.msgpack.Decoder[Any]]] = {}
        self._by_model: dict[type[Message], type[PluginMessageWire]] = {}
        self._info: dict[type[PluginMessageWire], mi.Type] = {}

    def register(self, w: type[PluginMessageWire]) -> None:
        if not (isinstance(w, type) and issubclass(w, PluginMessageWire)):
            raise TypeError(f"{w!r} is not a PluginMessageWire subclass")
        code = w.__struct_config__.tag
        if not isinstance(code, int) or code not in PLUGIN_CODES:
            raise ValueError(f"{w.__name__}: plugin message codes are 128..255, got {code!r}")
        if getattr(w.model, "code", None) != code:
            raise ValueError(f"{w.__name__}: model {w.model.__name__} must have code {code}")
        known = self._by_code.get(code)
        if known is not None:
            if known[0] is w:
                return
            raise PluginConflictError(
                f"message code {code} is registered already by {known[0].model.__name__}"
            )
        self._by_code[code] = (w, msgspec.msgpack.Decoder(w))
        self._by_model[w.model] = w
        self._info[w] = mi.type_info(w)

    def wires(self) -> tuple[type[PluginMessageWire], ...]:
        return tuple(w for w, _ in sorted(self._by_code.values(), key=lambda e: e[0].model.code))

    def encode(self, msg: Message) -> bytes:
        w = self._by_model.get(type(msg))
        if w is None:
            raise MalformedMessageError(f"cannot encode {_tname(msg)}: not a wire message")
        wire = None
        try:
            wire = w.of(msg)
            data = _ENCODER.encode(wire)
            self._by_code[msg.code][1].decode(data)  # the check: what encodes, decodes
        except _REFUSED as e:
            raise MalformedMessageError(_refusal(_name(w), self._info[w], wire, e)) from None
        return data

    def encode_envelope(self, env: Envelope) -> bytes:
        msg = msgspec.Raw(self.encode(env.msg))
        try:
            data = _ENCODER.encode([_addr_out(env.sender), _addr_out(env.recipient), msg])
            _ENVELOPE_HEAD_DECODER.decode(data)
        except _REFUSED as e:
            raise MalformedMessageError(f"cannot encode an envelope's addresses: {e}") from None
        return data

    def decode(self, body: memoryview, at: int) -> Message | None:
        """The plugin message starting at ``at``; ``None`` if its code is not registered."""
        code = _peek_code(body, at)
        entry = self._by_code.get(code) if code is not None else None
        if entry is None:
            return None
        w, decoder = entry
        try:
            wire = decoder.decode(body[at:])
        except msgspec.ValidationError as e:
            idx, reason = _split(e)
            if not idx:
                raise MalformedMessageError(
                    f"malformed {_name(w)}: wrong number of fields: {reason}"
                ) from None
            path = _field_path(self._info[w], idx)
            raise MalformedMessageError(f"malformed {_name(w)}: {path}: {reason}") from None
        except msgspec.DecodeError as e:
            raise MalformedMessageError(f"undecodable {_name(w)}: {e}") from None
        try:
            return _message_model(wire)
        except (ValueError, TypeError) as e:
            if isinstance(e, MalformedMessageError):
                raise
            raise MalformedMessageError(f"malformed {_name(w)}: {e}") from None

    def envelope(self, body: memoryview, msg: Message) -> Envelope:
        head = _ENVELOPE_HEAD_DECODER.decode(body)
        return Envelope(Address(head.sender), Address(head.recipient), msg)

    def table(self) -> str:
        lines = ["| code | message | fields after the code, in order |", "|---|---|---|"]
        for w in self.wires():
            info = self._info[w]
            assert isinstance(info, mi.StructType)
            fields = ", ".join(f"`{f.name}: {_doc(f.type)}`" for f in info.fields)
            lines.append(f"| {w.model.code} | {w.model.__name__} | {fields} |")
        return "\n".join(lines) + "\n"


_PLUGIN_MESSAGES: Final = _PluginMessages()  # the one registry of plugin messages (append-only)


def register_messages(*wires: type[PluginMessageWire]) -> None:
    """Make plugin messages encodable and decodable in this process (idempotent).

    Args:
        wires: :class:`PluginMessageWire` subclasses, each tagged with its type code.

    Raises:
        ValueError: a code outside :data:`PLUGIN_CODES`, or a model with another code.
        PluginConflictError: another struct holds the code already.
    """
    for w in wires:
        _PLUGIN_MESSAGES.register(w)


def plugin_message_table() -> str:
    """The registered plugin messages as a Markdown table (for their docs)."""
    return _PLUGIN_MESSAGES.table()


# --- the docs' table ------------------------------------------------------------------------


def _doc(info: mi.Type) -> str:
    """The docs' notation of one field type, derived from its msgspec constraints."""
    if isinstance(info, mi.Metadata):
        doc = (info.extra or {}).get("doc")
        return str(doc).format(getattr(info.type, "max_length", "")) if doc else _doc(info.type)
    if isinstance(info, mi.UnionType):  # only ``T | None`` occurs
        (inner,) = (t for t in info.types if not isinstance(t, mi.NoneType))
        return _doc(inner) + "?"
    if isinstance(info, mi.StructType):
        return str(info.cls.doc) if hasattr(info.cls, "doc") else info.cls.__name__
    if isinstance(info, (mi.ListType, mi.VarTupleType)):
        return f"[{_doc(info.item_type)}; ≤{info.max_length}]"
    if isinstance(info, mi.IntType):
        if info.le is None:
            return "u64"
        return f"u{(info.le + 1).bit_length() - 1}" + ("≥1" if info.ge == 1 else "")
    if isinstance(info, mi.BytesType):
        lo, hi = info.min_length or 0, info.max_length
        if lo == hi:
            return f"bytes{hi}"
        return f"bytes≤{hi}" if lo == 0 else f"bytes{lo}..{hi}"
    if isinstance(info, mi.BoolType):
        return "bool"
    if isinstance(info, mi.EnumType):
        return info.cls.__name__.lower()
    raise TypeError(f"no notation for {info!r}")


def _field_list(w: type[_Wire]) -> str:
    info = _INFO[w]
    assert isinstance(info, mi.StructType)
    return ", ".join(f"`{f.name}: {_doc(f.type)}`" for f in info.fields)


def wire_format_table() -> str:
    """The message and value layouts as Markdown tables (``docs/wire-format.md`` embeds them)."""
    lines = ["| code | message | fields after the code, in order |", "|---|---|---|"]
    for cls in MESSAGE_TYPES:
        lines.append(f"| {cls.code} | {cls.__name__} | {_field_list(_WIRE_OF[cls])} |")
    lines += ["", "| value | fields, in order |", "|---|---|"]
    lines += [f"| {w.doc} | {_field_list(w)} |" for w in _VALUES]
    return "\n".join(lines) + "\n"


__all__ = [
    "DEFAULT_MAX_SIZE",
    "MAX_FRAME_LIMIT",
    "MAX_NAME_LEN",
    "MAX_SIG_LEN",
    "PLUGIN_CODES",
    "PluginMessageWire",
    "UnknownWireVersionError",
    "WireAddr",
    "WireId",
    "WireParams",
    "WireReason",
    "WireSig",
    "WireTransaction",
    "WireU8",
    "WireU64",
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
    "plugin_message_table",
    "register_messages",
    "wire_format_table",
]
