"""The wire codec: round trips of every message and value, and refusal of malformed input."""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from perun_core.wire import codec
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

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

U64 = 2**64 - 1
U256 = 2**256 - 1
DOCS = Path(__file__).resolve().parents[1] / "docs" / "wire-format.md"

# --- strategies -----------------------------------------------------------------------------

ids = st.binary(min_size=32, max_size=32)
addresses = st.builds(Address, st.binary(min_size=1, max_size=64))
eth_addresses = st.builds(Address, st.binary(min_size=20, max_size=20))
assets = st.builds(Asset, st.integers(0, U256), st.binary(min_size=1, max_size=64))
# Edge values first so every run sees zero, one byte, and the 256-bit maximum.
balances_ints = st.one_of(st.sampled_from([0, 1, 255, 256, 2**64, U256]), st.integers(0, U256))
sigs = st.binary(min_size=0, max_size=80)
app_ids = st.none() | st.binary(min_size=1, max_size=64)
reasons = st.text(max_size=200)  # includes non-ASCII and astral code points


@st.composite
def allocations(draw: st.DrawFn, *, n_parts: int | None = None) -> Allocation:
    n = n_parts if n_parts is not None else draw(st.integers(1, 4))
    assets_ = draw(st.lists(assets, min_size=1, max_size=4, unique=True))
    rows = [draw(st.lists(balances_ints, min_size=n, max_size=n)) for _ in assets_]
    locked = draw(
        st.lists(
            st.builds(
                SubAlloc,
                ids,
                st.lists(balances_ints, min_size=len(assets_), max_size=len(assets_)),
                st.permutations(range(n)),
            ),
            max_size=3,
            unique_by=lambda s: s.id,
        )
    )
    return Allocation(tuple(assets_), tuple(tuple(r) for r in rows), tuple(locked))


@st.composite
def states(draw: st.DrawFn) -> State:
    return State(
        channel_id=draw(ids),
        version=draw(st.sampled_from([0, 1, U64]) | st.integers(0, U64)),
        allocation=draw(allocations()),
        app=draw(app_ids),
        data=draw(st.binary(max_size=64)),
        is_final=draw(st.booleans()),
    )


@st.composite
def transactions(draw: st.DrawFn) -> Transaction:
    state = draw(states())
    n = state.allocation.num_parts
    return Transaction(state, tuple(draw(st.lists(st.none() | sigs, min_size=n, max_size=n))))


@st.composite
def params_(draw: st.DrawFn) -> Params:
    ledger = draw(st.booleans())
    return Params(
        challenge_duration=draw(st.integers(1, 2**32 - 1)),
        participants=tuple(draw(st.lists(addresses, min_size=1, max_size=4, unique=True))),
        nonce=draw(balances_ints),
        app=draw(app_ids),
        ledger_channel=ledger,
        virtual_channel=False if ledger else draw(st.booleans()),
        aux=draw(st.binary(max_size=8)),
        backend=draw(st.sampled_from(["sim", "eth", "ünïcode"])),
        id=draw(ids),
    )


@st.composite
def records(draw: st.DrawFn) -> ChannelRecord:
    return ChannelRecord(
        params=draw(params_()),
        idx=draw(st.integers(0, 3)),
        peers=tuple(draw(st.lists(addresses, min_size=2, max_size=2))),
        phase=draw(st.sampled_from(list(Phase))),
        current=draw(st.none() | transactions()),
        staging=draw(st.none() | transactions()),
        parent=draw(st.none() | ids),
        version_floor=draw(st.integers(0, U64)),
        needs_sync=draw(st.booleans()),
    )


@st.composite
def funding_agreements(draw: st.DrawFn) -> tuple[tuple[int, ...], ...] | None:
    if draw(st.booleans()):
        return None
    return tuple(
        tuple(draw(st.lists(balances_ints, min_size=2, max_size=2)))
        for _ in range(draw(st.integers(1, 3)))
    )


