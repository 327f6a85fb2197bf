"""Ethereum encodings and signatures of channel params, states and withdrawals.

Everything here is pure and synchronous: the ABI encodings the contracts hash, the channel and
funding IDs, and EIP-191 signatures in the one form the contracts and this plugin accept
(65 bytes ``r ‖ s ‖ v``, ``v`` ∈ {27, 28}, low ``s``).

Dynamic structs (params, states) are encoded with eth_abi; the static ones (funding ID preimage,
withdrawal authorization) are plain 32-byte words and are built directly. Keccak-256 comes from
safe-pysha3 where it is installed (``perun-eth[fast]``: a C extension, 2.2 µs for a state's
encoding against pycryptodome's 5.7 µs) and from pycryptodome otherwise; secp256k1 from
coincurve (libsecp256k1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from coincurve import PrivateKey, PublicKey
from Crypto.Hash import keccak as _keccak
from eth_abi.exceptions import EncodingError
from eth_abi.registry import registry as _abi_registry

from perun_core.channel import limits
from perun_core.channel.params import Params
from perun_core.channel.state import State
from perun_core.channel.types import Address
from perun_core.errors import (
    BalanceOverflowError,
    InvalidAllocationError,
    InvalidStateError,
    MalformedSignatureError,
    NegativeBalanceError,
)
from perun_eth.errors import UnsupportedParamsError

ADDRESS_LEN = 20
SIG_LEN = 65
ZERO_ADDRESS = bytes(ADDRESS_LEN)
#: order of the secp256k1 group
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2
_EIP191_PREFIX = b"\x19Ethereum Signed Message:\n32"
_UINT16_BOUND = 2**16
_UINT64_BOUND = 2**64
_ZERO_WORD = bytes(32)
_OFFSET_WORD = (0x20).to_bytes(32, "big")
_TRUE_WORD = (1).to_bytes(32, "big")

#: ABI tuple type of ``Channel.Params``.
PARAMS_ABI = "(uint256,uint256,address[],address,bool,bool)"
#: ABI tuple type of ``Channel.State``.
STATE_ABI = (
    "(bytes32,uint64,((uint256,address)[],uint256[][],(bytes32,uint256[],uint16[])[]),bytes,bool)"
)
#: ABI tuple type of ``AssetHolder.WithdrawalAuth``.
WITHDRAWAL_AUTH_ABI = "(bytes32,address,address,uint256)"

Key = PrivateKey | bytes
"""A secp256k1 private key: a coincurve key or its 32-byte secret."""


class EthSignatureFormatError(MalformedSignatureError):
    """Signature bytes that are not a canonical Ethereum signature.

    Attributes:
        reason: the revert string the contracts give for the same bytes
            (``"ECDSA: invalid signature length"``, ``... 's' value``, ``... 'v' value``,
            ``"ECDSA: invalid signature"``).
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


# --- hashing and keys ---------------------------------------------------------------------


def keccak256_pycryptodome(data: bytes) -> bytes:
    """Keccak-256 through pycryptodome (always installed; the fallback)."""
    return _keccak.new(data=data, digest_bits=256).digest()


keccak256_pysha3: Callable[[bytes], bytes] | None
try:
    from sha3 import keccak_256 as _keccak_256  # type: ignore[import-untyped,import-not-found,unused-ignore]

    def keccak256_pysha3(data: bytes) -> bytes:
        """Keccak-256 through safe-pysha3 (``perun-eth[fast]``)."""
        return cast(bytes, _keccak_256(data).digest())

except ImportError:  # pragma: no cover - depends on the installed extras
    keccak256_pysha3 = None

keccak256: Callable[[bytes], bytes] = keccak256_pysha3 or keccak256_pycryptodome
"""Keccak-256 (Ethereum's ``keccak256``, not FIPS SHA3-256) of ``data``: the fastest
implementation installed."""


