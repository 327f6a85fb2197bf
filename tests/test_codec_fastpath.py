"""The codec's fast paths (states, allocations, transactions) equal its schema-driven path.

The fast paths exist only for speed (docs/performance.md). For every value, valid or not,
they must return exactly what the generic ``_Struct`` code returns, or fail with the same
reason at the same field path; the generic code stays the definition of the format.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from perun_core.channel import Allocation, Asset, State, SubAlloc, Transaction
from perun_core.wire import codec

U256 = 2**256 - 1
U64 = 2**64 - 1


class _Int(int):
    """An int subclass: the fast paths leave it to the generic code."""


# References: the same schema with plain _Struct kinds all the way down (no fast path).
REF_ALLOCATION = codec._Struct(Allocation, codec._ALLOCATION.fields)
REF_STATE = codec._Struct(
    State,
    tuple((n, REF_ALLOCATION if k is codec._ALLOCATION else k) for n, k in codec._STATE.fields),
)
REF_TRANSACTION = codec._Struct(
    Transaction,
    tuple((n, REF_STATE if k is codec._STATE else k) for n, k in codec._TRANSACTION.fields),
)

# Values that are almost right, to hit every check of the fast paths.
odd = st.sampled_from(
    [-1, 2**256, 2**64, True, False, _Int(5), 1.0, "1", None, b"\x01", bytearray(b"\x01"), []]
)
valid_assets = st.builds(Asset, st.integers(0, U256), st.binary(min_size=1, max_size=64))


@st.composite
def valid_allocations(draw: st.DrawFn) -> Allocation:
    n = draw(st.integers(1, 3))
    assets_ = draw(st.lists(valid_assets, min_size=1, max_size=3, unique=True))
    rows = tuple(
        tuple(draw(st.lists(st.integers(0, U256), min_size=n, max_size=n))) for _ in assets_
    )
    locked: tuple[SubAlloc, ...] = ()
    if draw(st.integers(0, 4)) == 0:
        locked = (SubAlloc(b"\x07" * 32, tuple(1 for _ in assets_), (0,)),)
    return Allocation(tuple(assets_), rows, locked)


def _set(obj: Any, field: str, value: Any) -> None:
    object.__setattr__(obj, field, value)  # past the constructor, as a buggy caller could


@st.composite
def allocations(draw: st.DrawFn) -> Any:
    """A valid allocation, or one with exactly one defect anywhere in it."""
    alloc = draw(valid_allocations())
    where = draw(st.sampled_from(["none", "none", "balance", "row", "rows", "asset", "assets"]))
    if where == "balance":
        rows = [list(r) for r in alloc.balances]
        a = draw(st.integers(0, len(rows) - 1))
        rows[a][draw(st.integers(0, len(rows[a]) - 1))] = draw(odd)
        _set(alloc, "balances", tuple(tuple(r) for r in rows))
    elif where == "row":
        rows = list(alloc.balances)
        rows[draw(st.integers(0, len(rows) - 1))] = draw(odd | st.just([1, 2]))
        _set(alloc, "balances", tuple(rows))
    elif where == "rows":
        _set(alloc, "balances", draw(odd | st.just([(1, 2)])))
    elif where == "asset":
        assets_ = list(alloc.assets)
        assets_[draw(st.integers(0, len(assets_) - 1))] = draw(odd)
        _set(alloc, "assets", tuple(assets_))
    elif where == "assets":
        _set(alloc, "assets", draw(odd | st.just(list(alloc.assets))))
    return alloc


@st.composite
def states(draw: st.DrawFn) -> Any:
    """A valid state, or one with exactly one defect anywhere in it."""
    state = State(
        channel_id=draw(st.binary(min_size=32, max_size=32)),
        version=draw(st.integers(0, U64)),
        allocation=draw(allocations()),
        app=draw(st.none() | st.binary(min_size=1, max_size=64)),
        data=draw(st.binary(max_size=10)),
        is_final=draw(st.booleans()),
    )
    field = draw(st.sampled_from(["none", "none", "none", *State.__dataclass_fields__]))
    if field != "none" and field != "allocation":
        bad: Any = draw(
            odd | st.binary(max_size=70) | st.sampled_from([U64 + 1, 2**64 - 1, b"", b"x" * 65])
        )
        _set(state, field, bad)
    return state


@st.composite
def transactions(draw: st.DrawFn) -> Any:
    n = draw(st.integers(0, 3))
    sigs = draw(st.lists(st.none() | st.binary(max_size=80), min_size=n, max_size=n))
    if sigs and draw(st.booleans()):
        sigs[draw(st.integers(0, n - 1))] = draw(odd | st.just(b"x" * (codec.MAX_SIG_LEN + 1)))
    tx = Transaction(draw(states()), tuple(sigs))
    if draw(st.integers(0, 9)) == 0:
        _set(tx, "sigs", list(sigs))  # a list, not a tuple
    return tx


def _outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(value)
    except codec._Bad as e:
        return "bad", (e.reason, e.path())


@settings(max_examples=500)
@given(allocations())
def test_allocation_encoding_equals_the_schema(alloc: Any) -> None:
    assert _outcome(codec._ALLOCATION.enc, alloc) == _outcome(REF_ALLOCATION.enc, alloc)


@settings(max_examples=500)
@given(states())
def test_state_encoding_equals_the_schema(state: Any) -> None:
    assert _outcome(codec._STATE.enc, state) == _outcome(REF_STATE.enc, state)


@settings(max_examples=300)
@given(transactions())
def test_transaction_encoding_equals_the_schema(tx: Any) -> None:
    assert _outcome(codec._TRANSACTION.enc, tx) == _outcome(REF_TRANSACTION.enc, tx)


# --- decoding: valid encodings with one node replaced ---------------------------------------

replacements = st.one_of(
    st.integers(-5, 2**70),
    st.booleans(),
    st.none(),
    st.binary(max_size=40),
    st.just(b"\x00\x01"),  # a non-canonical integer
    st.just(b"\x00" * 33),
    st.just("text"),
    st.just([]),
    st.lists(st.binary(max_size=3), max_size=3),
)


def _paths(raw: Any, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    out = [prefix]
    if isinstance(raw, list):
        for i, x in enumerate(raw):
            out += _paths(x, (*prefix, i))
    return out


def _replace(raw: Any, path: tuple[int, ...], value: Any) -> Any:
    if not path:
        return value
    copy = list(raw)
    copy[path[0]] = _replace(raw[path[0]], path[1:], value)
    return copy


valid_states = st.builds(
    State,
    channel_id=st.binary(min_size=32, max_size=32),
    version=st.integers(0, U64),
    allocation=st.builds(
        Allocation,
        st.just((Asset(1, b"ETH"), Asset(2**200, b"\xff" * 64))),
        st.tuples(
            st.tuples(st.integers(0, U256), st.integers(0, U256)),
            st.tuples(st.integers(0, U256), st.integers(0, U256)),
        ),
    ),
    app=st.none() | st.binary(min_size=1, max_size=64),
    data=st.binary(max_size=10),
    is_final=st.booleans(),
)


@settings(max_examples=500)
@given(valid_states, st.data())
def test_state_decoding_equals_the_schema(state: State, data: st.DataObject) -> None:
    raw = REF_STATE.enc(state)
    assert codec._STATE.dec(raw) == REF_STATE.dec(raw) == state
    path = data.draw(st.sampled_from(_paths(raw)))
    mutated = _replace(raw, path, data.draw(replacements))
    assert _outcome(codec._STATE.dec, mutated) == _outcome(REF_STATE.dec, mutated)


def test_sub_allocations_take_the_schema_path_both_ways() -> None:
    alloc = Allocation((Asset(1, b"ETH"),), ((5, 6),), (SubAlloc(b"\x07" * 32, (3,), (0, 1)),))
    state = State(b"\x01" * 32, 3, alloc)
    encoded = codec.encode_state(state)
    assert codec.decode_state(encoded) == state
    raw = REF_STATE.enc(state)
    assert codec._STATE.enc(state) == raw
    assert codec._STATE.dec(raw) == REF_STATE.dec(raw) == state


# --- every check, once each, deterministically ------------------------------------------------

_BASE = State(
    b"\x01" * 32,
    9,
    Allocation((Asset(1, b"ETH"), Asset(7, b"\x02" * 64)), ((5, 2**255), (0, 1))),
    app=b"\x03" * 20,
)
_BASE_RAW = REF_STATE.enc(_BASE)
_DECODE_DEFECTS = [
    ((0,), b"\x01" * 31),  # channel ID length
    ((1,), -1),
    ((1,), 2**64),
    ((1,), True),
    ((2,), [[], [], []]),
    ((2, 0), [b"\x00" * 32]),  # asset encoding too short
    ((2, 0, 1), b"\x00" * 97),  # too long
    ((2, 0, 1), "ETH"),
    ((2, 1), [[b"\x05", b"\x01"]]),  # rows for fewer assets: decodes (validation's job)
    ((2, 1, 0, 0), b"\x00\x05"),  # non-canonical integer
    ((2, 1, 0, 0), b"\x01" * 33),  # above 2**256
    ((2, 1, 0, 0), 5),
    ((2, 1, 0), (b"\x05",)),
    ((2, 2), [[b"\x07" * 32, [b"\x01"], [0]]]),  # a sub-allocation: the schema's path
    ((2, 2), [None]),
    ((3,), b""),
    ((3,), b"\x03" * 65),
    ((4,), b"\x00" * (2**16 + 1)),
    ((5,), 0),
    ((5,), 1),
    ((5,), None),
]


def test_decoding_every_defect_equals_the_schema() -> None:
    for path, value in _DECODE_DEFECTS:
        raw = _replace(_BASE_RAW, path, value)
        assert _outcome(codec._STATE.dec, raw) == _outcome(REF_STATE.dec, raw), (path, value)


def test_encoding_every_defect_equals_the_schema() -> None:
    cases: list[tuple[str, Any]] = [
        ("channel_id", b"\x01" * 33),
        ("version", 2**64),
        ("version", True),
        ("version", _Int(3)),
        ("app", b""),
        ("app", b"\x00" * 65),
        ("app", "app"),
        ("data", bytearray(b"x")),
        ("data", b"\x00" * (2**16 + 1)),
        ("is_final", 0),
        ("is_final", 1.0),
    ]
    for field, value in cases:
        state = State(_BASE.channel_id, _BASE.version, _BASE.allocation, _BASE.app)
        _set(state, field, value)
        assert _outcome(codec._STATE.enc, state) == _outcome(REF_STATE.enc, state), field
    for balance in (-1, 2**256, True, _Int(1), 1.0):
        alloc = Allocation(_BASE.allocation.assets, ((balance, 1), (0, 1)))
        assert _outcome(codec._ALLOCATION.enc, alloc) == _outcome(REF_ALLOCATION.enc, alloc)
    for sig in (b"x" * (codec.MAX_SIG_LEN + 1), bytearray(b"x"), "sig"):
        tx = Transaction(_BASE, (b"\x01" * 65, sig))  # type: ignore[arg-type]
        assert _outcome(codec._TRANSACTION.enc, tx) == _outcome(REF_TRANSACTION.enc, tx)
