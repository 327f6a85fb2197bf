"""The sim signature scheme: secp256k1 over SHA3-256 (see ``docs/sim.md``).

* **Hash**: SHA3-256 (FIPS-202, :func:`hashlib.sha3_256`) everywhere. The sim deliberately
  does not use Keccak, so a sim signature can never be replayed on Ethereum.
* **Address**: the last 20 bytes of SHA3-256 of the 64-byte uncompressed public key
  (``x ‖ y``, without the ``0x04`` prefix).
* **Signature**: 65 bytes ``r ‖ s ‖ v`` over the digest ``SHA3-256(message)``; ``r`` and
  ``s`` big-endian, ``v`` ∈ {0, 1} (the raw recovery ID, not Ethereum's 27/28), ``s`` in the
  lower half of the curve order (low-s), so every signature has exactly one valid encoding.
  Any other form is refused with :class:`SimSignatureFormatError`.
* **Verification** recovers the public key from the signature and compares addresses.
"""

from __future__ import annotations

import hashlib

from coincurve import PrivateKey, PublicKey

from perun_core.channel.types import Address
from perun_core.errors import MalformedSignatureError

SIG_LEN = 65
ADDRESS_LEN = 20
#: order of the secp256k1 group
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2
_HALF_N_BYTES = _HALF_N.to_bytes(32, "big")
_N_BYTES = SECP256K1_N.to_bytes(32, "big")
_ZERO32 = bytes(32)


class SimSignatureFormatError(MalformedSignatureError):
    """Signature bytes that are not a canonical sim signature.

    Attributes:
        reason: the Ethereum-style refusal string the sim ledger reports for it
            (``"ECDSA: invalid signature length"``, ``... 's' value``, ``... 'v' value``,
            ``"ECDSA: invalid signature"``), so ledger errors compare across backends.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


def sha3(data: bytes) -> bytes:
    """SHA3-256 (FIPS-202) of ``data``."""
    return hashlib.sha3_256(data).digest()


def address_from_public_key(public_key: PublicKey) -> bytes:
    """The 20-byte sim address of a public key."""
    return sha3(public_key.format(compressed=False)[1:])[-ADDRESS_LEN:]


def sign_digest(key: PrivateKey, digest: bytes) -> bytes:
    """Sign a 32-byte digest; returns ``r ‖ s ‖ v`` with ``v`` ∈ {0, 1} and low ``s``.

    libsecp256k1 always produces low-s signatures, so no normalisation is needed.
    """
    return key.sign_recoverable(digest, hasher=None)


def check_signature_format(sig: bytes) -> None:
    """Refuse anything but a canonical 65-byte sim signature.

    Raises:
        SimSignatureFormatError: wrong length, ``v`` not in {0, 1}, ``r``/``s`` out of
            range or ``s`` in the upper half of the curve order (malleable).
    """
    if not isinstance(sig, (bytes, bytearray)) or len(sig) != SIG_LEN:
        n = len(sig) if isinstance(sig, (bytes, bytearray)) else type(sig).__name__
        raise SimSignatureFormatError(
            "ECDSA: invalid signature length", f"a sim signature has 65 bytes, got {n}"
        )
    if sig[64] > 1:
        raise SimSignatureFormatError(
            "ECDSA: invalid signature 'v' value", f"v must be 0 or 1, got {sig[64]}"
        )
    # Big-endian 32-byte strings compare like the numbers they encode: no int conversion
    # on the hot path (every received signature passes here).
    s = bytes(sig[32:64])
    if s > _HALF_N_BYTES:
        raise SimSignatureFormatError(
            "ECDSA: invalid signature 's' value", "s is not in the lower half of the order"
        )
    r = bytes(sig[0:32])
    if not (_ZERO32 < r < _N_BYTES and s > _ZERO32):
        raise SimSignatureFormatError("ECDSA: invalid signature", "r or s out of range")


def recover_address(digest: bytes, sig: bytes) -> bytes:
    """The 20-byte address that made ``sig`` over ``digest``.

    Raises:
        SimSignatureFormatError: ``sig`` is not a canonical signature or recovers no key.
    """
    check_signature_format(sig)
    try:
        pub = PublicKey.from_signature_and_message(bytes(sig), digest, hasher=None)
    except ValueError as e:
        raise SimSignatureFormatError("ECDSA: invalid signature", "no public key recovers") from e
    return address_from_public_key(pub)


def verify_digest(address: Address, digest: bytes, sig: bytes) -> bool:
    """Whether ``sig`` over ``digest`` was made by ``address`` (malformed: raises)."""
    return recover_address(digest, sig) == address.raw


def verify_message(address: Address, message: bytes, sig: bytes) -> bool:
    """Whether ``sig`` is ``address``'s sim signature on the raw ``message``."""
    return verify_digest(address, sha3(message), sig)