def eip191_digest(message_hash: bytes) -> bytes:
    """``keccak256("\\x19Ethereum Signed Message:\\n32" ‖ message_hash)``.

    Raises:
        ValueError: ``message_hash`` is not 32 bytes.
    """
    if len(message_hash) != 32:
        raise ValueError("an EIP-191 message hash has 32 bytes")
    return keccak256(_EIP191_PREFIX + message_hash)


def private_key(key: Key) -> PrivateKey:
    """``key`` as a coincurve key (``ValueError`` if the secret is not a valid key)."""
    return key if isinstance(key, PrivateKey) else PrivateKey(bytes(key))


def address_of_public_key(public_key: PublicKey) -> Address:
    """The Ethereum address of a public key: the last 20 bytes of keccak256(x ‖ y)."""
    return Address(keccak256(public_key.format(compressed=False)[1:])[-ADDRESS_LEN:])


def address_of(key: Key) -> Address:
    """The Ethereum address of a private key."""
    return address_of_public_key(private_key(key).public_key)


def _abi_encode(type_str: str, value: Any) -> bytes:
    """ABI-encode ``value`` with eth_abi's (cached) encoder of ``type_str``."""
    encoder = cast("Callable[[Any], bytes]", _abi_registry.get_encoder(type_str))
    return encoder(value)


# --- params and states --------------------------------------------------------------------


def _address(raw: bytes, what: str) -> bytes:
    if len(raw) != ADDRESS_LEN:
        raise UnsupportedParamsError(f"{what} must be a 20-byte Ethereum address, got {len(raw)}")
    return raw


def params_abi(params: Params) -> tuple[Any, ...]:
    """``params`` as the Python value of the ABI tuple :data:`PARAMS_ABI` (for eth_abi/web3).

    Raises:
        UnsupportedParamsError: ``aux`` is not empty, a participant or the AppID is not a
            20-byte address, the AppID is the zero address, or ``challenge_duration`` does not
            fit the contract's ``uint64``.
    """
    if params.aux:
        raise UnsupportedParamsError(
            "the Ethereum backend cannot bind params.aux into the channel ID; leave it empty"
        )
    if not 0 <= params.challenge_duration < _UINT64_BOUND:
        raise UnsupportedParamsError("challenge_duration does not fit a uint64")
    app = ZERO_ADDRESS
    if params.app is not None:
        app = _address(params.app, "the AppID")
        if app == ZERO_ADDRESS:
            raise UnsupportedParamsError("the zero address means 'no app': use app=None")
    return (
        params.challenge_duration,
        params.nonce,
        [_address(p.raw, "a participant") for p in params.participants],
        app,
        bool(params.ledger_channel),
        bool(params.virtual_channel),
    )


def encode_params(params: Params) -> bytes:
    """``abi.encode(params)``: the offset word ``0x20`` followed by the tuple (320 bytes for
    two participants).

    Raises:
        UnsupportedParamsError: see :func:`params_abi`.
    """
    return _abi_encode(f"({PARAMS_ABI})", (params_abi(params),))


def channel_id(params: Params) -> bytes:
    """The channel ID: ``keccak256(abi.encode(params))`` (= ``Adjudicator.channelID``)."""
    return keccak256(encode_params(params))


def state_abi(state: State) -> tuple[Any, ...]:
    """``state`` as the Python value of the ABI tuple :data:`STATE_ABI` (for eth_abi/web3).

    ``state.app`` is not part of it (the AppID lives in the params); ``state.data`` becomes
    ``appData``. Values are range-checked when encoded.

    Raises:
        InvalidStateError: the channel ID or a sub-allocation ID is not 32 bytes.
    """
    alloc = state.allocation
    # eth_abi right-pads short bytes32 values, so their lengths are checked here.
    if len(state.channel_id) != 32 or any(len(s.id) != 32 for s in alloc.locked):
        _diagnose_state(state)
    return (
        state.channel_id,
        state.version,
        (
            [(a.ledger_id, a.holder) for a in alloc.assets],
            [list(row) for row in alloc.balances],
            [(s.id, list(s.balances), list(s.index_map)) for s in alloc.locked],
        ),
        state.data,
        bool(state.is_final),
    )


