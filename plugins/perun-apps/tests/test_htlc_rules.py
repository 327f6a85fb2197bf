"""The rules of the hash-time-locked payment: encoding, helpers, off-chain and on-chain
verdicts at the deadline's edges, and Mallory's attempts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from perun_apps import htlc
from perun_apps.htlc import Htlc, HtlcApp, claim, claimable, lock_data, new_secret, refund
from rules_helpers import params, state

from perun_core.errors import AppTransitionError, InvalidAppDataError

APP = HtlcApp(b"\xaa" * 20)
P = params()
PRE, LOCK = new_secret()
DEADLINE = 1_000_000


def pending(amount: int = 20, payer: int = 0, payee: int = 1, asset: int = 0):  # type: ignore[no-untyped-def]
    data = lock_data(
        payer=payer, payee=payee, amount=amount, lock=LOCK, deadline=DEADLINE, asset=asset
    )
    return state(P, data, (50, 5), (7, 8))


def ok(frm, to, actor: int, now: int | None) -> None:  # type: ignore[no-untyped-def]
    if now is None:
        APP.valid_transition(P, frm, to, actor)
    else:
        APP.valid_progress(P, frm, to, actor, now)


def no(frm, to, actor: int, now: int | None, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AppTransitionError, match=match):
        ok(frm, to, actor, now)


@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 2**256 - 1),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**64 - 1),
    st.one_of(st.none(), st.binary(min_size=32, max_size=32)),
)
def test_the_encoding_is_canonical(
    payer: int, payee: int, asset: int, amount: int, lock: bytes, deadline: int, pre: bytes | None
) -> None:
    if payer == payee:
        with pytest.raises(InvalidAppDataError):
            Htlc(payer, payee, asset, amount, lock, deadline, pre)
        return
    h = Htlc(payer, payee, asset, amount, lock, deadline, pre)
    data = h.encode()
    assert len(data) == (107 if pre else 75) and Htlc.decode(data) == h


@pytest.mark.parametrize("data", [b"", bytes(74), bytes(76), bytes(106), bytes(108)])
def test_malformed_data_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(InvalidAppDataError, match="75 or 107"):
        APP.decode_data(data)
    with pytest.raises(InvalidAppDataError, match="same participant"):
        APP.decode_data(bytes(75))  # payer 0 = payee 0
    with pytest.raises(InvalidAppDataError, match="amount"):
        Htlc(0, 1, 0, -1, LOCK, 5)
    with pytest.raises(InvalidAppDataError, match="hash lock"):
        Htlc(0, 1, 0, 1, b"short", 5)


def test_init_wants_a_covered_pending_payment_between_participants() -> None:
    APP.valid_init(P, pending())
    for bad, why in [
        (pending(amount=51), "does not cover"),
        (pending(amount=0), "positive"),
        (pending(payee=2), "participants"),
        (pending(asset=2), "no asset"),
        (claim(pending(), PRE).replace(is_final=False), "pending"),
    ]:
        with pytest.raises(AppTransitionError, match=why):
            APP.valid_init(P, bad)


def test_claim_pays_the_amount_and_reveals_the_preimage() -> None:
    s = pending()
    c = claim(s, PRE)
    assert c.is_final and c.version == s.version + 1
    assert c.balances == ((30, 25), (7, 8))
    assert Htlc.decode(c.data).preimage == PRE and htlc.hash_lock(PRE) == LOCK
    assert pending(asset=1).balances != claim(pending(asset=1, amount=7), PRE).balances
    with pytest.raises(AppTransitionError, match="preimage"):
        claim(s, bytes(32))
    with pytest.raises(AppTransitionError, match="already claimed"):
        claim(c.replace(is_final=False), PRE)
    with pytest.raises(AppTransitionError, match="already claimed"):
        refund(c)
    assert claimable(s, DEADLINE) and not claimable(s, DEADLINE + 1)


def test_off_chain_the_payee_claims_or_releases_and_the_payer_cannot_refund() -> None:
    s = pending()
    ok(s, claim(s, PRE), 1, None)
    ok(s, refund(s), 1, None)  # the payee releases the payer
    no(s, refund(s), 0, None, "only the payee refunds")
    no(s, claim(s, PRE), 0, None, "only the payee claims")


def test_on_chain_the_deadline_splits_claim_and_refund_exactly() -> None:
    s = pending()
    ok(s, claim(s, PRE), 1, DEADLINE)  # up to and including the deadline
    no(s, claim(s, PRE), 1, DEADLINE + 1, "too late")
    no(s, refund(s), 0, DEADLINE, "before the deadline")
    ok(s, refund(s), 0, DEADLINE + 1)
    ok(s, refund(s), 1, 0)  # the payee may release at any time
    no(s, claim(s, PRE), 0, 0, "only the payee claims")


@pytest.mark.parametrize("now", [None, DEADLINE])
def test_mallory_cannot_bend_the_terms(now: int | None) -> None:
    s = pending()
    c = claim(s, PRE)
    wrong = s.replace(version=2, data=s.data + bytes(32), is_final=True)
    wrong = wrong.replace(allocation=s.allocation.transfer(0, 1, 20))
    no(s, wrong, 1, now, "preimage")
    bigger = Htlc(0, 1, 0, 30, LOCK, DEADLINE, PRE).encode()
    no(s, c.replace(data=bigger), 1, now, "data")
    later = Htlc(0, 1, 0, 20, LOCK, DEADLINE + 10**6, PRE).encode()
    no(s, c.replace(data=later), 1, now, "data")
    no(s, c.replace(allocation=s.allocation.transfer(0, 1, 21)), 1, now, "balances")
    no(s, c.replace(is_final=False), 1, now, "must be final")
    no(s, refund(s).replace(allocation=s.allocation.transfer(1, 0, 1)), 1, now, "balances")
    no(s, refund(s).replace(is_final=False), 1, now, "must be final")
    no(s, s.replace(version=2, data=b"\x00"), 1, now, "75 or 107")
    no(c.replace(is_final=False), refund(s), 1, now, "already claimed")
    no(pending(payee=2), refund(pending(payee=2)), 2, now, "participants")
    with pytest.raises(AppTransitionError, match="participants"):
        claim(pending(payee=2), PRE)


@given(st.integers(0, 2 * DEADLINE), st.integers(0, 1), st.booleans())
def test_on_chain_verdicts_follow_the_table(now: int, actor: int, claiming: bool) -> None:
    s = pending()
    to = claim(s, PRE) if claiming else refund(s)
    allowed = (actor == 1 and now <= DEADLINE) if claiming else (actor == 1 or now > DEADLINE)
    if allowed:
        ok(s, to, actor, now)
    else:
        with pytest.raises(AppTransitionError):
            ok(s, to, actor, now)