MESSAGES: dict[type[Message], st.SearchStrategy[Any]] = {
    Ping: st.builds(Ping, st.integers(0, U64)),
    Pong: st.builds(Pong, st.integers(0, U64), st.integers(0, U64)),
    Shutdown: st.builds(Shutdown, reasons),
    AuthHello: st.builds(AuthHello, st.integers(0, 2**16 - 1), addresses, addresses, ids),
    AuthReply: st.builds(AuthReply, st.integers(0, 2**16 - 1), addresses, addresses, ids, sigs),
    AuthConfirm: st.builds(AuthConfirm, sigs),
    LedgerChannelProposal: st.builds(
        LedgerChannelProposal,
        proposal_id=ids,
        backend=st.sampled_from(["sim", "eth"]),
        challenge_duration=st.integers(1, 2**32 - 1),
        nonce_share=ids,
        app=app_ids,
        init_data=st.binary(max_size=64),
        init_alloc=allocations(n_parts=2),
        funding_agreement=funding_agreements(),
        aux=st.binary(max_size=16),
        participant=eth_addresses,
        peers=st.tuples(addresses, addresses),
    ),
    LedgerChannelProposalAcc: st.builds(LedgerChannelProposalAcc, ids, ids, addresses, sigs),
    SubChannelProposal: st.builds(
        SubChannelProposal,
        proposal_id=ids,
        backend=st.sampled_from(["sim", "eth"]),
        challenge_duration=st.integers(1, 2**32 - 1),
        nonce_share=ids,
        app=app_ids,
        init_data=st.binary(max_size=64),
        init_alloc=allocations(n_parts=2),
        aux=st.binary(max_size=16),
        parent=ids,
    ),
    SubChannelProposalAcc: st.builds(SubChannelProposalAcc, ids, ids, sigs),
    ChannelProposalRej: st.builds(ChannelProposalRej, ids, st.integers(0, 255), reasons),
    ChannelUpdate: st.builds(ChannelUpdate, states(), st.integers(0, 2**16 - 1), sigs),
    ChannelUpdateAcc: st.builds(ChannelUpdateAcc, ids, st.integers(0, U64), sigs),
    ChannelUpdateRej: st.builds(
        ChannelUpdateRej, ids, st.integers(0, U64), st.integers(0, 255), reasons
    ),
    ChannelSync: st.builds(
        ChannelSync,
        ids,
        st.integers(0, 11),
        st.none() | transactions(),
        st.none() | transactions(),
        st.integers(0, U64),
    ),
}
any_message = st.one_of(*MESSAGES.values())


def alice() -> Address:
    return Address(bytes.fromhex("a1" * 20))


def bob() -> Address:
    return Address(bytes.fromhex("b0" * 20))


def sample_state(**changes: Any) -> State:
    eth = Asset(1, bytes.fromhex("ee" * 20))
    s = State(b"\x01" * 32, 7, Allocation((eth,), ((100, 23),)))
    return s.replace(**changes) if changes else s


def with_balances(*row: int) -> State:
    return sample_state(allocation=sample_state().allocation.with_balances([row]))


def sample_tx() -> Transaction:
    return Transaction(sample_state(), (b"\x01" * 65, None))


SAMPLES: dict[type[Message], Message] = {
    Ping: Ping(1),
    Pong: Pong(1, 2),
    Shutdown: Shutdown("bye"),
    AuthHello: AuthHello(1, alice(), bob(), b"\x07" * 32),
    AuthReply: AuthReply(1, bob(), alice(), b"\x08" * 32, b"\x09" * 65),
    AuthConfirm: AuthConfirm(b"\x0a" * 65),
    LedgerChannelProposal: LedgerChannelProposal(
        proposal_id=b"\x10" * 32,
        backend="sim",
        challenge_duration=60,
        nonce_share=b"\x11" * 32,
        app=None,
        init_data=b"",
        init_alloc=sample_state().allocation,
        funding_agreement=((100, 23),),
        aux=b"",
        participant=alice(),
        peers=(alice(), bob()),
    ),
    LedgerChannelProposalAcc: LedgerChannelProposalAcc(b"\x10" * 32, b"\x12" * 32, bob(), b"s"),
    SubChannelProposal: SubChannelProposal(
        proposal_id=b"\x13" * 32,
        backend="sim",
        challenge_duration=60,
        nonce_share=b"\x14" * 32,
        app=None,
        init_data=b"",
        init_alloc=sample_state().allocation,
        aux=b"",
        parent=b"\x15" * 32,
    ),
    SubChannelProposalAcc: SubChannelProposalAcc(b"\x13" * 32, b"\x16" * 32, b"s"),
    ChannelProposalRej: ChannelProposalRej(b"\x10" * 32, 1, "no thanks"),
    ChannelUpdate: ChannelUpdate(sample_state(), 0, b"\x01" * 65),
    ChannelUpdateAcc: ChannelUpdateAcc(b"\x01" * 32, 7, b"\x02" * 65),
    ChannelUpdateRej: ChannelUpdateRej(b"\x01" * 32, 7, 3, "conflict"),
    ChannelSync: ChannelSync(b"\x01" * 32, 3, sample_tx(), None, 0),
}


