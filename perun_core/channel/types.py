"""Backend-neutral value types: addresses and assets.

Addresses and assets are defined by a chain backend, but the core only needs their canonical
bytes: it compares, hashes, orders and transmits them. A backend parses and formats them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Address:
    """A wallet (participant) or wire (network identity) address as canonical bytes.

    The backend that issued the address defines the bytes (sim and Ethereum: 20 bytes).
    Addresses order by their bytes; the collision rules of the wire protocol rely on that.
    """

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or not 1 <= len(self.raw) <= 64:
            raise ValueError("an address is 1..64 bytes")

    @classmethod
    def from_hex(cls, text: str) -> Address:
        """Parse ``0x``-prefixed or bare hex."""
        t = text[2:] if text[:2] in ("0x", "0X") else text
        return cls(bytes.fromhex(t))

    def hex(self) -> str:
        """The ``0x``-prefixed lower-case hex form."""
        return "0x" + self.raw.hex()

    def short(self) -> str:
        """A short form for logs and tables."""
        h = self.raw.hex()
        return "0x" + h[:6] + "…" + h[-4:]

    def __str__(self) -> str:
        return self.hex()

    def __repr__(self) -> str:
        return f"Address({self.hex()})"


@dataclass(frozen=True, slots=True, order=True)
class Asset:
    """An asset that a channel allocates.

    Attributes:
        ledger_id: the ledger the asset lives on (Ethereum: the chain ID; sim: the ledger ID).
        holder: the asset's identifier on that ledger (Ethereum: the asset-holder contract
            address; sim: the token name).

    The canonical encoding is the 32-byte big-endian ledger ID followed by ``holder``.
    """

    ledger_id: int
    holder: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.ledger_id < 2**256:
            raise ValueError("ledger_id must be in [0, 2**256)")
        if not isinstance(self.holder, bytes) or not 1 <= len(self.holder) <= 64:
            raise ValueError("an asset holder is 1..64 bytes")

    def encode(self) -> bytes:
        """Canonical bytes: 32-byte big-endian ledger ID ‖ holder."""
        return self.ledger_id.to_bytes(32, "big") + self.holder

    @classmethod
    def decode(cls, data: bytes) -> Asset:
        """Inverse of :meth:`encode`."""
        if len(data) < 33:
            raise ValueError("asset encoding too short")
        return cls(int.from_bytes(data[:32], "big"), bytes(data[32:]))

    def __str__(self) -> str:
        try:
            name = self.holder.decode("ascii")
            if name.isprintable():
                return f"{name}@{self.ledger_id}"
        except UnicodeDecodeError:
            pass
        return f"0x{self.holder.hex()}@{self.ledger_id}"
