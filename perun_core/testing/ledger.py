"""Channels on a test ledger for the funder and adjudicator suites.

:class:`LedgerChannel` builds a two-party channel between two fresh, faucet-funded accounts
of a backend and signs its states with both; it talks to the ledger only through the
backend's :class:`~perun_core.interfaces.Funder` and
:class:`~perun_core.interfaces.Adjudicator`.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any, Final

import pytest

from perun_core.channel.allocation import Allocation
from perun_core.channel.params import Params, make_params
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Asset
from perun_core.interfaces.adjudicator import AdjudicatorEvent, AdjudicatorReq, EventSubscription
from perun_core.interfaces.chain import ChainBackend
from perun_core.interfaces.funder import FundingRequest
from perun_core.interfaces.wallet import Account

FUNDS: Final = 1_000_000
"""What the faucet gives each account of a :class:`LedgerChannel`."""

CHALLENGE: Final = 60
"""The challenge duration of the suites' channels, in ledger seconds."""

EVENT_TIMEOUT: Final = 10.0


def require(backend: ChainBackend, *capabilities: str) -> None:
    """Fail (not skip) when a suite is run on a backend without what it needs.

    Raises:
        pytest.fail.Exception: a capability is not declared.
    """
    missing = sorted(set(capabilities) - set(backend.capabilities))
    if missing:
        pytest.fail(
            f"this suite needs a backend with the capabilities {', '.join(missing)}; "
            f"{backend.name!r} declares {sorted(backend.capabilities)}",
            pytrace=False,
        )


async def next_event(sub: EventSubscription, timeout: float = EVENT_TIMEOUT) -> AdjudicatorEvent:  # noqa: ASYNC109 - every wait has a deadline; this one takes it as an argument
    """The next event of ``sub`` (it must not end)."""
    ev = await asyncio.wait_for(sub.next(), timeout)
    assert ev is not None, "the subscription ended"
    return ev


@dataclass
class LedgerChannel:
    """A two-party channel of fresh accounts ``a`` (index 0) and ``b`` (index 1)."""

    backend: ChainBackend
    asset: Asset
    a: Account
    b: Account
    params: Params

    @classmethod
    async def create(
        cls, backend: ChainBackend, asset: Asset, *, app: bytes | None = None, **kw: Any
    ) -> LedgerChannel:
        """Two accounts with :data:`FUNDS` each and params of a channel between them."""
        wallet = backend.wallet()
        a, b = wallet.new_account(), wallet.new_account()
        for acct in (a, b):
            await backend.faucet(acct.address, asset, FUNDS)
        fields: dict[str, Any] = {"challenge_duration": CHALLENGE, "nonce": secrets.randbits(64)}
        fields.update(kw)
        params = make_params(backend, participants=(a.address, b.address), app=app, **fields)
        return cls(backend, asset, a, b, params)

    @property
    def accounts(self) -> tuple[Account, Account]:
        return (self.a, self.b)

    def state(self, version: int, balances: tuple[int, int], *, final: bool = False) -> State:
        """A state of the channel in :attr:`asset`."""
        return State(
            channel_id=self.params.id,
            version=version,
            allocation=Allocation((self.asset,), ((balances[0], balances[1]),)),
            app=self.params.app,
            is_final=final,
        )

    def signed(self, state: State, *, by: tuple[int, ...] = (0, 1)) -> Transaction:
        """``state`` with the signatures of the participants ``by``."""
        sigs = tuple(
            self.backend.sign_state(acct, state) if i in by else None
            for i, acct in enumerate(self.accounts)
        )
        return Transaction(state, sigs)

    def request(self, idx: int, state: State, **kw: Any) -> FundingRequest:
        """The funding request of participant ``idx`` for initial state ``state``."""
        return FundingRequest(self.params, state, idx, state.allocation.balances, **kw)

    def req(self, tx: Transaction, idx: int = 0, *, secondary: bool = False) -> AdjudicatorReq:
        """An adjudicator request for ``tx`` as participant ``idx``."""
        return AdjudicatorReq(self.params, tx, idx, secondary)

    async def fund(self, balances: tuple[int, int]) -> State:
        """Both participants fund the initial state with ``balances``; returns it."""
        state = self.state(0, balances)
        await asyncio.gather(
            *(
                self.backend.funder(acct).fund(self.request(i, state))
                for i, acct in enumerate(self.accounts)
            )
        )
        return state

    async def balances(self) -> tuple[int, int]:
        """Both accounts' ledger balances of :attr:`asset`."""
        return (
            await self.backend.balance_of(self.a.address, self.asset),
            await self.backend.balance_of(self.b.address, self.asset),
        )