def sample_record() -> ChannelRecord:
    params = Params(60, (alice(), bob()), nonce=12345, id=b"\x01" * 32)
    return ChannelRecord(params, 0, (alice(), bob()), Phase.ACTING, current=sample_tx())


def payload(raw: Any) -> bytes:
    """A hand-built encoding: the version byte and any msgpack value."""
    return bytes([WIRE_VERSION]) + msgspec.msgpack.encode(raw)


def raw_of(data: bytes) -> Any:
    return msgspec.msgpack.decode(data[1:])


# --- round trips ----------------------------------------------------------------------------


def test_every_message_type_has_a_strategy_and_a_sample() -> None:
    assert set(MESSAGES) == set(MESSAGE_TYPES) == set(SAMPLES)
    for cls, msg in SAMPLES.items():
        assert type(msg) is cls
        assert decode(encode(msg)) == msg


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
def test_round_trip_every_message_type(cls: type[Message]) -> None:
    @FAST
    @given(MESSAGES[cls])
    def check(msg: Message) -> None:
        data = encode(msg)
        assert data[0] == WIRE_VERSION
        assert raw_of(data)[0] == cls.code  # the type code comes first
        assert decode(data) == msg

    check()


@FAST
@given(addresses, addresses, any_message)
def test_envelope_round_trip(sender: Address, recipient: Address, msg: Message) -> None:
    env = Envelope(sender, recipient, msg)
    data = encode_envelope(env)
    assert decode_envelope(data) == env
    assert raw_of(data)[:2] == [sender.raw, recipient.raw]


@FAST
@given(states())
def test_state_round_trip(state: State) -> None:
    assert decode_state(encode_state(state)) == state


@FAST
@given(transactions())
def test_transaction_round_trip(tx: Transaction) -> None:
    assert decode_transaction(encode_transaction(tx)) == tx


@FAST
@given(records())
def test_record_round_trip_keeps_id_backend_and_phase(record: ChannelRecord) -> None:
    back = decode_record(encode_record(record))
    assert back == record
    # Params.id is excluded from equality, so check it (and the enum type) explicitly.
    assert back.params.id == record.params.id
    assert back.params.backend == record.params.backend
    assert type(back.phase) is Phase


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode(Ping(42))
    assert decode(bytearray(data)) == Ping(42)
    assert decode(memoryview(b"xx" + data)[2:]) == Ping(42)


# --- integer encoding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "wire"),
    [(0, b""), (1, b"\x01"), (256, b"\x01\x00"), (U256, b"\xff" * 32)],
)
def test_big_integers_are_minimal_big_endian_bytes(value: int, wire: bytes) -> None:
    eth = Asset(1, b"\xee" * 20)
    state = sample_state(allocation=Allocation((eth,), ((value, 0),)))
    raw = raw_of(encode(ChannelUpdate(state, 0, b"s")))
    balances = raw[1][2][1]
    assert balances == [[wire, b""]]


def test_small_integers_and_phases_are_native_msgpack_ints() -> None:
    sync = ChannelSync(b"\x02" * 32, Phase.ACTING, None, None, 9)
    raw = raw_of(encode(sync))
    assert raw == [48, b"\x02" * 32, 3, None, None, 9, False]
    assert decode(encode(sync)) == ChannelSync(b"\x02" * 32, 3, None, None, 9)


def test_ping_encoding_is_stable() -> None:
    # The format is a contract with other builds: pin one encoding byte for byte.
    assert encode(Ping(5)).hex() == "01920005"


# --- malformed input ------------------------------------------------------------------------


def malformed(data: bytes, *fragments: str) -> MalformedMessageError:
    with pytest.raises(MalformedMessageError) as info:
        decode(data)
    text = str(info.value)
    for f in fragments:
        assert f in text, f"{f!r} not in {text!r}"
    return info.value