def encode_state(state: State) -> bytes:
    """``abi.encode(state)``: the offset word ``0x20`` followed by the state tuple.

    Built word by word (about 5x faster than eth_abi, which :func:`encode_state_reference`
    uses; the tests hold the two equal): this runs twice per signature on the update path.

    Raises:
        InvalidStateError: the channel ID is not 32 bytes or the version is outside
            ``[0, 2**64)``.
        InvalidAllocationError: an asset holder is not a 20-byte address, a sub-allocation ID
            is not 32 bytes or an index-map entry is outside ``[0, 2**16)``.
        NegativeBalanceError, BalanceOverflowError: a balance outside ``[0, 2**256)``.
    """
    try:
        return _encode_state_words(state)
    except (OverflowError, ValueError, TypeError, AttributeError) as e:
        _diagnose_state(state)  # raises the precise typed error
        raise InvalidStateError(f"state cannot be ABI-encoded: {e}") from e


def encode_state_reference(state: State) -> bytes:
    """:func:`encode_state` through eth_abi (the reference the fast encoder is tested against).

    Raises:
        InvalidStateError: (or a subclass) as :func:`encode_state`.
    """
    try:
        return _abi_encode(f"({STATE_ABI})", (state_abi(state),))
    except (EncodingError, TypeError, ValueError) as e:
        _diagnose_state(state)
        raise InvalidStateError(f"state cannot be ABI-encoded: {e}") from e


def _word(n: int) -> bytes:
    """A uint256 word (``OverflowError`` for negative or too large values)."""
    return n.to_bytes(32, "big")


def _uint_array(values: tuple[int, ...], bound: int | None = None) -> bytes:
    if bound is not None and any(not 0 <= v < bound for v in values):
        raise ValueError("array entry out of range")
    return _word(len(values)) + b"".join([v.to_bytes(32, "big") for v in values])


def _dynamic_array(items: list[bytes]) -> bytes:
    """An array of dynamic elements: length, one offset per element (from after the
    length), then the elements."""
    out = [_word(len(items))]
    offset = 32 * len(items)
    for item in items:
        out.append(_word(offset))
        offset += len(item)
    out.extend(items)
    return b"".join(out)


def _encode_state_words(state: State) -> bytes:
    cid = state.channel_id
    if len(cid) != 32 or not 0 <= state.version < _UINT64_BOUND:
        raise ValueError("channel ID or version out of range")
    alloc = state.allocation
    assets = [_word(a.ledger_id) + _holder_word(a.holder) for a in alloc.assets]
    assets_enc = _word(len(assets)) + b"".join(assets)
    balances_enc = _dynamic_array([_uint_array(row) for row in alloc.balances])
    subs = []
    for sa in alloc.locked:
        if len(sa.id) != 32:
            raise ValueError("a sub-allocation ID has 32 bytes")
        bals = _uint_array(sa.balances)
        subs.append(
            sa.id
            + _word(0x60)
            + _word(0x60 + len(bals))
            + bals
            + _uint_array(sa.index_map, _UINT16_BOUND)
        )
    locked_enc = _dynamic_array(subs)
    outcome = b"".join(
        (
            _word(0x60),
            _word(0x60 + len(assets_enc)),
            _word(0x60 + len(assets_enc) + len(balances_enc)),
            assets_enc,
            balances_enc,
            locked_enc,
        )
    )
    data = bytes(state.data)
    return b"".join(
        (
            _OFFSET_WORD,
            cid,
            _word(state.version),
            _word(0xA0),
            _word(0xA0 + len(outcome)),
            _TRUE_WORD if state.is_final else _ZERO_WORD,
            outcome,
            _word(len(data)),
            data,
            bytes(-len(data) % 32),
        )
    )


