"""The ledger as the funder and adjudicator see it: one async API, local or served.

:class:`LedgerAPI` is everything :class:`~perun_sim.funder.SimFunder`,
:class:`~perun_sim.adjudicator.SimAdjudicator` and :class:`~perun_sim.backend.SimBackend`
need from a :class:`~perun_sim.ledger.SimLedger`. Two implementations:

* :class:`LocalLedger` wraps a ledger in this process (the default);
* :class:`~perun_sim.remote.RemoteLedger` talks to a ledger served by another process
  (:mod:`perun_sim.server`), so clients in several processes share one ledger.

The API is async because a served ledger answers over a socket; the ledger rules live only in
:class:`SimLedger`, on whichever side owns it.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from perun_core.channel.params import Params
from perun_core.channel.state import SignedState, State
from perun_core.channel.types import Address, Asset
from perun_core.interfaces import Account, EventSubscription, Timeout
from perun_sim.ledger import Dispute, HoldingKey, SimLedger, WithdrawalAuth


class LedgerAPI(ABC):
    """Async access to one sim ledger (views, transactions, events and time).

    Every method has the semantics of the :class:`SimLedger` method of the same name;
    refusals raise the same :class:`~perun_core.errors.ChainError` reasons.
    """

    @property
    @abstractmethod
    def ledger_id(self) -> int:
        """The ledger's ID (the ``ledger_id`` of its assets)."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the ledger lives: ``"local"`` or the server's URL."""

    # --- time ---------------------------------------------------------------------------------

    @abstractmethod
    async def now(self) -> int:
        """The current ledger time in seconds."""

    @abstractmethod
    async def sleep_until(self, t: int) -> None:
        """Return once ledger time is ``>= t`` (event-driven, no polling)."""

    @abstractmethod
    async def advance(self, seconds: int) -> int:
        """Move ledger time forward by ``seconds``; returns the new time.

        Raises:
            ValueError: ``seconds`` is negative.
        """

    @abstractmethod
    def timeout(self, deadline: int) -> Timeout:
        """A :class:`Timeout` at ``deadline`` on this ledger's clock."""

    # --- views --------------------------------------------------------------------------------

    @abstractmethod
    async def balance_of(self, address: Address, asset: Asset) -> int:
        """The account balance of ``address`` in ``asset``."""

    @abstractmethod
    async def holdings(self, asset: Asset, fid: bytes) -> int:
        """What funding ID ``fid`` holds of ``asset``."""

    @abstractmethod
    async def dispute(self, cid: bytes) -> Dispute | None:
        """The dispute record of channel ``cid`` (``None`` if never registered/concluded)."""

    @abstractmethod
    async def is_settled(self, asset: Asset, cid: bytes) -> bool:
        """Whether channel ``cid``'s outcome of ``asset`` has been set."""

    @abstractmethod
    async def tx_count(self, operation: str | None = None) -> int:
        """How many transactions succeeded (of one ``operation``)."""

    # --- transactions -------------------------------------------------------------------------

    @abstractmethod
    async def mint(self, address: Address, asset: Asset, amount: int) -> None:
        """The faucet: create ``amount`` of ``asset`` in ``address``'s account.

        Raises:
            ValueError: negative amount or an asset of another ledger.
        """

    @abstractmethod
    async def deposit(self, sender: Address, asset: Asset, fid: bytes, amount: int) -> None:
        """:meth:`SimLedger.deposit`."""

    @abstractmethod
    async def register(
        self, channel: SignedState, sub_channels: Sequence[SignedState] = ()
    ) -> None:
        """:meth:`SimLedger.register`."""

    @abstractmethod
    async def progress(
        self, params: Params, old_state: State, new_state: State, actor_idx: int, sig: bytes
    ) -> None:
        """:meth:`SimLedger.progress`."""

    @abstractmethod
    async def conclude(
        self, params: Params, state: State, sub_states: Sequence[State] = ()
    ) -> None:
        """:meth:`SimLedger.conclude`."""

    @abstractmethod
    async def conclude_final(self, params: Params, state: State, sigs: Sequence[bytes]) -> None:
        """:meth:`SimLedger.conclude_final`."""

    @abstractmethod
    async def withdraw(self, auth: WithdrawalAuth, sig: bytes) -> None:
        """:meth:`SimLedger.withdraw`."""

    # --- notifications ------------------------------------------------------------------------

    @abstractmethod
    async def subscribe(self, cid: bytes) -> EventSubscription:
        """Events of channel ``cid``: the most recent past event first, then new ones."""

    @abstractmethod
    async def wait_holdings(self, seen: Mapping[HoldingKey, int], until: int) -> bool:
        """Wait until a holding differs from its value in ``seen`` or ledger time reaches
        ``until`` (:meth:`SimLedger.wait_holdings`).

        Returns:
            Whether a holding differs (``False``: the deadline came first).
        """

    def add_account(self, account: Account) -> None:  # noqa: B027 - optional hook
        """Let this API move ``account``'s funds (deposit from it, withdraw its holdings).

        A served ledger requires the connection to prove control of the account (see
        :meth:`RemoteLedger.add_account <perun_sim.remote.RemoteLedger.add_account>`); a
        local ledger needs nothing.
        """

    async def connect(self) -> None:  # noqa: B027 - optional hook
        """Open the connection now rather than on first use (no-op for a local ledger)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection, if any (the ledger itself is not affected)."""


