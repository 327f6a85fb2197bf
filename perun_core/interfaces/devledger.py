"""The development-ledger capability: a ledger the caller controls, for demos and tests.

A production chain backend moves real money on a ledger nobody controls. A development
ledger (the sim ledger, a local anvil node) also lets the caller mint money and move
ledger time, which demos and test suites need to fund accounts and to let challenge
durations pass. That capability lives here, apart from :class:`ChainBackend`:
``Backend.dev_ledger()`` is the one way to get such a ledger for any backend::

    async with SimBackend.dev_ledger() as dev:
        account = dev.backend.wallet().new_account()
        await dev.faucet(account.address, dev.asset, 1_000)
        await dev.advance_time(61)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from perun_core.channel.types import Address, Asset
    from perun_core.interfaces.chain import ChainBackend

__all__ = ["BackendDevLedger", "DevLedger"]


class DevLedger(ABC):
    """A chain backend on a development ledger, with the ledger's test controls.

    Attributes:
        backend: the chain backend on this ledger (build clients with it).
        asset: an asset the faucet funds and no transaction fee touches, so that balances
            compare exactly (a test token where the native currency pays fees).
    """

    def __init__(self, backend: ChainBackend, asset: Asset) -> None:
        self.backend = backend
        self.asset = asset

    @abstractmethod
    async def faucet(self, address: Address, asset: Asset, amount: int) -> None:
        """Credit ``amount`` of ``asset`` to ``address``."""

    @abstractmethod
    async def advance_time(self, seconds: int) -> None:
        """Move ledger time forward by ``seconds`` (pending timeouts may pass)."""

    @abstractmethod
    async def ledger_time(self) -> int:
        """The ledger's current time in seconds."""


class BackendDevLedger(DevLedger):
    """The development ledger of a backend that implements the controls itself (its
    ``faucet``, ``advance_time`` and ``ledger_time`` methods), as sim and eth do."""

    async def faucet(self, address: Address, asset: Asset, amount: int) -> None:
        """Credit ``amount`` of ``asset`` to ``address`` through the backend."""
        await self.backend.faucet(address, asset, amount)

    async def advance_time(self, seconds: int) -> None:
        """Move ledger time forward through the backend."""
        await self.backend.advance_time(seconds)

    async def ledger_time(self) -> int:
        """The ledger's current time, from the backend."""
        return await self.backend.ledger_time()
