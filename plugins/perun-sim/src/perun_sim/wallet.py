"""Sim accounts and wallet: in-memory secp256k1 keys (scheme in :mod:`perun_sim.crypto`)."""

from __future__ import annotations

import secrets

from coincurve import PrivateKey

from perun_core.channel.types import Address
from perun_core.interfaces import Account, Wallet
from perun_sim.crypto import SECP256K1_N, address_from_public_key, sha3, sign_digest


class SimAccount(Account):
    """A secp256k1 key; :meth:`sign` signs ``SHA3-256(message)``."""

    __slots__ = ("_address", "_key")

    def __init__(self, secret: bytes) -> None:
        """Wrap a 32-byte private key (``ValueError`` if it is not a valid scalar)."""
        if len(secret) != 32 or not 0 < int.from_bytes(secret, "big") < SECP256K1_N:
            raise ValueError("a secp256k1 private key is 32 bytes in [1, n)")
        self._key = PrivateKey(secret)
        # Derived once: the address is read on every signature check of our own states.
        self._address = Address(address_from_public_key(self._key.public_key))

    @classmethod
    def from_seed(cls, seed: bytes) -> SimAccount:
        """A deterministic account for tests and demos: the key is SHA3-256 of ``seed``.

        Insecure for real funds by construction (anyone knowing the seed has the key).
        """
        secret = sha3(seed)
        # A hash outside [1, n) has probability ~2**-128; re-hash instead of failing.
        while not 0 < int.from_bytes(secret, "big") < SECP256K1_N:
            secret = sha3(secret)
        return cls(secret)

    @classmethod
    def random(cls) -> SimAccount:
        """A fresh account with a key from the OS's random source."""
        while True:
            secret = secrets.token_bytes(32)
            if 0 < int.from_bytes(secret, "big") < SECP256K1_N:
                return cls(secret)

    @property
    def address(self) -> Address:
        """The account's 20-byte sim address."""
        return self._address

    @property
    def secret(self) -> bytes:
        """The raw private key (for persisting demo keys; handle with care)."""
        return self._key.secret

    def sign(self, message: bytes) -> bytes:
        """Sign ``SHA3-256(message)``; returns 65 bytes ``r ‖ s ‖ v`` (``v`` ∈ {0, 1})."""
        return sign_digest(self._key, sha3(message))

    def sign_digest(self, digest: bytes) -> bytes:
        """Sign a precomputed 32-byte digest (skips hashing on hot paths)."""
        return sign_digest(self._key, digest)

    def __repr__(self) -> str:
        return f"SimAccount({self._address.hex()})"


class SimWallet(Wallet):
    """An in-memory set of :class:`SimAccount` s."""

    def __init__(self, accounts: list[SimAccount] | None = None) -> None:
        self._accounts: dict[Address, SimAccount] = {}
        self._usage: dict[Address, int] = {}
        for a in accounts or ():
            self.add(a)

    def add(self, account: SimAccount) -> SimAccount:
        """Hold ``account`` (idempotent) and return it."""
        self._accounts[account.address] = account
        return account

    def add_seed(self, seed: bytes) -> SimAccount:
        """Create, hold and return the deterministic account of ``seed``."""
        return self.add(SimAccount.from_seed(seed))

    def new_account(self) -> SimAccount:
        """Create (and hold) a fresh random account."""
        return self.add(SimAccount.random())

    def accounts(self) -> list[Address]:
        """Addresses of every account held, in insertion order."""
        return list(self._accounts)

    def account(self, address: Address) -> SimAccount:
        """The account of ``address`` (``KeyError`` if not held); synchronous :meth:`unlock`."""
        try:
            return self._accounts[address]
        except KeyError:
            raise KeyError(f"the sim wallet holds no account {address.hex()}") from None

    async def unlock(self, address: Address) -> SimAccount:
        """The account for ``address`` (``KeyError`` if the wallet does not hold it)."""
        return self.account(address)

    def increment_usage(self, address: Address) -> None:
        """Count one more channel using ``address``."""
        self._usage[address] = self._usage.get(address, 0) + 1

    def decrement_usage(self, address: Address) -> None:
        """Release one channel's use of ``address``."""
        n = self._usage.get(address, 0) - 1
        if n > 0:
            self._usage[address] = n
        else:
            self._usage.pop(address, None)

    def usage(self, address: Address) -> int:
        """How many channels currently use ``address``."""
        return self._usage.get(address, 0)