def test_every_truncation_of_an_update_is_refused() -> None:
    data = encode(ChannelUpdate(with_balances(U256, 3), 1, b"\x05" * 65))
    for n in range(len(data)):
        with pytest.raises(MalformedMessageError):
            decode(data[:n])


def test_oversize_input_is_refused_before_decoding() -> None:
    # Garbage after the limit would also be malformed: the size check must come first.
    junk = bytes([WIRE_VERSION]) + b"\xc1" * DEFAULT_MAX_SIZE
    with pytest.raises(FrameTooLargeError) as info:
        decode(junk)
    assert (info.value.size, info.value.limit) == (len(junk), DEFAULT_MAX_SIZE)
    data = encode(Shutdown("x" * 100))
    with pytest.raises(FrameTooLargeError):
        decode(data, max_size=len(data) - 1)
    assert decode(data, max_size=len(data)) == Shutdown("x" * 100)
    with pytest.raises(FrameTooLargeError):
        decode_envelope(encode_envelope(Envelope(alice(), bob(), Shutdown("y" * 90))), max_size=64)


def test_max_size_is_bounded_by_the_frame_limit() -> None:
    with pytest.raises(ValueError, match="max_size"):
        decode(encode(Ping(1)), max_size=MAX_FRAME_LIMIT + 1)
    assert decode(encode(Ping(1)), max_size=MAX_FRAME_LIMIT) == Ping(1)


def test_unknown_wire_version_is_typed() -> None:
    data = b"\x02" + encode(Ping(1))[1:]
    err = malformed(data, "wire version 2")
    assert isinstance(err, UnknownWireVersionError)
    assert isinstance(err, UnsupportedWireVersionError)
    assert err.version == 2


def test_empty_input() -> None:
    malformed(b"", "empty")


def test_unknown_type_code() -> None:
    malformed(payload([99, 1]), "unknown message type code 99")
    malformed(payload(["0", 1]), "unknown message type code of type str")
    malformed(payload([True, 1]), "unknown message type code of type bool")
    malformed(payload([[b"x" * 1000], 1]), "of type array")


def test_not_an_array() -> None:
    malformed(payload({"code": 0}), "array")
    malformed(payload([]), "array")
    malformed(payload(7), "array")


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
def test_wrong_field_counts(cls: type[Message]) -> None:
    raw = raw_of(encode(SAMPLES[cls]))
    malformed(payload([*raw, None]), f"{cls.__name__} (code {cls.code})", "fields")
    malformed(payload(raw[:-1]), f"{cls.__name__} (code {cls.code})", "fields")


def test_wrong_field_types_name_the_field() -> None:
    malformed(payload([0, "5"]), "Ping (code 0)", "created_ns", "Expected `int`, got `str`")
    malformed(payload([0, 1.5]), "created_ns")
    malformed(payload([0, True]), "created_ns", "got `bool`")
    malformed(payload([0, -1]), "created_ns", ">= 0")
    malformed(payload([2, b"bytes not str"]), "Shutdown (code 2)", "reason")
    malformed(payload([5, "sig as str"]), "AuthConfirm (code 5)", "sig")
    good = raw_of(encode(ChannelUpdate(sample_state(), 0, b"s")))
    bad = [32, [*good[1][:5], 1], 0, b"s"]  # is_final as an int
    malformed(
        payload(bad), "ChannelUpdate (code 32)", "state.is_final", "Expected `bool`, got `int`"
    )


def test_msgpack_extension_types_are_refused() -> None:
    ext = msgspec.msgpack.Ext(1, b"x")
    malformed(payload([0, ext]), "created_ns")


def test_non_canonical_integers_are_refused() -> None:
    raw = raw_of(encode(ChannelUpdate(sample_state(), 0, b"s")))
    raw[1][2][1][0][0] = b"\x00\x64"  # 100 with a leading zero byte
    malformed(payload(raw), "state.allocation.balances[0][0]", "non-canonical")
    raw[1][2][1][0][0] = b"\x00"  # zero must be the empty string
    malformed(payload(raw), "non-canonical")


def test_balances_at_or_above_2_256_are_refused() -> None:
    raw = raw_of(encode(ChannelUpdate(sample_state(), 0, b"s")))
    raw[1][2][1][0][1] = b"\x01" + b"\x00" * 32
    malformed(payload(raw), "state.allocation.balances[0][1]", "length <= 32")


