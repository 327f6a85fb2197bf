"""The funder conformance suite: what every :class:`~perun_core.interfaces.Funder` must do
(see docs/protocols.md).

Use it by subclassing :class:`FunderConformance` in a test module and providing fixtures:

``backend``
    a :class:`~perun_core.interfaces.ChainBackend` with the ``faucet``, ``balances`` and
    ``time_travel`` capabilities, whose ledger time moves only when the test moves it.
``asset``
    the asset to fund with (pick one whose balance no fee touches, e.g. a token).
"""

from __future__ import annotations

import asyncio

import pytest

from perun_core.channel.types import Asset
from perun_core.errors import FundingTimeoutError
from perun_core.interfaces.chain import ChainBackend
from perun_core.testing.ledger import CHALLENGE, FUNDS, LedgerChannel, require


class FunderConformance:
    """Deposits of exactly the agreed share, idempotence, the deadline, egoistic funding."""

    async def test_both_fund_exactly_their_share_and_funding_again_deposits_nothing(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, "faucet", "balances", "time_travel")
        ch = await LedgerChannel.create(backend, asset)
        state = await ch.fund((10, 20))
        assert await ch.balances() == (FUNDS - 10, FUNDS - 20)
        # After a restart the client funds again: nothing more may be deposited.
        await ch.fund((10, 20))
        await backend.funder(ch.a).fund(ch.request(0, state))
        assert await ch.balances() == (FUNDS - 10, FUNDS - 20)

    async def test_a_zero_share_deposits_nothing(self, backend: ChainBackend, asset: Asset) -> None:
        require(backend, "faucet", "balances", "time_travel")
        ch = await LedgerChannel.create(backend, asset)
        await ch.fund((30, 0))
        assert await ch.balances() == (FUNDS - 30, FUNDS)

    async def test_the_deadline_names_the_participant_that_did_not_fund(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, "faucet", "balances", "time_travel")
        ch = await LedgerChannel.create(backend, asset)
        state = ch.state(0, (10, 20))
        funding = asyncio.create_task(backend.funder(ch.a).fund(ch.request(0, state)))
        bal_a = [FUNDS]

        async def deposited() -> bool:
            bal_a[0] = await backend.balance_of(ch.a.address, asset)
            return bal_a[0] == FUNDS - 10

        async with asyncio.timeout(10):
            while not await deposited():  # noqa: ASYNC110 - deposits show only on the ledger: poll it, bounded
                await asyncio.sleep(0.01)
        assert not funding.done()  # it waits for Bob
        await backend.advance_time(CHALLENGE + 1)
        with pytest.raises(FundingTimeoutError) as info:
            await asyncio.wait_for(funding, 10)
        assert info.value.unfunded_participants == (1,)
        assert info.value.missing == ((1,),)

    async def test_an_explicit_funding_window_is_honoured(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, "faucet", "balances", "time_travel")
        ch = await LedgerChannel.create(backend, asset)
        state = ch.state(0, (10, 20))
        funding = asyncio.create_task(backend.funder(ch.a).fund(ch.request(0, state, timeout=5)))
        await asyncio.sleep(0.05)
        await backend.advance_time(6)  # far less than the challenge duration
        with pytest.raises(FundingTimeoutError):
            await asyncio.wait_for(funding, 10)

    async def test_egoistic_funding_deposits_only_after_the_others(
        self, backend: ChainBackend, asset: Asset
    ) -> None:
        require(backend, "faucet", "balances", "time_travel")
        ch = await LedgerChannel.create(backend, asset)
        state = ch.state(0, (10, 20))
        egoist = asyncio.create_task(backend.funder(ch.a).fund(ch.request(0, state, egoistic=True)))
        await asyncio.sleep(0.1)
        assert await backend.balance_of(ch.a.address, asset) == FUNDS  # still waiting
        assert not egoist.done()
        await backend.funder(ch.b).fund(ch.request(1, state))
        await asyncio.wait_for(egoist, 10)
        assert await ch.balances() == (FUNDS - 10, FUNDS - 20)
