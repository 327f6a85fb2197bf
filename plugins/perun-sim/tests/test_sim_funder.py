"""SimFunder: deposits, waits event-driven for everyone, times out in ledger time."""

from __future__ import annotations

import asyncio

import pytest
from perun_sim import SimAccount, SimBackend, SimClock, SimLedger
from sim_helpers import START, Chan, D

from perun_core.channel import Asset
from perun_core.errors import (
    FundingTimeoutError,
    InsufficientBalanceError,
    InvalidFundingAgreementError,
)
from perun_core.interfaces import FundingRequest
from perun_core.testing.waiting import until


def request(chan: Chan, idx: int, balances: list[list[int]], **kw: object) -> FundingRequest:
    st = chan.state(0, balances)
    return FundingRequest(chan.params, st, idx, st.allocation.balances, **kw)  # type: ignore[arg-type]


@pytest.fixture
def rich(ledger: SimLedger, alice: SimAccount, bob: SimAccount, eth: Asset, prn: Asset) -> None:
    for acc in (alice, bob):
        ledger.mint(acc.address, eth, 1_000)
        ledger.mint(acc.address, prn, 1_000)


@pytest.mark.usefixtures("rich")
async def test_both_fund_and_both_return(
    backend: SimBackend,
    ledger: SimLedger,
    chan: Chan,
    alice: SimAccount,
    bob: SimAccount,
    eth: Asset,
) -> None:
    bals = [[100, 50]]
    await asyncio.wait_for(
        asyncio.gather(
            backend.funder(alice).fund(request(chan, 0, bals)),
            backend.funder(bob).fund(request(chan, 1, bals)),
        ),
        2,
    )
    assert ledger.holdings_of(eth, chan.id, alice.address) == 100
    assert ledger.holdings_of(eth, chan.id, bob.address) == 50
    assert ledger.balance_of(alice.address, eth) == 900
    assert ledger.balance_of(bob.address, eth) == 950


@pytest.mark.usefixtures("rich")
async def test_funding_waits_for_the_peer_without_polling(
    backend: SimBackend,
    ledger: SimLedger,
    clock: SimClock,
    chan: Chan,
    alice: SimAccount,
    bob: SimAccount,
) -> None:
    bals = [[100, 50]]
    a = asyncio.create_task(backend.funder(alice).fund(request(chan, 0, bals)))
    await until(lambda: clock.sleepers == 1, 1.0, interval=0)  # Alice deposited and now sleeps
    assert ledger.tx_count("deposit") == 1
    assert not a.done()
    await backend.funder(bob).fund(request(chan, 1, bals))
    await asyncio.wait_for(a, 1)


@pytest.mark.usefixtures("rich")
async def test_peer_that_never_funds_is_named_after_the_ledger_deadline(
    backend: SimBackend,
    clock: SimClock,
    make_chan,
    alice: SimAccount,
    eth: Asset,
    prn: Asset,
) -> None:  # type: ignore[no-untyped-def]
    chan = make_chan(assets=[eth, prn])
    bals = [[100, 50], [0, 7]]
    task = asyncio.create_task(backend.funder(alice).fund(request(chan, 0, bals)))
    await until(lambda: clock.sleepers == 1, 1.0, interval=0)
    clock.advance(D - 1)
    await asyncio.sleep(0.01)
    assert not task.done()  # one second before the deadline: still waiting
    clock.advance(1)
    with pytest.raises(FundingTimeoutError) as ei:
        await asyncio.wait_for(task, 1)
    assert ei.value.missing == ((1,), (1,))
    assert ei.value.unfunded_participants == (1,)
    assert ei.value.channel_id == chan.id


@pytest.mark.usefixtures("rich")
async def test_custom_funding_timeout(
    backend: SimBackend, clock: SimClock, chan: Chan, alice: SimAccount
) -> None:
    task = asyncio.create_task(backend.funder(alice).fund(request(chan, 0, [[1, 1]], timeout=5)))
    await until(lambda: clock.sleepers == 1, 1.0, interval=0)
    clock.advance(5)
    with pytest.raises(FundingTimeoutError):
        await asyncio.wait_for(task, 1)