def test_limits_of_the_protocol_are_enforced() -> None:
    rej = raw_of(encode(ChannelUpdateRej(b"\x01" * 32, 1, 2, "no")))
    malformed(payload([*rej[:4], "x" * 1025]), "reason", "1024")
    malformed(payload([*rej[:4], "é" * 600]), "reason")  # 600 chars, 1200 bytes
    assert decode(payload([*rej[:4], "é" * 512])) == ChannelUpdateRej(b"\x01" * 32, 1, 2, "é" * 512)
    malformed(payload([33, b"\x01" * 31, 1, b"s"]), "channel_id", "length >= 32")
    malformed(payload([33, b"\x01" * 32, U64, b"s" * 8193]), "sig")
    malformed(payload([4, 1, b"a", b"", b"c" * 32, b""]), "AuthReply (code 4): recipient", ">= 1")
    malformed(payload([34, b"\x01" * 32, 1, 256, "x"]), "reject_code")

    prop = raw_of(encode(SAMPLES[LedgerChannelProposal]))
    for idx, value, field in [
        (3, 0, "challenge_duration"),
        (3, 2**32, "challenge_duration"),
        (9, b"a" * 257, "aux"),
        (6, b"d" * (limits.MAX_APP_DATA + 1), "init_data"),
        (5, b"", "app"),
        (11, [b"\x01" * 20] * (limits.MAX_PARTICIPANTS + 1), "peers"),
    ]:
        bad = list(prop)
        bad[idx] = value
        malformed(payload(bad), "LedgerChannelProposal (code 16)", field)


def test_too_many_assets_are_refused() -> None:
    raw = raw_of(encode(ChannelUpdate(sample_state(), 0, b"s")))
    asset = raw[1][2][0][0]
    raw[1][2][0] = [asset] * (limits.MAX_ASSETS + 1)
    malformed(payload(raw), "state.allocation.assets", "length <= 1024")


def test_model_constructor_errors_become_malformed() -> None:
    # Params.check() refuses both-ledger-and-virtual; the codec reports it, typed.
    rec = raw_of(encode_record(sample_record()))
    rec[0][4] = rec[0][5] = True
    with pytest.raises(MalformedMessageError, match="Params"):
        decode_record(payload(rec))
    rec = raw_of(encode_record(sample_record()))
    rec[3] = 99
    with pytest.raises(MalformedMessageError, match="phase: Invalid enum value 99"):
        decode_record(payload(rec))


def test_nesting_bombs_are_malformed() -> None:
    malformed(bytes([WIRE_VERSION]) + b"\x91" * 100_000 + b"\xc0")


def test_huge_declared_lengths_are_malformed() -> None:
    malformed(bytes([WIRE_VERSION]) + b"\xdd\xff\xff\xff\xff")  # array32 of 4G entries
    malformed(bytes([WIRE_VERSION]) + b"\xc6\xff\xff\xff\xff")  # bin32 of 4 GiB


def test_trailing_bytes_are_malformed() -> None:
    malformed(encode(Ping(1)) + b"\x00")


def test_envelope_shape_errors() -> None:
    with pytest.raises(MalformedMessageError, match="envelope"):
        decode_envelope(payload([alice().raw, bob().raw]))
    with pytest.raises(MalformedMessageError, match="address"):
        decode_envelope(payload([b"", bob().raw, [0, 1]]))
    with pytest.raises(MalformedMessageError, match="Ping"):
        decode_envelope(payload([alice().raw, bob().raw, [0, -1]]))


def test_value_decoders_refuse_other_values() -> None:
    with pytest.raises(MalformedMessageError, match="Transaction"):
        decode_transaction(encode_state(sample_state()))
    with pytest.raises(MalformedMessageError, match="State"):
        decode_state(encode(Ping(1)))


# --- encoding refuses what decoding would refuse ----------------------------------------------


@pytest.mark.parametrize(
    ("msg", "fragment"),
    [
        (Ping(-1), "created_ns"),
        (Ping(2**64), "created_ns"),
        (Shutdown("x" * 1025), "reason"),
        (Shutdown("\ud800"), "UTF-8"),
        (ChannelUpdateAcc(b"short", 1, b"s"), "channel_id"),
        (ChannelUpdate(sample_state(version=2**64), 0, b"s"), "state.version"),
        (ChannelUpdate(with_balances(-1, 0), 0, b"s"), "state.allocation.balances[0][0]"),
        (ChannelUpdate(with_balances(0, 2**256), 0, b"s"), "2**256"),
    ],
)
def test_encode_refuses_invalid_messages(msg: Message, fragment: str) -> None:
    with pytest.raises(MalformedMessageError, match="cannot encode") as info:
        encode(msg)
    assert fragment in str(info.value)


