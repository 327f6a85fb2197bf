"""The chain backend: one object bundling a ledger's cryptography, wallet, funder and
adjudicator, so they agree on addresses, signatures and contracts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

from perun_core.channel.params import Params
from perun_core.channel.state import State
from perun_core.channel.types import Address, Asset
from perun_core.errors import NotSupportedError
from perun_core.interfaces.adjudicator import Adjudicator
from perun_core.interfaces.devledger import BackendDevLedger, DevLedger
from perun_core.interfaces.funder import Funder
from perun_core.interfaces.wallet import Account, Wallet


@dataclass(frozen=True, slots=True)
class LedgerTransaction:
    """A confirmed transaction a backend sent to its ledger, as demos report it.

    Attributes:
        operation: what it did (``"deposit"``, ``"register"``, ``"deploy Adjudicator"``).
        sender: the account that sent (and paid for) it.
        tx_hash: the ledger's transaction ID (``0x``-prefixed hex on Ethereum).
        gas_used: what it cost in the ledger's unit of work (gas on Ethereum).
    """

    operation: str
    sender: Address
    tx_hash: str
    gas_used: int


TransactionHook = Callable[[LedgerTransaction], None]
"""Called with every confirmed :class:`LedgerTransaction` of a demo ledger."""


class ChainBackend(ABC):
    """A chain backend (registered through the ``perun_register_chains`` hook).

    Class attributes:
        name: the registry name (``"sim"``, ``"eth"``).
        capabilities: optional features this backend offers (e.g. ``"apps"``,
            ``"sub_channels"``, ``"virtual_channels"``); methods for absent ones raise
            :class:`~perun_core.errors.NotSupportedError`.
    """

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    @abstractmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        """Build the backend from a plain configuration mapping."""

    # --- components ------------------------------------------------------------------------

    @abstractmethod
    def wallet(self) -> Wallet:
        """The wallet holding this backend's accounts."""

    @abstractmethod
    def funder(self, account: Account) -> Funder:
        """A funder that deposits from ``account``."""

    @abstractmethod
    def adjudicator(self, account: Account) -> Adjudicator:
        """An adjudicator that sends ledger transactions as ``account``."""

    # --- cryptography and encodings -----------------------------------------------------------

    @abstractmethod
    def channel_id(self, params: Params) -> bytes:
        """The 32-byte channel ID of ``params`` (binds every field but ``backend``/``id``)."""

    @abstractmethod
    def encode_state(self, state: State) -> bytes:
        """The canonical encoding of a state (what signatures cover)."""

    @abstractmethod
    def sign_state(self, account: Account, state: State) -> bytes:
        """Sign ``state`` with ``account``."""

    @abstractmethod
    def verify_state(self, address: Address, state: State, sig: bytes) -> bool:
        """Whether ``sig`` is ``address``'s signature on ``state``.

        Raises:
            MalformedSignatureError: ``sig`` cannot be a signature of this scheme.
        """

    @abstractmethod
    def verify_signature(self, address: Address, message: bytes, sig: bytes) -> bool:
        """Whether ``sig`` is ``address``'s signature on the raw ``message``."""

    @abstractmethod
    def parse_address(self, text: str) -> Address:
        """Parse an address in the backend's text form."""

    def check_aux(self, aux: bytes) -> None:  # noqa: B027 - optional hook
        """Refuse ``aux`` bytes this backend cannot bind (default: any are bound by the ID)."""

    def payment_app_id(self) -> bytes | None:
        """The AppID of the payment app on this backend, if it has one."""
        return None

    def app_id(self, name: str) -> bytes | None:
        """The AppID of the app called ``name`` on this backend, or ``None`` if this chain
        cannot run it (e.g. its contract is not deployed or not configured).

        The default knows only ``"payment"``; backends that run plugin apps override it.
        """
        return self.payment_app_id() if name == "payment" else None

    def default_assets(self) -> list[Asset]:
        """Assets for demos and tests (the backend's native currency first)."""
        raise NotImplementedError

    async def balance_of(self, address: Address, asset: Asset) -> int:
        """On-ledger balance of ``address`` in ``asset`` (capability ``"balances"``)."""
        raise NotSupportedError(f"backend {self.name!r} cannot report ledger balances")

    async def faucet(self, address: Address, asset: Asset, amount: int) -> None:
        """Credit ``amount`` of ``asset`` to ``address`` (test ledgers; capability ``"faucet"``).

        The development-ledger controls (this, :meth:`advance_time`, :meth:`ledger_time`)
        are reached through :meth:`dev_ledger`; a backend implements them here and the
        default :class:`~perun_core.interfaces.devledger.BackendDevLedger` calls them.
        """
        raise NotSupportedError(f"backend {self.name!r} has no faucet")

    async def advance_time(self, seconds: int) -> None:
        """Move ledger time forward (test ledgers; capability ``"time_travel"``)."""
        raise NotSupportedError(f"backend {self.name!r} cannot move ledger time")

    async def ledger_time(self) -> int:
        """The ledger's current time in seconds (capability ``"time_travel"``)."""
        raise NotSupportedError(f"backend {self.name!r} cannot report ledger time")

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and background tasks."""

    def peer_config(self) -> Mapping[str, Any]:
        """A configuration with which ``from_config`` in another process builds a backend on
        the same ledger (contracts, node), without this backend's keys.

        Optional (``perun demo --bus tcp`` hands it to Bob's process).

        Raises:
            NotSupportedError: this backend's ledger cannot be shared this way.
        """
        raise NotSupportedError(f"backend {self.name!r} cannot hand its ledger to another process")

    @classmethod
    def demo_ledger(
        cls, on_transaction: TransactionHook | None = None
    ) -> AbstractAsyncContextManager[Self]:
        """A ready-to-use development ledger with a backend on it (``perun demo``).

        The default builds the backend with ``from_config({})`` and closes it on exit, which
        suits self-contained test ledgers (sim). A backend whose ledger must first be
        started or prepared (a local node, deployed contracts) overrides this; everything it
        started is stopped on exit, also on errors and cancellation. The backend must offer
        ``"faucet"`` and ``"balances"``. The demo moves ``default_assets()[0]``: a ledger
        whose native currency pays the fees puts a fee-free asset (a test token) first
        there, so that the demo can compare balances exactly.

        Args:
            on_transaction: called with every confirmed ledger transaction sent by the
                set-up and by the backend's funders and adjudicators (never called by
                ledgers without transactions).

        Returns:
            An async context manager yielding the backend.

        Raises:
            NotSupportedError: this backend has no development ledger.
        """
        del on_transaction  # a config-only ledger sends nothing worth reporting
        return _config_ledger(cls)

    @classmethod
    def dev_ledger(
        cls, *, on_transaction: TransactionHook | None = None
    ) -> AbstractAsyncContextManager[DevLedger]:
        """A development ledger with a backend on it: the one way demos and tests get a
        ledger they can fund and move in time.

        The default runs :meth:`demo_ledger` and wraps its backend in a
        :class:`~perun_core.interfaces.devledger.BackendDevLedger` (the backend's
        ``faucet``/``advance_time``/``ledger_time``) whose asset is
        ``default_assets()[0]``. A backend whose controls live elsewhere overrides it.

        Args:
            on_transaction: called with every confirmed ledger transaction (see
                :meth:`demo_ledger`).

        Returns:
            An async context manager yielding the
            :class:`~perun_core.interfaces.devledger.DevLedger`; everything it started is
            stopped on exit.

        Raises:
            NotSupportedError: this backend has no development ledger.
        """
        return _backend_dev_ledger(cls, on_transaction)


_B = TypeVar("_B", bound=ChainBackend)


@asynccontextmanager
async def _backend_dev_ledger(
    cls: type[ChainBackend], on_transaction: TransactionHook | None
) -> AsyncIterator[DevLedger]:
    async with cls.demo_ledger(on_transaction=on_transaction) as backend:
        yield BackendDevLedger(backend, backend.default_assets()[0])


@asynccontextmanager
async def _config_ledger(cls: type[_B]) -> AsyncIterator[_B]:
    backend = cls.from_config({})
    try:
        yield backend
    finally:
        await backend.close()