@pytest.mark.usefixtures("rich")
async def test_refunding_is_idempotent(
    backend: SimBackend,
    ledger: SimLedger,
    chan: Chan,
    alice: SimAccount,
    bob: SimAccount,
    eth: Asset,
) -> None:
    bals = [[100, 50]]
    await asyncio.gather(
        backend.funder(alice).fund(request(chan, 0, bals)),
        backend.funder(bob).fund(request(chan, 1, bals)),
    )
    # a restart re-runs funding: nothing is deposited twice
    await backend.funder(alice).fund(request(chan, 0, bals))
    await backend.funder(bob).fund(request(chan, 1, bals))
    assert ledger.tx_count("deposit") == 2
    assert ledger.holdings_of(eth, chan.id, alice.address) == 100
    assert ledger.balance_of(alice.address, eth) == 900


@pytest.mark.usefixtures("rich")
async def test_zero_share_deposits_nothing(
    backend: SimBackend,
    ledger: SimLedger,
    chan: Chan,
    alice: SimAccount,
    bob: SimAccount,
) -> None:
    bals = [[100, 0]]
    await asyncio.gather(
        backend.funder(alice).fund(request(chan, 0, bals)),
        backend.funder(bob).fund(request(chan, 1, bals)),
    )
    assert ledger.tx_count("deposit") == 1


@pytest.mark.usefixtures("rich")
async def test_egoistic_funder_deposits_only_after_the_others(
    backend: SimBackend,
    ledger: SimLedger,
    clock: SimClock,
    chan: Chan,
    alice: SimAccount,
    bob: SimAccount,
    eth: Asset,
) -> None:
    bals = [[100, 50]]
    ego = asyncio.create_task(backend.funder(alice).fund(request(chan, 0, bals, egoistic=True)))
    await until(lambda: clock.sleepers == 1, 1.0, interval=0)
    assert ledger.holdings_of(eth, chan.id, alice.address) == 0  # waits for Bob first
    bob_task = asyncio.create_task(backend.funder(bob).fund(request(chan, 1, bals)))
    await asyncio.wait_for(asyncio.gather(ego, bob_task), 1)
    assert ledger.holdings_of(eth, chan.id, alice.address) == 100


@pytest.mark.usefixtures("rich")
async def test_egoistic_funder_never_deposits_if_the_peer_does_not(
    backend: SimBackend,
    ledger: SimLedger,
    clock: SimClock,
    chan: Chan,
    alice: SimAccount,
    eth: Asset,
) -> None:
    ego = asyncio.create_task(
        backend.funder(alice).fund(request(chan, 0, [[100, 50]], egoistic=True))
    )
    await until(lambda: clock.sleepers == 1, 1.0, interval=0)
    clock.advance(D)
    with pytest.raises(FundingTimeoutError) as ei:
        await asyncio.wait_for(ego, 1)
    assert ei.value.missing == ((1,),)
    assert ledger.holdings_of(eth, chan.id, alice.address) == 0
    assert ledger.balance_of(alice.address, eth) == 1_000


async def test_insufficient_balance_is_a_chain_error(
    backend: SimBackend, chan: Chan, alice: SimAccount
) -> None:
    with pytest.raises(InsufficientBalanceError) as ei:
        await backend.funder(alice).fund(request(chan, 0, [[100, 50]]))
    assert ei.value.reason == "insufficient balance"


async def test_malformed_agreement_is_refused(
    backend: SimBackend, chan: Chan, alice: SimAccount
) -> None:
    st = chan.state(0, [[1, 1]])
    req = FundingRequest(chan.params, st, 0, ((1, 1, 1),))
    with pytest.raises(InvalidFundingAgreementError):
        await backend.funder(alice).fund(req)


async def test_assets_of_other_ledgers_are_left_to_their_funders(
    make_chan, alice: SimAccount, bob: SimAccount, eth: Asset
) -> None:  # type: ignore[no-untyped-def]
    # a multi-ledger channel: asset 0 on our ledger, asset 1 on ledger 2
    chan = make_chan(assets=[eth, Asset(2, b"ETH")])
    ledger = chan.backend.ledger
    for acc in (alice, bob):
        ledger.mint(acc.address, eth, 10)
    bals = [[10, 10], [5, 5]]
    await asyncio.wait_for(
        asyncio.gather(
            chan.backend.funder(alice).fund(request(chan, 0, bals)),
            chan.backend.funder(bob).fund(request(chan, 1, bals)),
        ),
        1,
    )
    assert ledger.tx_count("deposit") == 2
    assert ledger.clock.now() == START