def test_encode_refuses_non_messages() -> None:
    with pytest.raises(MalformedMessageError):
        encode(sample_state())  # type: ignore[arg-type]
    with pytest.raises(MalformedMessageError):
        encode_envelope(Envelope(alice(), "bob", Ping(1)))  # type: ignore[arg-type]


# --- fuzzing --------------------------------------------------------------------------------


def decodes_or_malformed(data: bytes) -> None:
    try:
        msg = decode(data)
    except MalformedMessageError:
        return
    assert isinstance(msg, Message)
    assert decode(encode(msg)) == msg  # whatever decodes is canonical


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    decodes_or_malformed(data)
    decodes_or_malformed(bytes([WIRE_VERSION]) + data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.binary(max_size=40)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=30,
)


@FUZZ
@given(st.sampled_from([c.code for c in MESSAGE_TYPES]), st.lists(msgpack_values, max_size=12))
def test_random_structures_with_valid_codes_never_crash(code: int, fields: list[Any]) -> None:
    decodes_or_malformed(payload([code, *fields]))


@FUZZ
@given(any_message, st.data())
def test_mutated_encodings_never_crash(msg: Message, data: st.DataObject) -> None:
    enc = bytearray(encode(msg))
    i = data.draw(st.integers(0, len(enc) - 1))
    enc[i] = data.draw(st.integers(0, 255))
    decodes_or_malformed(bytes(enc))


# --- docs cannot drift ----------------------------------------------------------------------


def test_docs_embed_the_schema_table() -> None:
    assert codec.wire_format_table() in DOCS.read_text(encoding="utf-8")


def test_docs_hex_example_matches_the_codec() -> None:
    text = DOCS.read_text(encoding="utf-8")
    m = re.search(r"<!-- example-hex -->\n```\n(.*?)```", text, re.S)
    assert m, "docs/wire-format.md lost its example hex dump"
    dumped = bytes.fromhex("".join(line.split("  ")[1] for line in m.group(1).splitlines()))
    assert dumped == encode_envelope(doc_example())


def doc_example() -> Envelope:
    """The envelope whose bytes docs/wire-format.md shows (keep in sync with the doc text)."""
    eth = Asset(1, bytes.fromhex("ee" * 20))
    state = State(b"\xc1" * 32, 1, Allocation((eth,), ((5, 1000),)))
    return Envelope(alice(), bob(), ChannelUpdate(state, 0, b"\x5a" * 65))


def test_nesting_bombs_are_malformed_even_with_a_raised_recursion_limit() -> None:
    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # what py_ecc does on import (web3 pulls it in)
    try:
        malformed(bytes([WIRE_VERSION]) + b"\x91" * 100_000 + b"\xc0")
        assert sys.getrecursionlimit() == 100_000  # restored after decoding
    finally:
        sys.setrecursionlimit(old)


# --- the format did not change ----------------------------------------------------------------


def rich_state() -> State:
    """A state using every part of the schema: several assets, sub-allocations, an app."""
    eth = Asset(1, bytes.fromhex("ee" * 20))
    tok = Asset(2**200, b"token")
    alloc = Allocation(
        (eth, tok),
        ((0, 1, 2**64), (U256, 255, 256)),
        (SubAlloc(b"\x05" * 32, (7, 0), (2, 0, 1)), SubAlloc(b"\x06" * 32, (1, 2**255), (1,))),
    )
    return State(b"\x04" * 32, U64, alloc, b"\xab" * 64, b"app-data", True)


# The messages the golden digest was taken over (later messages have their own samples).
GOLDEN_SAMPLES = [
    m for cls, m in SAMPLES.items() if cls not in (SubChannelProposal, SubChannelProposalAcc)
]
GOLDEN_SHA256 = "647f2e12e7d0fb24e393240b1ba902aacee83de4e687d52b2d5970ecc7dfb7e6"