def _holder_word(holder: bytes) -> bytes:
    if len(holder) != ADDRESS_LEN:
        raise ValueError("an asset holder is a 20-byte address")
    return bytes(12) + holder


def _check_uint(value: int, what: str) -> None:
    if not isinstance(value, int):
        raise InvalidAllocationError(f"{what} is not an integer")
    if value < 0:
        raise NegativeBalanceError(f"{what} is negative ({value})")
    if value >= limits.BALANCE_BOUND:
        raise BalanceOverflowError(f"{what} is not below 2**256")


def _diagnose_state(state: State) -> None:
    """Raise the typed error that explains why ``state`` does not encode (if one applies)."""
    cid = state.channel_id
    if not isinstance(cid, bytes) or len(cid) != 32:
        raise InvalidStateError("the channel ID must have 32 bytes", rule="state-channel-id")
    if not isinstance(state.version, int) or not 0 <= state.version < _UINT64_BOUND:
        raise InvalidStateError(
            f"version {state.version} not in [0, 2**64)",
            channel_id=cid,
            rule="state-version",
        )
    alloc = state.allocation
    for i, a in enumerate(alloc.assets):
        if len(a.holder) != ADDRESS_LEN:
            raise InvalidAllocationError(
                f"asset {i}: the holder must be a 20-byte address", channel_id=cid
            )
    for i, row in enumerate(alloc.balances):
        for p, b in enumerate(row):
            _check_uint(b, f"balance of participant {p} in asset {i}")
    for s in alloc.locked:
        if not isinstance(s.id, bytes) or len(s.id) != 32:
            raise InvalidAllocationError("a sub-allocation ID must have 32 bytes", channel_id=cid)
        for i, b in enumerate(s.balances):
            _check_uint(b, f"locked amount of asset {i}")
        if any(not isinstance(j, int) or not 0 <= j < _UINT16_BOUND for j in s.index_map):
            raise InvalidAllocationError("an index-map entry is outside [0, 2**16)", channel_id=cid)


def hash_state(state: State) -> bytes:
    """``keccak256(abi.encode(state))`` (= ``Adjudicator.hashState``; not the signed digest)."""
    return keccak256(encode_state(state))


def signed_digest(state: State) -> bytes:
    """The digest a state signature covers: the EIP-191 digest of :func:`hash_state`."""
    return eip191_digest(hash_state(state))


# --- signatures ---------------------------------------------------------------------------


def sign_digest(key: Key, digest: bytes) -> bytes:
    """Sign a 32-byte digest: ``r ‖ s ‖ v`` with ``v`` ∈ {27, 28} (libsecp256k1 gives low s)."""
    sig = private_key(key).sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes((sig[64] + 27,))


def check_signature_format(sig: bytes) -> None:
    """Refuse anything but a canonical 65-byte Ethereum signature.

    The checks and their order follow the contracts, so :attr:`EthSignatureFormatError.reason`
    is the revert string the same bytes would get on chain.

    Raises:
        EthSignatureFormatError: wrong length, ``s`` in the upper half of the curve order,
            ``v`` not 27 or 28, or ``r``/``s`` zero or not below the curve order.
    """
    if not isinstance(sig, (bytes, bytearray)) or len(sig) != SIG_LEN:
        n = len(sig) if isinstance(sig, (bytes, bytearray)) else type(sig).__name__
        raise EthSignatureFormatError(
            "ECDSA: invalid signature length", f"a signature has 65 bytes, got {n}"
        )
    s = int.from_bytes(sig[32:64], "big")
    if s > _HALF_N:
        raise EthSignatureFormatError(
            "ECDSA: invalid signature 's' value", "s is not in the lower half of the order"
        )
    if sig[64] not in (27, 28):
        raise EthSignatureFormatError(
            "ECDSA: invalid signature 'v' value", f"v must be 27 or 28, got {sig[64]}"
        )
    r = int.from_bytes(sig[0:32], "big")
    if not (0 < r < SECP256K1_N and s > 0):
        raise EthSignatureFormatError("ECDSA: invalid signature", "r or s out of range")


