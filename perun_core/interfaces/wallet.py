"""Accounts and wallets: the keys that sign channel states."""

from __future__ import annotations

from abc import ABC, abstractmethod

from perun_core.channel.types import Address


class Account(ABC):
    """A key that can sign for one address under its backend's signature scheme."""

    @property
    @abstractmethod
    def address(self) -> Address:
        """The address this account signs for."""

    @abstractmethod
    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` (the backend defines hashing and the signature format)."""


class Wallet(ABC):
    """A set of accounts of one backend."""

    @abstractmethod
    def accounts(self) -> list[Address]:
        """Addresses of every account this wallet holds."""

    @abstractmethod
    async def unlock(self, address: Address) -> Account:
        """The account for ``address`` (``KeyError`` if the wallet does not hold it)."""

    @abstractmethod
    def new_account(self) -> Account:
        """Create (and hold) a fresh random account."""

    def increment_usage(self, address: Address) -> None:  # noqa: B027 - optional hook
        """Mark ``address`` as used by one more channel (wallets may keep it unlocked)."""

    def decrement_usage(self, address: Address) -> None:  # noqa: B027 - optional hook
        """Release one channel's use of ``address``."""
