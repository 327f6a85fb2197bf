"""The sim signature scheme: secp256k1 over SHA3-256, 65-byte r‖s‖v with v ∈ {0,1}, low s."""

from __future__ import annotations

import hashlib

import pytest
from coincurve import PrivateKey
from perun_sim import SimAccount, SimBackend, SimWallet
from perun_sim.crypto import SECP256K1_N, SimSignatureFormatError, recover_address

from perun_core.channel.types import Address
from perun_core.errors import InvalidStateError, MalformedSignatureError


def _with_s(sig: bytes, s: int, flip_v: bool = False) -> bytes:
    v = sig[64] ^ 1 if flip_v else sig[64]
    return sig[:32] + s.to_bytes(32, "big") + bytes([v])


def test_address_is_last_20_bytes_of_sha3_of_public_key() -> None:
    acc = SimAccount.from_seed(b"alice")
    secret = hashlib.sha3_256(b"alice").digest()
    pub = PrivateKey(secret).public_key.format(compressed=False)[1:]
    assert len(pub) == 64
    assert acc.address.raw == hashlib.sha3_256(pub).digest()[-20:]
    assert acc.secret == secret
    assert SimAccount.from_seed(b"alice").address == acc.address  # deterministic
    assert SimAccount.from_seed(b"bob").address != acc.address


def test_sign_and_verify(backend: SimBackend) -> None:
    alice, bob = SimAccount.from_seed(b"alice"), SimAccount.from_seed(b"bob")
    sig = alice.sign(b"pay bob 5")
    assert len(sig) == 65 and sig[64] in (0, 1)
    assert backend.verify_signature(alice.address, b"pay bob 5", sig)
    assert not backend.verify_signature(bob.address, b"pay bob 5", sig)  # wrong signer
    assert not backend.verify_signature(alice.address, b"pay bob 6", sig)  # other message
    # the signed digest is SHA3-256 of the message
    digest = hashlib.sha3_256(b"pay bob 5").digest()
    assert recover_address(digest, sig) == alice.address.raw


def test_signatures_are_low_s() -> None:
    acc = SimAccount.from_seed(b"carol")
    for i in range(32):
        s = int.from_bytes(acc.sign(b"m%d" % i)[32:64], "big")
        assert 0 < s <= SECP256K1_N // 2


def test_high_s_twin_is_refused_as_malleable(backend: SimBackend) -> None:
    acc = SimAccount.from_seed(b"alice")
    sig = acc.sign(b"hello")
    s = int.from_bytes(sig[32:64], "big")
    twin = _with_s(sig, SECP256K1_N - s, flip_v=True)  # the same signature, high-s form
    with pytest.raises(MalformedSignatureError) as ei:
        backend.verify_signature(acc.address, b"hello", twin)
    assert ei.value.reason == "ECDSA: invalid signature 's' value"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda s: s[:64], "ECDSA: invalid signature length"),
        (lambda s: s + b"\x00", "ECDSA: invalid signature length"),
        (lambda s: b"", "ECDSA: invalid signature length"),
        (lambda s: s[:64] + bytes([27]), "ECDSA: invalid signature 'v' value"),
        (lambda s: s[:64] + bytes([2]), "ECDSA: invalid signature 'v' value"),
        (lambda s: bytes(32) + s[32:], "ECDSA: invalid signature"),  # r = 0
        (lambda s: s[:32] + bytes(32) + s[64:], "ECDSA: invalid signature"),  # s = 0
        (
            lambda s: SECP256K1_N.to_bytes(32, "big") + s[32:],  # r = n (out of range)
            "ECDSA: invalid signature",
        ),
    ],
)
def test_malformed_signatures_raise_typed_error(
    backend: SimBackend, mangle: object, reason: str
) -> None:
    acc = SimAccount.from_seed(b"alice")
    bad = mangle(acc.sign(b"x"))  # type: ignore[operator]
    with pytest.raises(SimSignatureFormatError) as ei:
        backend.verify_signature(acc.address, b"x", bad)
    assert isinstance(ei.value, MalformedSignatureError)
    assert ei.value.reason == reason


def test_unrecoverable_signature_is_malformed(backend: SimBackend) -> None:
    # r whose x-coordinate is not on the curve: well-formed bytes, but no key recovers
    acc = SimAccount.from_seed(b"alice")
    sig = acc.sign(b"x")
    for r in range(1, 50):
        bad = r.to_bytes(32, "big") + sig[32:]
        try:
            backend.verify_signature(acc.address, b"x", bad)
        except MalformedSignatureError as e:
            assert e.reason == "ECDSA: invalid signature"  # type: ignore[attr-defined]
            return
    pytest.fail("no unrecoverable r found")


def test_verify_state_with_malformed_sig(backend: SimBackend, chan) -> None:  # type: ignore[no-untyped-def]
    st = chan.state(0, [[5, 5]])
    with pytest.raises(MalformedSignatureError):
        backend.verify_state(chan.accounts[0].address, st, b"\x01" * 10)


def test_invalid_private_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        SimAccount(bytes(32))
    with pytest.raises(ValueError):
        SimAccount(SECP256K1_N.to_bytes(32, "big"))
    with pytest.raises(ValueError):
        SimAccount(b"\x01" * 31)


async def test_wallet_accounts_and_unlock() -> None:
    w = SimWallet()
    a = w.add_seed(b"alice")
    b = w.new_account()
    assert w.accounts() == [a.address, b.address]
    assert await w.unlock(a.address) is a
    with pytest.raises(KeyError):
        await w.unlock(Address(b"\x00" * 20))
    w.increment_usage(a.address)
    w.increment_usage(a.address)
    w.decrement_usage(a.address)
    assert w.usage(a.address) == 1
    w.decrement_usage(a.address)
    assert w.usage(a.address) == 0


def test_parse_address(backend: SimBackend) -> None:
    acc = SimAccount.from_seed(b"alice")
    assert backend.parse_address(acc.address.hex()) == acc.address
    assert backend.parse_address(acc.address.hex()[2:].upper()) == acc.address
    for bad in ("0x1234", "zz" * 20, "", "0x" + "00" * 21):
        with pytest.raises(InvalidStateError):
            backend.parse_address(bad)


def test_verification_throughput_is_in_the_thousands(backend: SimBackend) -> None:
    import time

    acc = SimAccount.from_seed(b"alice")
    sigs = [(b"m%d" % i, acc.sign(b"m%d" % i)) for i in range(200)]
    t = time.perf_counter()
    for m, s in sigs:
        assert backend.verify_signature(acc.address, m, s)
    rate = len(sigs) / (time.perf_counter() - t)
    assert rate > 1000, f"only {rate:.0f} verifications/s"
