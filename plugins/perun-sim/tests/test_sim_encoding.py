"""Channel IDs bind every params field (aux included, D9); state encodings are canonical."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from perun_sim import PAYMENT_APP_ID, SimAccount, SimBackend
from perun_sim.encoding import encode_state, funding_id, hash_state

from perun_core.channel import Allocation, Asset, Params, State, SubAlloc
from perun_core.channel.types import Address
from perun_core.errors import InvalidStateError, NegativeBalanceError

A = Address(b"\xaa" * 20)
B = Address(b"\xbb" * 20)
C = Address(b"\xcc" * 20)
BASE = Params(challenge_duration=60, participants=(A, B), nonce=7)


@pytest.mark.parametrize(
    "change",
    [
        {"challenge_duration": 61},
        {"participants": (B, A)},
        {"participants": (A, C)},
        {"participants": (A, B, C)},
        {"nonce": 8},
        {"nonce": 2**255},
        {"app": PAYMENT_APP_ID},
        {"ledger_channel": False},
        {"ledger_channel": False, "virtual_channel": True},
        {"aux": b"\x00"},
        {"aux": b"hello"},
    ],
)
def test_channel_id_binds_every_field(backend: SimBackend, change: dict[str, object]) -> None:
    other = dataclasses.replace(BASE, **change)  # type: ignore[arg-type]
    assert backend.channel_id(other) != backend.channel_id(BASE)


def test_channel_id_ignores_backend_name_and_is_stable(backend: SimBackend) -> None:
    cid = backend.channel_id(BASE)
    assert len(cid) == 32
    assert backend.channel_id(dataclasses.replace(BASE, backend="other")) == cid
    assert BASE.with_id(backend).id == cid


def _state(**kw: object) -> State:
    base: dict[str, object] = {
        "channel_id": b"\x01" * 32,
        "version": 3,
        "allocation": Allocation(
            (Asset(1337, b"ETH"), Asset(1337, b"PRN")),
            ((10, 20), (0, 2**255)),
            (SubAlloc(b"\x02" * 32, (1, 2), (0, 1)),),
        ),
        "app": None,
        "data": b"",
        "is_final": False,
    }
    base.update(kw)
    return State(**base)  # type: ignore[arg-type]


S0 = _state()
ALLOC = S0.allocation


def _locked(*subs: SubAlloc) -> Allocation:
    return dataclasses.replace(ALLOC, locked=subs)


@pytest.mark.parametrize(
    "other",
    [
        _state(channel_id=b"\x03" * 32),
        _state(version=4),
        _state(is_final=True),
        _state(app=PAYMENT_APP_ID),
        _state(data=b"\x00"),
        _state(allocation=dataclasses.replace(ALLOC, balances=((20, 10), (0, 2**255)))),
        _state(allocation=dataclasses.replace(ALLOC, balances=((10, 20), (2**255, 0)))),
        _state(allocation=dataclasses.replace(ALLOC, assets=(ALLOC.assets[1], ALLOC.assets[0]))),
        _state(allocation=dataclasses.replace(ALLOC, assets=(Asset(1, b"ETH"), ALLOC.assets[1]))),
        _state(allocation=dataclasses.replace(ALLOC, locked=())),
        _state(allocation=_locked(SubAlloc(b"\x04" * 32, (1, 2), (0, 1)))),
        _state(allocation=_locked(SubAlloc(b"\x02" * 32, (2, 1), (0, 1)))),
        _state(allocation=_locked(SubAlloc(b"\x02" * 32, (1, 2), (1, 0)))),
    ],
)
def test_encode_state_covers_every_field(other: State) -> None:
    assert encode_state(other) != encode_state(S0)
    assert hash_state(other) != hash_state(S0)


def test_encode_state_is_deterministic() -> None:
    copy = _state()
    assert copy is not S0
    assert encode_state(copy) == encode_state(S0)


def test_encode_state_refuses_unencodable_values() -> None:
    with pytest.raises(NegativeBalanceError):
        encode_state(_state(allocation=dataclasses.replace(ALLOC, balances=((-1, 20), (0, 0)))))
    with pytest.raises(InvalidStateError):
        encode_state(_state(version=2**64))


_balances = st.lists(st.integers(0, 2**256 - 1), min_size=2, max_size=2)


@settings(max_examples=60, deadline=None)
@given(
    v1=st.integers(0, 2**64 - 1),
    v2=st.integers(0, 2**64 - 1),
    b1=_balances,
    b2=_balances,
    f1=st.booleans(),
    f2=st.booleans(),
    d1=st.binary(max_size=8),
    d2=st.binary(max_size=8),
)
def test_distinct_states_have_distinct_encodings(
    v1: int, v2: int, b1: list[int], b2: list[int], f1: bool, f2: bool, d1: bytes, d2: bytes
) -> None:
    def mk(v: int, b: list[int], f: bool, d: bytes) -> State:
        return State(b"\x01" * 32, v, Allocation((Asset(1337, b"ETH"),), (tuple(b),)), None, d, f)

    s1, s2 = mk(v1, b1, f1, d1), mk(v2, b2, f2, d2)
    assert (encode_state(s1) == encode_state(s2)) == (s1 == s2)


def test_sign_and_verify_state(backend: SimBackend) -> None:
    alice, bob = SimAccount.from_seed(b"alice"), SimAccount.from_seed(b"bob")
    sig = backend.sign_state(alice, S0)
    assert backend.verify_state(alice.address, S0, sig)
    assert not backend.verify_state(bob.address, S0, sig)
    assert not backend.verify_state(alice.address, _state(version=4), sig)
    # the state signature is the account's signature over the encoding
    assert backend.verify_signature(alice.address, encode_state(S0), sig)


def test_funding_id_binds_channel_and_participant() -> None:
    c1, c2 = b"\x01" * 32, b"\x02" * 32
    ids = {funding_id(c, p) for c in (c1, c2) for p in (A, B)}
    assert len(ids) == 4


def test_payment_app_id_and_assets(backend: SimBackend) -> None:
    assert backend.payment_app_id() == PAYMENT_APP_ID
    assert len(PAYMENT_APP_ID) == 20
    (native,) = backend.default_assets()
    assert native == Asset(1337, b"ETH")
    assert backend.asset("PRN") == Asset(1337, b"PRN")