def recover_digest(digest: bytes, sig: bytes) -> Address:
    """The address whose key made ``sig`` over the 32-byte ``digest``.

    Raises:
        EthSignatureFormatError: ``sig`` is not canonical or no public key recovers from it.
    """
    check_signature_format(sig)
    try:
        pub = PublicKey.from_signature_and_message(
            bytes(sig[:64]) + bytes((sig[64] - 27,)), digest, hasher=None
        )
    except ValueError as e:
        raise EthSignatureFormatError("ECDSA: invalid signature", "no public key recovers") from e
    return address_of_public_key(pub)


def sign_state(key: Key, state: State) -> bytes:
    """Sign ``state`` as the contracts expect (EIP-191 over :func:`hash_state`)."""
    return sign_digest(key, signed_digest(state))


def recover_signer(state: State, sig: bytes) -> Address:
    """The address that signed ``state`` with ``sig``.

    Raises:
        MalformedSignatureError: ``sig`` is not a canonical signature
            (:class:`EthSignatureFormatError`).
    """
    return recover_digest(signed_digest(state), sig)


def verify_state(address: Address, state: State, sig: bytes) -> bool:
    """Whether ``sig`` is ``address``'s signature on ``state`` (malformed: raises)."""
    return recover_signer(state, sig) == address


# --- funding and withdrawal ---------------------------------------------------------------


def _word_address(a: Address) -> bytes:
    if len(a.raw) != ADDRESS_LEN:
        raise UnsupportedParamsError(f"{a} is not a 20-byte Ethereum address")
    return bytes(12) + a.raw


def funding_id(channel_id: bytes, participant: Address) -> bytes:
    """Where ``participant``'s deposits for a channel are held:
    ``keccak256(abi.encode(bytes32 channelID, address participant))``.
    """
    if len(channel_id) != 32:
        raise ValueError("a channel ID has 32 bytes")
    return keccak256(channel_id + _word_address(participant))


def encode_withdrawal_auth(
    channel_id: bytes, participant: Address, receiver: Address, amount: int
) -> bytes:
    """``abi.encode(WithdrawalAuth(channelID, participant, receiver, amount))``: 128 bytes,
    static, without an offset word.

    Raises:
        ValueError: the channel ID is not 32 bytes or ``amount`` is outside ``[0, 2**256)``.
        UnsupportedParamsError: an address is not 20 bytes.
    """
    if len(channel_id) != 32:
        raise ValueError("a channel ID has 32 bytes")
    if not 0 <= amount < limits.BALANCE_BOUND:
        raise ValueError("a withdrawal amount must be in [0, 2**256)")
    return (
        channel_id
        + _word_address(participant)
        + _word_address(receiver)
        + amount.to_bytes(32, "big")
    )


def withdrawal_digest(
    channel_id: bytes, participant: Address, receiver: Address, amount: int
) -> bytes:
    """The EIP-191 digest a withdrawal authorization signature covers."""
    return eip191_digest(
        keccak256(encode_withdrawal_auth(channel_id, participant, receiver, amount))
    )


def sign_withdrawal_auth(
    key: Key, channel_id: bytes, participant: Address, receiver: Address, amount: int
) -> bytes:
    """``participant``'s signature authorizing ``amount`` of its holdings to go to ``receiver``.

    ``key`` must be the participant's key; the asset holder checks the signer against
    ``participant``.
    """
    return sign_digest(key, withdrawal_digest(channel_id, participant, receiver, amount))


def recover_withdrawal_signer(
    channel_id: bytes, participant: Address, receiver: Address, amount: int, sig: bytes
) -> Address:
    """The address that signed a withdrawal authorization (malformed ``sig``: raises)."""
    return recover_digest(withdrawal_digest(channel_id, participant, receiver, amount), sig)