def golden_corpus() -> list[bytes]:
    rich_tx = Transaction(rich_state(), (None, b"\x03" * 65, b""))
    return [
        *(encode(m) for m in GOLDEN_SAMPLES),
        encode(ChannelSync(b"\x09" * 32, 255, rich_tx, rich_tx, U64, reply=True)),
        encode_envelope(doc_example()),
        encode_record(sample_record()),
        encode_state(rich_state()),
        encode_transaction(rich_tx),
    ]


def test_encodings_are_byte_for_byte_those_of_the_previous_codec() -> None:
    # The digest was taken from the schema-engine codec this one replaced; any change to the
    # bytes of any message or value breaks it (and compatibility with other builds).
    blob = b"".join(len(x).to_bytes(4, "big") + x for x in golden_corpus())
    assert hashlib.sha256(blob).hexdigest() == GOLDEN_SHA256
    for data in golden_corpus()[: len(GOLDEN_SAMPLES) + 1]:
        assert encode(decode(data)) == data


# --- no recursion beyond the schema -----------------------------------------------------------

BOMB = b"\x91" * 100_000 + b"\xc0"  # [[[[...nil...]]]], 100,000 deep
MARK = b"\xfe" * 13  # a marker value whose encoding we swap for the bomb


def schema_types(info: Any) -> Iterator[Any]:
    """Every type reachable from ``info`` (msgspec.inspect), each struct once."""
    seen: set[type] = set()
    todo = [info]
    while todo:
        t = todo.pop()
        yield t
        if isinstance(t, mi.StructType):
            if t.cls in seen:
                continue
            seen.add(t.cls)
            todo += [f.type for f in t.fields]
        elif isinstance(t, mi.UnionType):
            todo += t.types
        elif isinstance(t, mi.Metadata):
            todo.append(t.type)
        elif isinstance(t, (mi.ListType, mi.VarTupleType)):
            todo.append(t.item_type)


def depth(info: Any) -> int:
    """How many arrays deep a value of this type can nest."""
    if isinstance(info, mi.Metadata):
        return depth(info.type)
    if isinstance(info, mi.UnionType):
        return max(depth(t) for t in info.types)
    if isinstance(info, mi.StructType):
        return 1 + max((depth(f.type) for f in info.fields), default=0)
    if isinstance(info, (mi.ListType, mi.VarTupleType)):
        return 1 + depth(info.item_type)
    return 0


def test_every_decoder_is_typed_all_the_way_down() -> None:
    # msgspec recurses only where the type allows any value (Any, Raw, ext hooks) or into
    # nested arrays; with neither, a frame nests at most as deep as the schema, so no input
    # can exhaust the stack, whatever the recursion limit, and no clamp is needed.
    decoders = [codec._MESSAGE_DECODER, codec._ENVELOPE_DECODER, *codec._VALUE_DECODERS.values()]
    for dec in decoders:
        info = mi.type_info(dec.type)
        for t in schema_types(info):
            assert not isinstance(t, (mi.AnyType, mi.RawType, mi.CustomType, mi.ExtType)), t
        assert depth(info) <= 10


