"""The pure encodings and signatures of perun_eth.encoding: the documented test vector,
agreement with eth_abi's generic encoder, and the refusal of malformed input."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode as abi_encode
from eth_helpers import ALICE, ALICE_KEY, BOB, BOB_KEY, make_params, make_state
from hypothesis import given, settings
from hypothesis import strategies as st
from perun_eth import encoding
from perun_eth.encoding import (
    SECP256K1_N,
    EthSignatureFormatError,
    address_of,
    channel_id,
    check_signature_format,
    encode_params,
    encode_state,
    encode_state_reference,
    encode_withdrawal_auth,
    funding_id,
    hash_state,
    keccak256,
    recover_signer,
    recover_withdrawal_signer,
    sign_state,
    sign_withdrawal_auth,
    signed_digest,
    verify_state,
    withdrawal_digest,
)
from perun_eth.errors import UnsupportedParamsError

from perun_core.channel import Allocation, Asset, Params, State, SubAlloc
from perun_core.channel.types import Address
from perun_core.errors import (
    BalanceOverflowError,
    InvalidAllocationError,
    InvalidStateError,
    MalformedSignatureError,
    NegativeBalanceError,
    NotSupportedError,
)

W = 32
RECEIVER = Address.from_hex("0x62F51cEce76e32232E7A58dB7EEE4EC34A2A1494")


def word(n: int) -> bytes:
    return n.to_bytes(W, "big")


def vector() -> tuple[Params, State]:
    p = make_params(nonce=0xB0B0FACE)
    s = make_state(p, [Asset(31337, b"\x11" * 20)], [[10**18, 2 * 10**18]], version=5, final=True)
    return p, s


def test_keys_and_addresses() -> None:
    assert Address.from_hex("0xC325649e8f5aae5ffB4a0fb6e32d97689019210E") == ALICE
    assert Address.from_hex("0x0BD779D2753029B52d1FEfD26f62B52c104E27c7") == BOB
    assert address_of(ALICE_KEY) == ALICE


def test_vector_params() -> None:
    p, _ = vector()
    enc = encode_params(p)
    assert len(enc) == 320
    words = [enc[i : i + W] for i in range(0, 320, W)]
    assert words[:8] == [
        word(0x20),
        word(60),
        word(0xB0B0FACE),
        word(0xC0),
        word(0),
        word(1),
        word(0),
        word(2),
    ]
    assert words[8] == bytes(12) + ALICE.raw and words[9] == bytes(12) + BOB.raw
    assert channel_id(p).hex() == "763660f9c482e6e749e4f9c5d6c53c3b17d260ed88ce6b73cd2ef0e71e180a1c"


def test_vector_state() -> None:
    p, s = vector()
    enc = encode_state(s)
    assert len(enc) == 608
    expected = {
        0x000: word(0x20),
        0x020: p.id,
        0x040: word(5),
        0x060: word(0xA0),
        0x080: word(0x220),
        0x0A0: word(1),
        0x0C0: word(0x60),
        0x0E0: word(0xC0),
        0x100: word(0x160),
        0x120: word(1),
        0x140: word(31337),
        0x160: bytes(12) + b"\x11" * 20,
        0x180: word(1),
        0x1A0: word(0x20),
        0x1C0: word(2),
        0x1E0: word(10**18),
        0x200: word(2 * 10**18),
        0x220: word(0),
        0x240: word(0),
    }
    assert {off: enc[off : off + W] for off in expected} == expected
    assert hash_state(s).hex() == "2967753697b4b018e94cdd0bfd7007b3dae8e993034cd006d76fcfe708dab491"
    assert signed_digest(s).hex() == (
        "62ab3eaf973f2c07f0f890eaa10091127f3ce6923ecbffdd8eee1e3ea5116df3"
    )
    assert sign_state(ALICE_KEY, s).hex() == (
        "159eaf9a6a41f948974795ad2f12a46632825e537c96a3e748d522454015ac12"
        "321d7beef7381df881241ff10ee305275e0a26af69dadef506c7c26c444fe5971b"
    )
    assert sign_state(BOB_KEY, s).hex() == (
        "6cb727b9cf7c0ea7a9f4474c5f032e78f1125b5b59dd11b17dad7e6306258723"
        "0ccf578e635733789c5c411153e549f238ce2a4a6e37c9156a5c5c934b76425b1b"
    )
    assert recover_signer(s, sign_state(BOB_KEY, s)) == BOB


def test_vector_funding_and_withdrawal() -> None:
    p, _ = vector()
    assert funding_id(p.id, ALICE).hex() == (
        "b2c52de49bba4752b69bf1713ea0096c30aaf604147b261da52b25d43f253edd"
    )
    assert funding_id(p.id, BOB).hex() == (
        "f2a6fd200af5d3df7d724b91f48c2371cd0ad5ebd9053372b1470f3af4d5953e"
    )
    auth = encode_withdrawal_auth(p.id, ALICE, RECEIVER, 10**18)
    assert len(auth) == 128
    assert auth == abi_encode(
        ["bytes32", "address", "address", "uint256"], [p.id, ALICE.raw, RECEIVER.raw, 10**18]
    )
    assert withdrawal_digest(p.id, ALICE, RECEIVER, 10**18).hex() == (
        "4146c6f5fe8f29c95ebd67ad8373ba1b1865ca928ce9fe254c683d62a8bb1512"
    )
    sig = sign_withdrawal_auth(ALICE_KEY, p.id, ALICE, RECEIVER, 10**18)
    assert sig.hex() == (
        "1f3daaab940d90adcd407d62838e88db494ff767648bdfa9fc4a5d869e2d1509"
        "7f3e223d612910e6754954b5f49633208123ee429c21249fe5a2c8fae2b14c631b"
    )
    assert recover_withdrawal_signer(p.id, ALICE, RECEIVER, 10**18, sig) == ALICE
    assert recover_withdrawal_signer(p.id, ALICE, RECEIVER, 10**18 + 1, sig) != ALICE


_u256 = st.integers(0, 2**256 - 1)


@st.composite
def states(draw: st.DrawFn) -> State:
    n = draw(st.integers(1, 4))
    k = draw(st.integers(0, 3))
    assets = [Asset(draw(_u256), draw(st.binary(min_size=20, max_size=20))) for _ in range(k)]
    balances = [[draw(_u256) for _ in range(n)] for _ in range(k)]
    locked = [
        SubAlloc(
            draw(st.binary(min_size=32, max_size=32)),
            tuple(draw(_u256) for _ in range(k)),
            tuple(draw(st.lists(st.integers(0, 2**16 - 1), max_size=4))),
        )
        for _ in range(draw(st.integers(0, 2)))
    ]
    return State(
        channel_id=draw(st.binary(min_size=32, max_size=32)),
        version=draw(st.integers(0, 2**64 - 1)),
        allocation=Allocation(tuple(assets), tuple(tuple(r) for r in balances), tuple(locked)),
        data=draw(st.binary(max_size=80)),
        is_final=draw(st.booleans()),
    )


@settings(max_examples=60, deadline=None)
@given(states())
def test_encode_state_is_the_abi_encoding(s: State) -> None:
    alloc = s.allocation
    generic = abi_encode(
        [
            "(bytes32,uint64,((uint256,address)[],uint256[][],(bytes32,uint256[],uint16[])[]),bytes,bool)"
        ],
        [
            (
                s.channel_id,
                s.version,
                (
                    [(a.ledger_id, a.holder) for a in alloc.assets],
                    [list(r) for r in alloc.balances],
                    [(x.id, list(x.balances), list(x.index_map)) for x in alloc.locked],
                ),
                s.data,
                s.is_final,
            )
        ],
    )
    assert encode_state(s) == generic
    assert hash_state(s) == keccak256(generic)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 2**32 - 1), _u256, st.integers(1, 5), st.booleans())
def test_encode_params_is_the_abi_encoding(cd: int, nonce: int, n: int, app: bool) -> None:
    parts = [Address(keccak256(bytes([i]))[:20]) for i in range(n)]
    app_id = b"\x42" * 20 if app else None
    p = Params(challenge_duration=cd, participants=tuple(parts), nonce=nonce, app=app_id)
    generic = abi_encode(
        ["(uint256,uint256,address[],address,bool,bool)"],
        [(cd, nonce, [x.raw for x in parts], app_id or bytes(20), True, False)],
    )
    assert encode_params(p) == generic
    assert channel_id(p) == keccak256(generic)


@settings(max_examples=20, deadline=None)
@given(states(), st.binary(min_size=32, max_size=32))
def test_sign_and_recover_roundtrip(s: State, secret: bytes) -> None:
    if not 0 < int.from_bytes(secret, "big") < SECP256K1_N:
        return
    sig = sign_state(secret, s)
    assert len(sig) == 65 and sig[64] in (27, 28)
    assert int.from_bytes(sig[32:64], "big") <= SECP256K1_N // 2
    assert verify_state(address_of(secret), s, sig)
    assert not verify_state(ALICE, s.replace(version=(s.version + 1) % 2**64), sig) or (
        address_of(secret) != ALICE
    )


def test_malformed_signatures_are_refused() -> None:
    _, s = vector()
    sig = sign_state(ALICE_KEY, s)
    r, sv = sig[:32], int.from_bytes(sig[32:64], "big")
    cases = {
        "ECDSA: invalid signature length": [sig[:64], sig + b"\x00", b""],
        "ECDSA: invalid signature 'v' value": [sig[:64] + bytes((v,)) for v in (0, 1, 26, 29)],
        "ECDSA: invalid signature 's' value": [
            r + (SECP256K1_N - sv).to_bytes(32, "big") + bytes((55 - sig[64],))
        ],
        "ECDSA: invalid signature": [bytes(32) + sig[32:], sig[:32] + bytes(32) + sig[64:]],
    }
    for reason, sigs in cases.items():
        for bad in sigs:
            with pytest.raises(EthSignatureFormatError) as e:
                recover_signer(s, bad)
            assert e.value.reason == reason
            assert isinstance(e.value, MalformedSignatureError)
            with pytest.raises(MalformedSignatureError):
                check_signature_format(bad)
    # A well-formed signature by someone else, or on other data, verifies as False.
    assert not verify_state(BOB, s, sig)
    assert not verify_state(ALICE, s.replace(version=6), sig)


def test_params_that_ethereum_cannot_express() -> None:
    with pytest.raises(UnsupportedParamsError) as e:
        encode_params(Params(challenge_duration=60, participants=(ALICE, BOB), nonce=1, aux=b"x"))
    assert isinstance(e.value, NotSupportedError)
    with pytest.raises(UnsupportedParamsError):
        encode_params(Params(60, (ALICE, Address(b"\x01" * 32)), 1))
    with pytest.raises(UnsupportedParamsError):
        encode_params(Params(60, (ALICE, BOB), 1, app=b"\x01" * 32))
    with pytest.raises(UnsupportedParamsError):
        encode_params(Params(60, (ALICE, BOB), 1, app=bytes(20)))
    with pytest.raises(UnsupportedParamsError):
        funding_id(b"\x00" * 32, Address(b"\x01" * 21))


def test_states_that_do_not_encode_raise_typed_errors() -> None:
    p, s = vector()
    a = s.allocation
    with pytest.raises(NegativeBalanceError):
        encode_state(s.replace(allocation=Allocation(a.assets, ((-1, 0),))))
    with pytest.raises(BalanceOverflowError):
        encode_state(s.replace(allocation=Allocation(a.assets, ((2**256, 0),))))
    with pytest.raises(InvalidStateError) as e:
        encode_state(s.replace(version=2**64))
    assert e.value.rule == "state-version"
    with pytest.raises(InvalidAllocationError):
        encode_state(s.replace(allocation=Allocation((Asset(1, b"\x01" * 21),), ((1, 1),))))
    with pytest.raises(InvalidAllocationError):
        bad_sub = SubAlloc(b"\x01" * 32, (1,), (2**16,))
        encode_state(s.replace(allocation=Allocation(a.assets, a.balances, (bad_sub,))))
    with pytest.raises(InvalidStateError):
        encode_state(s.replace(channel_id=b"\x01" * 31))
    with pytest.raises(ValueError):
        encode_withdrawal_auth(p.id, ALICE, BOB, -1)


# --- the hand-built state encoder equals eth_abi's ------------------------------------------

_uint = st.integers(min_value=0, max_value=2**256 - 1)


@st.composite
def _states(draw: st.DrawFn) -> State:
    n_assets = draw(st.integers(1, 3))
    n_parts = draw(st.integers(1, 3))
    assets = tuple(
        Asset(draw(_uint), draw(st.binary(min_size=20, max_size=20))) for _ in range(n_assets)
    )
    balances = tuple(tuple(draw(_uint) for _ in range(n_parts)) for _ in range(n_assets))
    locked = tuple(
        SubAlloc(
            draw(st.binary(min_size=32, max_size=32)),
            tuple(draw(_uint) for _ in range(n_assets)),
            tuple(draw(st.integers(0, 2**16 - 1)) for _ in range(n_parts)),
        )
        for _ in range(draw(st.integers(0, 2)))
    )
    return State(
        channel_id=draw(st.binary(min_size=32, max_size=32)),
        version=draw(st.integers(0, 2**64 - 1)),
        allocation=Allocation(assets, balances, locked),
        data=draw(st.binary(max_size=70)),
        is_final=draw(st.booleans()),
    )


@settings(max_examples=300, deadline=None)
@given(_states())
def test_the_fast_state_encoder_equals_eth_abi(state: State) -> None:
    assert encode_state(state) == encode_state_reference(state)


# --- Keccak-256: the fast implementation and the fallback agree -----------------------------

KECCAK_VECTORS = [
    (b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
    (b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
]


@pytest.mark.parametrize(("data", "digest"), KECCAK_VECTORS)
def test_keccak256_matches_known_digests(data: bytes, digest: str) -> None:
    assert keccak256(data).hex() == digest
    assert encoding.keccak256_pycryptodome(data).hex() == digest


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_both_keccak_implementations_agree(data: bytes) -> None:
    fast = encoding.keccak256_pysha3
    if fast is None:
        pytest.skip("safe-pysha3 (perun-eth[fast]) is not installed")
    assert fast(data) == encoding.keccak256_pycryptodome(data) == keccak256(data)


def test_the_fastest_installed_keccak_is_the_one_used() -> None:
    expected = encoding.keccak256_pysha3 or encoding.keccak256_pycryptodome
    assert keccak256 is expected