class LocalLedger(LedgerAPI):
    """:class:`LedgerAPI` over a :class:`SimLedger` in this process.

    Args:
        ledger: the ledger; shared by every client of the process.
    """

    def __init__(self, ledger: SimLedger) -> None:
        self.ledger = ledger

    @property
    def ledger_id(self) -> int:
        """The ledger's ID."""
        return self.ledger.ledger_id

    @property
    def location(self) -> str:
        """``"local"``."""
        return "local"

    async def now(self) -> int:
        """The ledger clock's current time."""
        return self.ledger.clock.now()

    async def sleep_until(self, t: int) -> None:
        """Sleep on the ledger clock."""
        await self.ledger.clock.sleep_until(t)

    async def advance(self, seconds: int) -> int:
        """Advance the ledger clock (waiters whose deadline passed wake up)."""
        now = self.ledger.clock.advance(seconds)
        await asyncio.sleep(0)
        return now

    def timeout(self, deadline: int) -> Timeout:
        """A :class:`~perun_sim.clock.SimTimeout` on the ledger clock."""
        return self.ledger.clock.timeout(deadline)

    async def balance_of(self, address: Address, asset: Asset) -> int:
        """:meth:`SimLedger.balance_of`."""
        return self.ledger.balance_of(address, asset)

    async def holdings(self, asset: Asset, fid: bytes) -> int:
        """:meth:`SimLedger.holdings`."""
        return self.ledger.holdings(asset, fid)

    async def dispute(self, cid: bytes) -> Dispute | None:
        """:meth:`SimLedger.dispute`."""
        return self.ledger.dispute(cid)

    async def is_settled(self, asset: Asset, cid: bytes) -> bool:
        """:meth:`SimLedger.is_settled`."""
        return self.ledger.is_settled(asset, cid)

    async def tx_count(self, operation: str | None = None) -> int:
        """:meth:`SimLedger.tx_count`."""
        return self.ledger.tx_count(operation)

    async def mint(self, address: Address, asset: Asset, amount: int) -> None:
        """:meth:`SimLedger.mint`."""
        self.ledger.mint(address, asset, amount)

    async def deposit(self, sender: Address, asset: Asset, fid: bytes, amount: int) -> None:
        """:meth:`SimLedger.deposit`."""
        await self.ledger.deposit(sender, asset, fid, amount)

    async def register(
        self, channel: SignedState, sub_channels: Sequence[SignedState] = ()
    ) -> None:
        """:meth:`SimLedger.register`."""
        await self.ledger.register(channel, sub_channels)

    async def progress(
        self, params: Params, old_state: State, new_state: State, actor_idx: int, sig: bytes
    ) -> None:
        """:meth:`SimLedger.progress`."""
        await self.ledger.progress(params, old_state, new_state, actor_idx, sig)

    async def conclude(
        self, params: Params, state: State, sub_states: Sequence[State] = ()
    ) -> None:
        """:meth:`SimLedger.conclude`."""
        await self.ledger.conclude(params, state, sub_states)

    async def conclude_final(self, params: Params, state: State, sigs: Sequence[bytes]) -> None:
        """:meth:`SimLedger.conclude_final`."""
        await self.ledger.conclude_final(params, state, sigs)

    async def withdraw(self, auth: WithdrawalAuth, sig: bytes) -> None:
        """:meth:`SimLedger.withdraw`."""
        await self.ledger.withdraw(auth, sig)

    async def subscribe(self, cid: bytes) -> EventSubscription:
        """:meth:`SimLedger.subscribe`."""
        return self.ledger.subscribe(cid)

    async def wait_holdings(self, seen: Mapping[HoldingKey, int], until: int) -> bool:
        """:meth:`SimLedger.wait_holdings`."""
        return await self.ledger.wait_holdings(seen, until)

    def __repr__(self) -> str:
        return f"LocalLedger({self.ledger!r})"
