"""Ethereum accounts and wallets: secp256k1 keys held in memory or in keystore files.

An :class:`EthAccount` signs channel states and withdrawal authorizations (EIP-191 digests,
with coincurve) and also transactions (it is the default transaction sender). Keystore files
are the standard encrypted JSON of ``geth``/``eth-account`` (version 3).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Literal

from coincurve import PrivateKey

from perun_core.channel.types import Address
from perun_core.interfaces import Account, Wallet
from perun_eth.encoding import address_of_public_key, eip191_digest, keccak256, sign_digest
from perun_eth.errors import KeystoreError


class EthAccount(Account):
    """A secp256k1 key and its Ethereum address.

    Args:
        key: the 32-byte secret (or a coincurve key).

    Raises:
        ValueError: the secret is not a valid secp256k1 key.
    """

    __slots__ = ("_address", "_key")

    def __init__(self, key: bytes | PrivateKey) -> None:
        self._key = key if isinstance(key, PrivateKey) else PrivateKey(bytes(key))
        self._address = address_of_public_key(self._key.public_key)

    @property
    def address(self) -> Address:
        """The account's 20-byte address."""
        return self._address

    @property
    def checksum_address(self) -> str:
        """The EIP-55 checksummed hex address (what web3 and wallets display)."""
        from eth_utils.address import to_checksum_address  # noqa: PLC0415 - eth_utils is heavy; wallets are built without it

        return str(to_checksum_address(self._address.raw))

    @property
    def private_key(self) -> PrivateKey:
        """The coincurve key (signs transactions and digests)."""
        return self._key

    def sign(self, message: bytes) -> bytes:
        """EIP-191 signature over ``keccak256(message)`` (65 bytes, ``v`` ∈ {27, 28}).

        This is how withdrawal authorizations are signed; states are signed over their ABI
        encoding the same way.
        """
        return sign_digest(self._key, eip191_digest(keccak256(message)))

    def sign_digest(self, digest: bytes) -> bytes:
        """Sign a 32-byte digest as it is (``r ‖ s ‖ v``)."""
        return sign_digest(self._key, digest)

    def __repr__(self) -> str:
        return f"EthAccount({self.checksum_address})"


class EthWallet(Wallet):
    """Accounts from raw keys, deterministic seeds and keystore files.

    Unlocked keys stay in memory for the wallet's lifetime.
    """

    def __init__(self) -> None:
        self._accounts: dict[Address, EthAccount] = {}
        self._usage: dict[Address, int] = {}

    def add_key(self, key: bytes | str | PrivateKey) -> EthAccount:
        """Hold the account of ``key`` (32 bytes, or 64 hex digits with or without ``0x``).

        Raises:
            ValueError: not a valid secp256k1 secret.
        """
        if isinstance(key, str):
            text = key[2:] if key[:2] in ("0x", "0X") else key
            try:
                key = bytes.fromhex(text)
            except ValueError as e:
                raise ValueError("a private key is 64 hex digits") from e
        if isinstance(key, bytes) and len(key) != 32:
            raise ValueError(f"a private key has 32 bytes, got {len(key)}")
        acct = EthAccount(key)
        self._accounts.setdefault(acct.address, acct)
        return self._accounts[acct.address]

    def add_seed(self, seed: bytes | str) -> EthAccount:
        """Hold the account whose key is ``keccak256(seed)`` (deterministic test accounts)."""
        raw = seed.encode() if isinstance(seed, str) else seed
        return self.add_key(keccak256(raw))

    def new_account(self) -> EthAccount:
        """Create and hold a fresh random account."""
        while True:
            try:
                return self.add_key(secrets.token_bytes(32))
            except ValueError:  # pragma: no cover - probability ~2**-128
                continue

    def accounts(self) -> list[Address]:
        """Addresses of every held account."""
        return list(self._accounts)

    async def unlock(self, address: Address) -> EthAccount:
        """The held account of ``address``.

        Raises:
            KeyError: the wallet does not hold it.
        """
        try:
            return self._accounts[address]
        except KeyError:
            raise KeyError(f"the wallet holds no account {address}") from None

    def increment_usage(self, address: Address) -> None:
        """Count one more channel using ``address``."""
        self._usage[address] = self._usage.get(address, 0) + 1

    def decrement_usage(self, address: Address) -> None:
        """Count one channel less using ``address``."""
        left = self._usage.get(address, 0) - 1
        if left > 0:
            self._usage[address] = left
        else:
            self._usage.pop(address, None)

    def usage(self, address: Address) -> int:
        """How many channels use ``address``."""
        return self._usage.get(address, 0)

    # --- keystore files ---------------------------------------------------------------------

    def load_keystore(self, path: str | os.PathLike[str], password: str) -> EthAccount:
        """Decrypt a keystore file and hold its account.

        Raises:
            KeystoreError: the file is missing, not a keystore, or the password is wrong.
        """
        from perun_eth import _web3_first  # noqa: F401, PLC0415 - web3 first keeps the recursion limit

        # isort: split
        from eth_account import Account as _EthAccount  # noqa: PLC0415 - eth_account is heavy; only keystores need it

        p = Path(path)
        try:
            data = json.loads(p.read_text("utf-8"))
        except OSError as e:
            raise KeystoreError(f"cannot read keystore {p}: {e.strerror or e}") from e
        except ValueError as e:
            raise KeystoreError(f"{p} is not a JSON keystore file") from e
        try:
            key = bytes(_EthAccount.decrypt(data, password))
        except ValueError as e:
            # eth-account raises ValueError for a MAC mismatch (wrong password) and for
            # unknown KDFs/ciphers alike; its message tells which.
            raise KeystoreError(f"cannot decrypt keystore {p}: {e}") from e
        except (KeyError, TypeError) as e:
            raise KeystoreError(f"{p} is not a valid keystore file (missing {e})") from e
        return self.add_key(key)

    def save_keystore(
        self,
        address: Address,
        path: str | os.PathLike[str],
        password: str,
        *,
        kdf: Literal["scrypt", "pbkdf2"] = "scrypt",
        iterations: int | None = None,
    ) -> Path:
        """Encrypt ``address``'s key into a new keystore file (mode 0600).

        Args:
            address: a held account.
            path: the file to create (an existing file is not overwritten).
            password: the encryption password.
            kdf: ``"scrypt"`` (default, like geth) or ``"pbkdf2"``.
            iterations: the KDF work factor (default: eth-account's).

        Raises:
            KeyError: the wallet does not hold ``address``.
            KeystoreError: the file exists or cannot be written.
        """
        from perun_eth import _web3_first  # noqa: F401, PLC0415 - web3 first keeps the recursion limit

        # isort: split
        from eth_account import Account as _EthAccount  # noqa: PLC0415 - eth_account is heavy; only keystores need it

        acct = self._accounts.get(address)
        if acct is None:
            raise KeyError(f"the wallet holds no account {address}")
        data = _EthAccount.encrypt(
            acct.private_key.secret, password, kdf=kdf, iterations=iterations
        )
        p = Path(path)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise KeystoreError(f"cannot create keystore {p}: {e.strerror or e}") from e
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        return p
