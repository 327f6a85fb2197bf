"""The binary wire codec (the format is documented in ``docs/wire-format.md``).

Every encoding is one header byte, the codec version
(:data:`~perun_core.wire.messages.WIRE_VERSION`), followed by one MessagePack value: an array
with a fixed field order, never a map. A message is ``[type_code, field, ...]``; an envelope is
``[sender, recipient, message]``. Integers that may exceed 64 bits (balances, nonces) are
big-endian byte strings without leading zero bytes (zero is the empty string); addresses, assets
(:meth:`Asset.encode`), AppIDs, IDs and signatures are byte strings.

Decoding is strict: anything but a well-formed value within the data-model limits raises
:class:`~perun_core.errors.MalformedMessageError` naming the type code and the field, and input
above the size limit is refused before it is parsed (:class:`FrameTooLargeError`). Encoding runs
the same checks, so ``decode(encode(m)) == m`` for every message that encodes at all.

The same encodings serve persistence (:func:`encode_state`, :func:`encode_transaction`,
:func:`encode_record`), so a stored record carries the version byte too.

One schema table drives both directions: each field is a ``(name, kind)`` pair, and a kind knows
how to check and convert one value. :func:`wire_format_table` renders the table for the docs.
States, allocations and transactions, which every update encodes several times (wire and
persistence), have a fast path for their common shape that makes the same checks inline; any
value it does not take goes through the schema, which also reports the error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, Final

import msgspec

from perun_core.channel import limits
from perun_core.channel.allocation import Allocation, SubAlloc
from perun_core.channel.params import Params
from perun_core.channel.phase import Phase
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Address, Asset
from perun_core.errors import (
    FrameTooLargeError,
    MalformedMessageError,
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
)

_SAFE_RECURSION_LIMIT = 2_000
"""Recursion limit while decoding: deep enough for every valid message, shallow enough for
the C stack."""

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

_BOUND_U8: Final = 1 << 8
_BOUND_U16: Final = 1 << 16
_BOUND_U64: Final = 1 << 64

_HEADER: Final = bytes([WIRE_VERSION])

# msgspec's Encoder/Decoder hold only their (immutable) configuration; per-call state lives on
# the C stack, so one shared instance of each is safe across calls, tasks and threads. Creating
# them once saves msgspec's per-call setup; it is not mutable module state.
_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder()


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


# --- field kinds ----------------------------------------------------------------------------


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


def _tname(v: object) -> str:
    return type(v).__name__


class _Kind:
    """How one field is checked, encoded into a msgpack-ready value and decoded back."""

    __slots__ = ("doc",)

    def __init__(self, doc: str) -> None:
        self.doc = doc

    def enc(self, v: Any) -> Any:
        raise NotImplementedError

    def dec(self, v: Any) -> Any:
        raise NotImplementedError


class _UInt(_Kind):
    """A native msgpack integer in ``[lo, hi)``."""

    __slots__ = ("hi", "lo")

    def __init__(self, doc: str, hi: int, lo: int = 0) -> None:
        super().__init__(doc)
        self.lo, self.hi = lo, hi

    def enc(self, v: Any) -> Any:
        # IntEnum values (e.g. a Phase passed as ChannelSync.phase) encode as their integer.
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad(f"expected an integer, got {_tname(v)}")
        if not self.lo <= v < self.hi:
            raise _Bad(f"integer {v} not in [{self.lo}, {self.hi})")
        return int(v)

    def dec(self, raw: Any) -> Any:
        if type(raw) is not int:
            raise _Bad(f"expected an integer, got {_tname(raw)}")
        if not self.lo <= raw < self.hi:
            raise _Bad(f"integer {raw} not in [{self.lo}, {self.hi})")
        return raw


class _BigUInt(_Kind):
    """An unsigned integer below ``2**(8*nbytes)`` as minimal big-endian bytes (0 = empty)."""

    __slots__ = ("nbytes",)

    def __init__(self, doc: str, nbytes: int) -> None:
        super().__init__(doc)
        self.nbytes = nbytes

    def enc(self, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad(f"expected an integer, got {_tname(v)}")
        if v < 0:
            raise _Bad(f"negative integer {v}")
        n = (v.bit_length() + 7) >> 3
        if n > self.nbytes:
            raise _Bad(f"integer not below 2**{8 * self.nbytes}")
        return v.to_bytes(n, "big")

    def dec(self, raw: Any) -> Any:
        if type(raw) is not bytes:
            raise _Bad(f"expected an integer as bytes, got {_tname(raw)}")
        if len(raw) > self.nbytes:
            raise _Bad(f"integer of {len(raw)} bytes; at most {self.nbytes} allowed")
        if raw and raw[0] == 0:
            raise _Bad("non-canonical integer (leading zero byte)")
        return int.from_bytes(raw, "big")


class _Bytes(_Kind):
    """A byte string of ``lo..hi`` bytes."""

    __slots__ = ("hi", "lo")

    def __init__(self, doc: str, hi: int, lo: int = 0) -> None:
        super().__init__(doc)
        self.lo, self.hi = lo, hi

    def _check(self, v: Any) -> Any:
        if type(v) is not bytes:
            raise _Bad(f"expected bytes, got {_tname(v)}")
        if not self.lo <= len(v) <= self.hi:
            want = str(self.lo) if self.lo == self.hi else f"{self.lo}..{self.hi}"
            raise _Bad(f"{len(v)} bytes; {want} required")
        return v

    enc = _check
    dec = _check


class _Str(_Kind):
    """A UTF-8 string of at most ``max_bytes`` encoded bytes."""

    __slots__ = ("max_bytes",)

    def __init__(self, doc: str, max_bytes: int) -> None:
        super().__init__(doc)
        self.max_bytes = max_bytes

    def _too_long(self, s: str) -> bool:
        # Each character is 1..4 UTF-8 bytes: only measure when the character count is ambiguous.
        n = len(s)
        return n > self.max_bytes or (4 * n > self.max_bytes and len(s.encode()) > self.max_bytes)

    def enc(self, v: Any) -> Any:
        if type(v) is not str:
            raise _Bad(f"expected a string, got {_tname(v)}")
        try:
            too_long = self._too_long(v)
        except UnicodeEncodeError:
            raise _Bad("string is not encodable as UTF-8") from None
        if too_long:
            raise _Bad(f"string longer than {self.max_bytes} UTF-8 bytes")
        if 4 * len(v) <= self.max_bytes:
            try:  # short strings skipped the encode above; surrogates must still be refused
                v.encode()
            except UnicodeEncodeError:
                raise _Bad("string is not encodable as UTF-8") from None
        return v

    def dec(self, raw: Any) -> Any:
        if type(raw) is not str:
            raise _Bad(f"expected a string, got {_tname(raw)}")
        if self._too_long(raw):
            raise _Bad(f"string longer than {self.max_bytes} UTF-8 bytes")
        return raw


class _Bool(_Kind):
    __slots__ = ()

    def _check(self, v: Any) -> Any:
        if type(v) is not bool:
            raise _Bad(f"expected a boolean, got {_tname(v)}")
        return v

    enc = _check
    dec = _check


class _Optional(_Kind):
    """``nil`` or a value of ``inner``."""

    __slots__ = ("inner",)

    def __init__(self, inner: _Kind) -> None:
        super().__init__(inner.doc + "?")
        self.inner = inner

    def enc(self, v: Any) -> Any:
        return None if v is None else self.inner.enc(v)

    def dec(self, raw: Any) -> Any:
        return None if raw is None else self.inner.dec(raw)


class _List(_Kind):
    """An array of at most ``max_len`` values of ``inner``; decodes to a tuple."""

    __slots__ = ("inner", "max_len")

    def __init__(self, inner: _Kind, max_len: int) -> None:
        super().__init__(f"[{inner.doc}; ≤{max_len}]")
        self.inner, self.max_len = inner, max_len

    def enc(self, v: Any) -> Any:
        if not isinstance(v, (tuple, list)):
            raise _Bad(f"expected a sequence, got {_tname(v)}")
        if len(v) > self.max_len:
            raise _Bad(f"{len(v)} entries; at most {self.max_len} allowed")
        inner = self.inner
        out = []
        for i, x in enumerate(v):
            try:
                out.append(inner.enc(x))
            except _Bad as e:
                raise e.at(f"[{i}]") from None
        return out

    def dec(self, raw: Any) -> Any:
        if type(raw) is not list:
            raise _Bad(f"expected an array, got {_tname(raw)}")
        if len(raw) > self.max_len:
            raise _Bad(f"{len(raw)} entries; at most {self.max_len} allowed")
        inner = self.inner
        out = []
        for i, x in enumerate(raw):
            try:
                out.append(inner.dec(x))
            except _Bad as e:
                raise e.at(f"[{i}]") from None
        return tuple(out)


class _AddressKind(_Kind):
    __slots__ = ()

    def enc(self, v: Any) -> Any:
        if not isinstance(v, Address):
            raise _Bad(f"expected an Address, got {_tname(v)}")
        return v.raw

    def dec(self, raw: Any) -> Any:
        if type(raw) is not bytes or not 1 <= len(raw) <= MAX_ADDRESS_LEN:
            raise _Bad(f"expected an address of 1..{MAX_ADDRESS_LEN} bytes")
        return _build(Address, [raw])


class _AssetKind(_Kind):
    __slots__ = ()

    def enc(self, v: Any) -> Any:
        if not isinstance(v, Asset):
            raise _Bad(f"expected an Asset, got {_tname(v)}")
        return v.encode()

    def dec(self, raw: Any) -> Any:
        if type(raw) is not bytes or not 33 <= len(raw) <= MAX_ASSET_LEN:
            raise _Bad(f"expected an asset encoding of 33..{MAX_ASSET_LEN} bytes")
        return _build(Asset.decode, [raw])


class _PhaseKind(_Kind):
    __slots__ = ()

    def enc(self, v: Any) -> Any:
        if not isinstance(v, Phase):
            raise _Bad(f"expected a Phase, got {_tname(v)}")
        return int(v)

    def dec(self, raw: Any) -> Any:
        if type(raw) is not int:
            raise _Bad(f"expected a phase number, got {_tname(raw)}")
        try:
            return Phase(raw)
        except ValueError:
            raise _Bad(f"unknown phase {raw}") from None


Fields = tuple[tuple[str, _Kind], ...]


def _enc_fields(obj: Any, fields: Fields, out: list[Any]) -> list[Any]:
    for name, kind in fields:
        try:
            out.append(kind.enc(getattr(obj, name)))
        except _Bad as e:
            raise e.at("." + name) from None
    return out


def _dec_fields(raw: list[Any], start: int, fields: Fields) -> list[Any]:
    # Callers checked len(raw) == start + len(fields).
    vals = []
    i = start
    for name, kind in fields:
        try:
            vals.append(kind.dec(raw[i]))
        except _Bad as e:
            raise e.at("." + name) from None
        i += 1
    return vals


def _build(cls: Callable[..., Any], vals: list[Any]) -> Any:
    # The model's own constructor checks are the last line; turn their errors into _Bad.
    try:
        return cls(*vals)
    except (ValueError, TypeError, IndexError, OverflowError) as e:
        raise _Bad(f"invalid {getattr(cls, '__qualname__', 'value')}: {e}") from None


class _Struct(_Kind):
    """A dataclass as an array of its fields in a fixed order."""

    __slots__ = ("cls", "fields")

    def __init__(self, cls: type[Any], fields: Fields, doc: str | None = None) -> None:
        super().__init__(doc or cls.__name__)
        self.cls, self.fields = cls, fields

    def enc(self, v: Any) -> Any:
        if not isinstance(v, self.cls):
            raise _Bad(f"expected {self.cls.__name__}, got {_tname(v)}")
        return _enc_fields(v, self.fields, [])

    def dec(self, raw: Any) -> Any:
        if type(raw) is not list:
            raise _Bad(f"expected {self.cls.__name__} as an array, got {_tname(raw)}")
        if len(raw) != len(self.fields):
            raise _Bad(f"{self.cls.__name__} has {len(self.fields)} fields, got {len(raw)}")
        return _build(self.cls, _dec_fields(raw, 0, self.fields))


# Fast paths of the hot values (see the module docs). Each returns exactly what the generic
# _Struct would for the values it takes, and hands everything else (sub-allocations, subclasses,
# any value breaking a rule) to the generic code, so results and errors stay identical.
# tests/test_codec_fastpath.py checks the equivalence on generated and broken values.

_MAX_ASSETS: Final = limits.MAX_ASSETS
_MAX_PARTS: Final = limits.MAX_PARTICIPANTS
_BALANCE_BOUND: Final = limits.BALANCE_BOUND
_VERSION_BOUND: Final = limits.VERSION_BOUND
_ID_LEN: Final = limits.ID_LEN
_MAX_APP_DATA: Final = limits.MAX_APP_DATA


class _AllocationKind(_Struct):
    __slots__ = ()

    def enc(self, v: Any) -> Any:
        if type(v) is Allocation and not v.locked:
            assets, rows = v.assets, v.balances
            if (
                type(assets) is tuple
                and len(assets) <= _MAX_ASSETS
                and type(rows) is tuple
                and len(rows) <= _MAX_ASSETS
            ):
                out_assets = []
                for a in assets:
                    if type(a) is not Asset:
                        return super().enc(v)
                    out_assets.append(a.encode())
                out_rows = []
                for row in rows:
                    if type(row) is not tuple or len(row) > _MAX_PARTS:
                        return super().enc(v)
                    out = []
                    for b in row:
                        if type(b) is not int or not 0 <= b < _BALANCE_BOUND:
                            return super().enc(v)
                        out.append(b.to_bytes((b.bit_length() + 7) >> 3, "big"))
                    out_rows.append(out)
                return [out_assets, out_rows, []]
        return super().enc(v)

    def dec(self, raw: Any) -> Any:
        if type(raw) is list and len(raw) == 3:
            r_assets, r_rows, r_locked = raw
            if (
                type(r_assets) is list
                and len(r_assets) <= _MAX_ASSETS
                and type(r_rows) is list
                and len(r_rows) <= _MAX_ASSETS
                and type(r_locked) is list
                and not r_locked
            ):
                assets = []
                for x in r_assets:
                    if type(x) is not bytes or not 33 <= len(x) <= MAX_ASSET_LEN:
                        return super().dec(raw)
                    assets.append(Asset.decode(x))
                rows = []
                for r in r_rows:
                    if type(r) is not list or len(r) > _MAX_PARTS:
                        return super().dec(raw)
                    row = []
                    for x in r:
                        if type(x) is not bytes or len(x) > 32 or (x and x[0] == 0):
                            return super().dec(raw)
                        row.append(int.from_bytes(x, "big"))
                    rows.append(tuple(row))
                return Allocation(tuple(assets), tuple(rows), ())
        return super().dec(raw)


class _StateKind(_Struct):
    __slots__ = ()

    def enc(self, v: Any) -> Any:
        if type(v) is State:
            cid, ver, app, data, fin = v.channel_id, v.version, v.app, v.data, v.is_final
            if (
                type(cid) is bytes
                and len(cid) == _ID_LEN
                and type(ver) is int
                and 0 <= ver < _VERSION_BOUND
                and (app is None or (type(app) is bytes and 1 <= len(app) <= MAX_APP_ID_LEN))
                and type(data) is bytes
                and len(data) <= _MAX_APP_DATA
                and type(fin) is bool
            ):
                try:
                    alloc = _ALLOCATION.enc(v.allocation)
                except _Bad:
                    return super().enc(v)  # the generic path names the field
                return [cid, ver, alloc, app, data, fin]
        return super().enc(v)

    def dec(self, raw: Any) -> Any:
        if type(raw) is list and len(raw) == 6:
            cid, ver, r_alloc, app, data, fin = raw
            if (
                type(cid) is bytes
                and len(cid) == _ID_LEN
                and type(ver) is int
                and 0 <= ver < _VERSION_BOUND
                and (app is None or (type(app) is bytes and 1 <= len(app) <= MAX_APP_ID_LEN))
                and type(data) is bytes
                and len(data) <= _MAX_APP_DATA
                and type(fin) is bool
            ):
                try:
                    alloc = _ALLOCATION.dec(r_alloc)
                except _Bad:
                    return super().dec(raw)
                return State(cid, ver, alloc, app, data, fin)
        return super().dec(raw)


class _TransactionKind(_Struct):
    __slots__ = ()

    def enc(self, v: Any) -> Any:
        if type(v) is Transaction:
            sigs = v.sigs
            if type(sigs) is tuple and len(sigs) <= _MAX_PARTS:
                for sig in sigs:
                    if sig is not None and (type(sig) is not bytes or len(sig) > MAX_SIG_LEN):
                        return super().enc(v)
                try:
                    state = _STATE.enc(v.state)
                except _Bad:
                    return super().enc(v)
                return [state, list(sigs)]
        return super().enc(v)


# --- the schema -----------------------------------------------------------------------------

_ID = _Bytes("bytes32", limits.ID_LEN, limits.ID_LEN)
_SIG = _Bytes(f"bytes≤{MAX_SIG_LEN}", MAX_SIG_LEN)
_APP_ID = _Optional(_Bytes(f"bytes1..{MAX_APP_ID_LEN}", MAX_APP_ID_LEN, 1))
_APP_DATA = _Bytes(f"bytes≤{limits.MAX_APP_DATA}", limits.MAX_APP_DATA)
_AUX = _Bytes(f"bytes≤{limits.MAX_AUX}", limits.MAX_AUX)
_U64 = _UInt("u64", _BOUND_U64)
_CHALLENGE = _UInt("u32≥1", limits.CHALLENGE_DURATION_BOUND, lo=1)
_VERSION = _UInt("u64", limits.VERSION_BOUND)
_REASON = _Str(f"str≤{limits.MAX_REASON}B", limits.MAX_REASON)
_BACKEND = _Str(f"str≤{MAX_NAME_LEN}B", MAX_NAME_LEN)
_UINT256 = _BigUInt("uint256", 32)
_ADDR = _AddressKind("addr")
_PARTIES = _List(_ADDR, limits.MAX_PARTICIPANTS)
_BALANCES = _List(_List(_UINT256, limits.MAX_PARTICIPANTS), limits.MAX_ASSETS)

_SUBALLOC = _Struct(
    SubAlloc,
    (
        ("id", _ID),
        ("balances", _List(_UINT256, limits.MAX_ASSETS)),
        ("index_map", _List(_UInt("u16", _BOUND_U16), limits.MAX_PARTICIPANTS)),
    ),
)
_ALLOCATION = _AllocationKind(
    Allocation,
    (
        ("assets", _List(_AssetKind("asset"), limits.MAX_ASSETS)),
        ("balances", _BALANCES),
        ("locked", _List(_SUBALLOC, limits.MAX_SUBALLOCS)),
    ),
)
_STATE = _StateKind(
    State,
    (
        ("channel_id", _ID),
        ("version", _VERSION),
        ("allocation", _ALLOCATION),
        ("app", _APP_ID),
        ("data", _APP_DATA),
        ("is_final", _Bool("bool")),
    ),
)
_TRANSACTION = _TransactionKind(
    Transaction,
    (("state", _STATE), ("sigs", _List(_Optional(_SIG), limits.MAX_PARTICIPANTS))),
)
_PARAMS = _Struct(
    Params,
    (
        ("challenge_duration", _CHALLENGE),
        ("participants", _PARTIES),
        ("nonce", _UINT256),
        ("app", _APP_ID),
        ("ledger_channel", _Bool("bool")),
        ("virtual_channel", _Bool("bool")),
        ("aux", _AUX),
        ("backend", _BACKEND),
        ("id", _ID),
    ),
)
_RECORD = _Struct(
    ChannelRecord,
    (
        ("params", _PARAMS),
        ("idx", _UInt("u16", _BOUND_U16)),
        ("peers", _PARTIES),
        ("phase", _PhaseKind("phase")),
        ("current", _Optional(_TRANSACTION)),
        ("staging", _Optional(_TRANSACTION)),
        ("parent", _Optional(_ID)),
        ("version_floor", _VERSION),
        ("needs_sync", _Bool("bool")),
    ),
)

_MESSAGE_FIELDS: Final[MappingProxyType[type[Message], Fields]] = MappingProxyType(
    {
        Ping: (("created_ns", _U64),),
        Pong: (("ping_created_ns", _U64), ("created_ns", _U64)),
        Shutdown: (("reason", _REASON),),
        AuthHello: (
            ("wire_version", _UInt("u16", _BOUND_U16)),
            ("sender", _ADDR),
            ("recipient", _ADDR),
            ("challenge", _ID),
        ),
        AuthReply: (
            ("wire_version", _UInt("u16", _BOUND_U16)),
            ("sender", _ADDR),
            ("recipient", _ADDR),
            ("challenge", _ID),
            ("sig", _SIG),
        ),
        AuthConfirm: (("sig", _SIG),),
        LedgerChannelProposal: (
            ("proposal_id", _ID),
            ("backend", _BACKEND),
            ("challenge_duration", _CHALLENGE),
            ("nonce_share", _ID),
            ("app", _APP_ID),
            ("init_data", _APP_DATA),
            ("init_alloc", _ALLOCATION),
            ("funding_agreement", _Optional(_BALANCES)),
            ("aux", _AUX),
            ("participant", _ADDR),
            ("peers", _PARTIES),
        ),
        LedgerChannelProposalAcc: (
            ("proposal_id", _ID),
            ("nonce_share", _ID),
            ("participant", _ADDR),
            ("init_sig", _SIG),
        ),
        ChannelProposalRej: (
            ("proposal_id", _ID),
            ("reject_code", _UInt("u8", _BOUND_U8)),
            ("reason", _REASON),
        ),
        ChannelUpdate: (("state", _STATE), ("actor_idx", _UInt("u16", _BOUND_U16)), ("sig", _SIG)),
        ChannelUpdateAcc: (("channel_id", _ID), ("version", _VERSION), ("sig", _SIG)),
        ChannelUpdateRej: (
            ("channel_id", _ID),
            ("version", _VERSION),
            ("reject_code", _UInt("u8", _BOUND_U8)),
            ("reason", _REASON),
        ),
        ChannelSync: (
            ("channel_id", _ID),
            ("phase", _UInt("u8", _BOUND_U8)),
            ("current", _Optional(_TRANSACTION)),
            ("pending", _Optional(_TRANSACTION)),
            ("version_floor", _VERSION),
            ("reply", _Bool("bool")),
        ),
    }
)

_MESSAGES: Final = tuple(_Struct(cls, _MESSAGE_FIELDS[cls]) for cls in MESSAGE_TYPES)
_BY_CODE: Final = MappingProxyType({s.cls.code: s for s in _MESSAGES})
_BY_TYPE: Final = MappingProxyType({s.cls: s for s in _MESSAGES})


# --- framing helpers ------------------------------------------------------------------------


def _check_max(max_size: int) -> None:
    if not 0 < max_size <= MAX_FRAME_LIMIT:
        raise ValueError(f"max_size must be in 1..{MAX_FRAME_LIMIT}, got {max_size}")


def _load(data: bytes | bytearray | memoryview, max_size: int, what: str) -> Any:
    """Size check, version check and msgpack parse, in this order."""
    _check_max(max_size)
    view = memoryview(data)
    if view.nbytes > max_size:
        raise FrameTooLargeError(view.nbytes, max_size)
    if view.nbytes == 0:
        raise MalformedMessageError(f"empty {what} encoding")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if view[0] != WIRE_VERSION:
        raise UnknownWireVersionError(view[0])
    limit = sys.getrecursionlimit()
    clamp = limit > _SAFE_RECURSION_LIMIT
    if clamp:
        # Some libraries (py_ecc, pulled in by web3) raise the interpreter's recursion limit
        # to 100,000; msgspec then follows a nesting bomb until the C stack overflows.
        # Decoding runs without awaiting, so a temporary clamp is invisible to our tasks.
        try:
            sys.setrecursionlimit(_SAFE_RECURSION_LIMIT)
        except RecursionError:
            clamp = False
    try:
        return _DECODER.decode(view[1:])  # a view: no copy of the payload
    except (msgspec.MsgspecError, ValueError, RecursionError, OverflowError) as e:
        raise MalformedMessageError(f"undecodable {what}: {e}") from None
    finally:
        if clamp:
            sys.setrecursionlimit(limit)


def _dump(value: Any) -> bytes:
    return _HEADER + _ENCODER.encode(value)


def _message_raw(msg: Message) -> list[Any]:
    spec = _BY_TYPE.get(type(msg))
    if spec is None:
        raise MalformedMessageError(f"cannot encode {type(msg).__name__}: not a wire message")
    try:
        return _enc_fields(msg, spec.fields, [spec.cls.code])
    except _Bad as e:
        raise MalformedMessageError(
            f"cannot encode {spec.cls.__name__} (code {spec.cls.code}): {e.path()}: {e.reason}"
        ) from None


def _message_from_raw(raw: Any) -> Message:
    if type(raw) is not list or not raw:
        raise MalformedMessageError(f"a message is a non-empty array, got {_tname(raw)}")
    code = raw[0]
    spec = _BY_CODE.get(code) if type(code) is int else None
    if spec is None:
        shown = code if type(code) is int else f"of type {_tname(code)}"  # never echo big values
        raise MalformedMessageError(f"unknown message type code {shown}")
    name = f"{spec.cls.__name__} (code {code})"
    if len(raw) != len(spec.fields) + 1:
        raise MalformedMessageError(
            f"malformed {name}: expected {len(spec.fields)} fields, got {len(raw) - 1}"
        )
    try:
        msg: Message = _build(spec.cls, _dec_fields(raw, 1, spec.fields))
    except _Bad as e:
        raise MalformedMessageError(f"malformed {name}: {e.path()}: {e.reason}") from None
    return msg


def _encode_value(kind: _Struct, value: object) -> bytes:
    try:
        return _dump(kind.enc(value))
    except _Bad as e:
        raise MalformedMessageError(f"cannot encode {kind.doc}: {e.path()}: {e.reason}") from None


def _decode_value(kind: _Struct, data: bytes | bytearray | memoryview, max_size: int) -> Any:
    raw = _load(data, max_size, kind.doc)
    try:
        return kind.dec(raw)
    except _Bad as e:
        raise MalformedMessageError(f"malformed {kind.doc}: {e.path()}: {e.reason}") from None


# --- public API -----------------------------------------------------------------------------


def encode(msg: Message) -> bytes:
    """Encode one wire message.

    Raises:
        MalformedMessageError: ``msg`` is not a known message type or a field breaks a limit
            (the message would be refused by the peer).
    """
    return _dump(_message_raw(msg))


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
    return _message_from_raw(_load(data, max_size, "message"))


def encode_envelope(env: Envelope) -> bytes:
    """Encode an envelope: ``[sender, recipient, [code, fields...]]``.

    Raises:
        MalformedMessageError: as :func:`encode`, or the addresses are not :class:`Address`.
    """
    if not isinstance(env, Envelope):
        raise MalformedMessageError(f"cannot encode {_tname(env)} as an envelope")
    try:
        head = [_ADDR.enc(env.sender), _ADDR.enc(env.recipient)]
    except _Bad as e:
        raise MalformedMessageError(f"cannot encode envelope: {e.reason}") from None
    head.append(_message_raw(env.msg))
    return _dump(head)


def decode_envelope(
    data: bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_SIZE
) -> Envelope:
    """Decode an envelope (errors as :func:`decode`)."""
    raw = _load(data, max_size, "envelope")
    if type(raw) is not list or len(raw) != 3:
        raise MalformedMessageError("an envelope is an array [sender, recipient, message]")
    try:
        sender = _ADDR.dec(raw[0])
        recipient = _ADDR.dec(raw[1])
    except _Bad as e:
        raise MalformedMessageError(f"malformed envelope address: {e.reason}") from None
    return Envelope(sender, recipient, _message_from_raw(raw[2]))


def encode_state(state: State) -> bytes:
    """Encode a :class:`State` (for persistence; same rules as the wire)."""
    return _encode_value(_STATE, state)


def decode_state(data: bytes | bytearray | memoryview, *, max_size: int = MAX_FRAME_LIMIT) -> State:
    """Inverse of :func:`encode_state` (raises :class:`MalformedMessageError`)."""
    state: State = _decode_value(_STATE, data, max_size)
    return state


def encode_transaction(tx: Transaction) -> bytes:
    """Encode a :class:`Transaction`: ``[state, [sig or nil, ...]]``."""
    return _encode_value(_TRANSACTION, tx)


def decode_transaction(
    data: bytes | bytearray | memoryview, *, max_size: int = MAX_FRAME_LIMIT
) -> Transaction:
    """Inverse of :func:`encode_transaction` (raises :class:`MalformedMessageError`)."""
    tx: Transaction = _decode_value(_TRANSACTION, data, max_size)
    return tx


def encode_record(record: ChannelRecord) -> bytes:
    """Encode a :class:`ChannelRecord` (params with their ``id`` and ``backend``; phase as int)."""
    return _encode_value(_RECORD, record)


def decode_record(
    data: bytes | bytearray | memoryview, *, max_size: int = MAX_FRAME_LIMIT
) -> ChannelRecord:
    """Inverse of :func:`encode_record` (raises :class:`MalformedMessageError`)."""
    record: ChannelRecord = _decode_value(_RECORD, data, max_size)
    return record


def _field_list(fields: Fields) -> str:
    return ", ".join(f"`{name}: {kind.doc}`" for name, kind in fields)


def wire_format_table() -> str:
    """The message and value layouts as Markdown tables (``docs/wire-format.md`` embeds them)."""
    lines = ["| code | message | fields after the code, in order |", "|---|---|---|"]
    lines += [f"| {s.cls.code} | {s.cls.__name__} | {_field_list(s.fields)} |" for s in _MESSAGES]
    lines += ["", "| value | fields, in order |", "|---|---|"]
    for kind in (_ALLOCATION, _SUBALLOC, _STATE, _TRANSACTION, _PARAMS, _RECORD):
        lines.append(f"| {kind.doc} | {_field_list(kind.fields)} |")
    return "\n".join(lines) + "\n"


__all__ = [
    "DEFAULT_MAX_SIZE",
    "MAX_FRAME_LIMIT",
    "MAX_NAME_LEN",
    "MAX_SIG_LEN",
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