def bombed_variants(raw: Any) -> Iterator[bytes]:
    """The encoding of ``raw`` with each of its values, in turn, replaced by a nesting bomb."""

    def positions(value: Any, path: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        yield path
        if isinstance(value, list):
            for i, v in enumerate(value):
                yield from positions(v, (*path, i))

    def replaced(value: Any, path: tuple[int, ...]) -> Any:
        if not path:
            return MARK
        out = list(value)
        out[path[0]] = replaced(value[path[0]], path[1:])
        return out

    marker = msgspec.msgpack.encode(MARK)
    for path in positions(raw, ()):
        data = payload(replaced(raw, path))
        assert data.count(marker) == 1
        yield data.replace(marker, BOMB)


def test_nesting_bombs_anywhere_are_malformed_without_touching_the_recursion_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    def forbidden(limit: int) -> None:
        raise AssertionError("the codec changed the recursion limit")

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # what py_ecc does on import (web3 pulls it in)
    monkeypatch.setattr(sys, "setrecursionlimit", forbidden)
    try:
        rich_tx = Transaction(rich_state(), (None, b"\x03" * 65))
        sync = ChannelSync(b"\x09" * 32, 3, rich_tx, rich_tx, 1)
        cases: list[tuple[Callable[[bytes], object], bytes]] = [
            (decode, encode(sync)),
            (decode, encode(SAMPLES[LedgerChannelProposal])),
            (decode_envelope, encode_envelope(Envelope(alice(), bob(), sync))),
            (decode_record, encode_record(sample_record())),
        ]
        n = 0
        for decoder, good in cases:
            for data in bombed_variants(raw_of(good)):
                with pytest.raises(MalformedMessageError):
                    decoder(data)
                n += 1
        assert n > 150  # every value of every case, down to single balances and signatures
    finally:
        monkeypatch.undo()
        sys.setrecursionlimit(old)


def test_decoding_needs_only_a_few_frames_of_stack() -> None:
    # The deepest valid frame decodes with little headroom: the depth is the schema's, fixed.
    import sys

    data = encode_envelope(Envelope(alice(), bob(), ChannelSync(b"\x09" * 32, 3, None, None, 0)))
    rich_tx = Transaction(rich_state(), (None, b"\x03" * 65))
    deep = encode_envelope(Envelope(alice(), bob(), ChannelSync(b"\x09" * 32, 3, rich_tx, None, 0)))

    def at_depth(n: int) -> Envelope:
        return at_depth(n - 1) if n else decode_envelope(deep)

    old = sys.getrecursionlimit()
    here = len(inspect.stack())
    try:
        sys.setrecursionlimit(here + 60)
        assert at_depth(10).msg == decode_envelope(deep).msg  # type: ignore[union-attr]
    finally:
        sys.setrecursionlimit(old)
    assert decode_envelope(data).msg.current is None  # type: ignore[attr-defined]


# --- error texts name the field on encoding too ------------------------------------------------


def test_encode_errors_name_the_field_in_envelopes_and_values() -> None:
    bad_state = sample_state(version=2**64)
    with pytest.raises(MalformedMessageError, match=r"msg\.state\.version"):
        encode_envelope(Envelope(alice(), bob(), ChannelUpdate(bad_state, 0, b"s")))
    with pytest.raises(MalformedMessageError, match="sender: expected an Address"):
        encode_envelope(Envelope(b"alice", bob(), Ping(1)))  # type: ignore[arg-type]
    with pytest.raises(MalformedMessageError, match=r"msg\.actor_idx: Expected `int` <= 65535"):
        encode_envelope(Envelope(alice(), bob(), ChannelUpdate(sample_state(), 2**16, b"s")))
    with pytest.raises(MalformedMessageError, match=r"state\.allocation\.balances\[0\]\[1\]"):
        encode_transaction(Transaction(with_balances(1, True), (None, None)))
    with pytest.raises(MalformedMessageError, match=r"params\.backend: string longer than 64"):
        encode_record(
            sample_record().evolve(params=replace(sample_record().params, backend="é" * 40))
        )
    with pytest.raises(MalformedMessageError, match=r"allocation\.assets\[0\]: expected an Asset"):
        encode_state(sample_state(allocation=Allocation(("eth",), ((1, 2),))))  # type: ignore[arg-type]


def test_decode_errors_of_post_checks_name_the_field() -> None:
    rich_tx = Transaction(rich_state(), (None, b"\x03" * 65))
    raw = raw_of(encode(ChannelSync(b"\x09" * 32, 3, None, rich_tx, 1)))
    raw[4][0][2][2][1][1][1] = b"\x00\x01"  # pending.state.allocation.locked[1].balances[1]
    malformed(
        payload(raw),
        "ChannelSync (code 48): pending.state.allocation.locked[1].balances[1]",
        "non-canonical",
    )
    prop = raw_of(encode(SAMPLES[LedgerChannelProposal]))
    prop[8] = [[b"\x01", b"\x00"]]
    malformed(payload(prop), "funding_agreement[0][1]", "non-canonical")
    prop = raw_of(encode(SAMPLES[LedgerChannelProposal]))
    prop[2] = "é" * 33  # 33 characters, 66 bytes
    malformed(payload(prop), "LedgerChannelProposal (code 16): backend", "64 UTF-8 bytes")


def test_envelope_errors_name_the_message() -> None:
    good = raw_of(encode_envelope(doc_example()))
    good[2][1][1] = -1  # the state's version
    with pytest.raises(MalformedMessageError, match=r"ChannelUpdate \(code 32\): state\.version"):
        decode_envelope(payload(good))
    good = raw_of(encode_envelope(doc_example()))
    good[2][0] = 77
    with pytest.raises(MalformedMessageError, match="unknown message type code 77"):
        decode_envelope(payload(good))
