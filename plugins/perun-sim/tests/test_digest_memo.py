"""The sim backend remembers recent state digests; results never differ from hashing anew."""

from __future__ import annotations

from perun_sim import SimBackend
from perun_sim.backend import _DIGEST_MEMO
from perun_sim.encoding import hash_state

from perun_core.channel import Allocation, State


def _state(version: int, balance: int = 10) -> State:
    asset = SimBackend().default_assets()[0]
    return State(b"\x01" * 32, version, Allocation((asset,), ((balance, 5),)))


def test_signing_and_verifying_the_same_object_twice_agree_with_fresh_hashes() -> None:
    backend = SimBackend()
    alice = backend.wallet().add_seed(b"memo-alice")
    bob = backend.wallet().add_seed(b"memo-bob")
    st = _state(3)
    sig_a = backend.sign_state(alice, st)  # memoises st's digest
    assert backend.verify_state(alice.address, st, sig_a)  # from the memo
    assert not backend.verify_state(bob.address, st, sig_a)
    # An equal state in another object, and a different state: hashed, not confused.
    assert backend.verify_state(alice.address, _state(3), sig_a)
    assert not backend.verify_state(alice.address, _state(3, balance=11), sig_a)
    assert backend._digest(st) == hash_state(st)


def test_the_memo_is_bounded_and_never_returns_another_objects_digest() -> None:
    backend = SimBackend()
    states = [_state(v) for v in range(_DIGEST_MEMO + 100)]
    for st in states:
        assert backend._digest(st) == hash_state(st)
    assert len(backend._digests) <= _DIGEST_MEMO
    # Each of the newest is still answered correctly.
    for st in states[-10:]:
        assert backend._digest(st) == hash_state(st)
    # A dead state's ID may be reused by a new object: never a stale answer.
    for v in range(200):
        fresh = _state(10**6 + v)
        assert backend._digest(fresh) == hash_state(fresh)
