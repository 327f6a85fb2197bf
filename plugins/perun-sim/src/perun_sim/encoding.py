"""Canonical encodings of the sim backend: params, states, funding IDs, withdrawal auths.

Every encoding is a msgpack array (msgspec) whose first element is a domain tag, so bytes
signed as one kind of object can never be read as another (a state is never a withdrawal
authorization, and neither is a wire-handshake transcript). Integers that may exceed 64 bits
(balances, nonce, amounts) are big-endian byte strings without leading zeros (zero is the
empty string); msgpack's smallest-form integers and length-prefixed strings make the
encoding injective. The full layout is documented in ``docs/sim.md``.
"""

from __future__ import annotations

import msgspec

from perun_core.channel import limits
from perun_core.channel.params import Params
from perun_core.channel.state import State
from perun_core.channel.types import Address, Asset
from perun_core.errors import BalanceOverflowError, InvalidStateError, NegativeBalanceError
from perun_sim.crypto import sha3

PARAMS_TAG = "perun-sim/params/v1"
STATE_TAG = "perun-sim/state/v1"
WITHDRAWAL_TAG = "perun-sim/withdrawal/v1"

_encode = msgspec.msgpack.encode


def uint_bytes(n: int) -> bytes:
    """``n`` as minimal big-endian bytes (``b""`` for zero); refuses values outside [0, 2**256)."""
    if n < 0:
        raise NegativeBalanceError(f"value {n} is negative")
    if n >= limits.BALANCE_BOUND:
        raise BalanceOverflowError("value is not below 2**256")
    return n.to_bytes((n.bit_length() + 7) >> 3, "big")


def encode_params(params: Params) -> bytes:
    """Canonical bytes of every field of ``params`` except ``backend`` and ``id``.

    ``[tag, challenge_duration, [participant…], nonce, app | nil, ledger, virtual, aux]``
    """
    return _encode(
        (
            PARAMS_TAG,
            params.challenge_duration,
            [p.raw for p in params.participants],
            uint_bytes(params.nonce),
            params.app,
            bool(params.ledger_channel),
            bool(params.virtual_channel),
            params.aux,
        )
    )


def channel_id(params: Params) -> bytes:
    """The 32-byte channel ID: SHA3-256 of :func:`encode_params` (binds ``aux``; fixes D9)."""
    return sha3(encode_params(params))


def encode_state(state: State) -> bytes:
    """Canonical bytes of every field of ``state``.

    ``[tag, channel_id, version, [asset.encode()…], [[balance…]…],
    [[sub_id, [locked…], [index…]]…], app | nil, data, is_final]``

    Raises:
        InvalidStateError: the version is outside ``[0, 2**64)``.
        NegativeBalanceError, BalanceOverflowError: a balance outside ``[0, 2**256)``.
    """
    alloc = state.allocation
    if not 0 <= state.version < limits.VERSION_BOUND:
        raise InvalidStateError(
            f"version {state.version} not in [0, 2**64)",
            channel_id=state.channel_id,
            rule="state-version",
        )
    return _encode(
        (
            STATE_TAG,
            state.channel_id,
            state.version,
            [a.encode() for a in alloc.assets],
            [[uint_bytes(b) for b in row] for row in alloc.balances],
            [[s.id, [uint_bytes(b) for b in s.balances], list(s.index_map)] for s in alloc.locked],
            state.app,
            state.data,
            bool(state.is_final),
        )
    )


def hash_state(state: State) -> bytes:
    """SHA3-256 of :func:`encode_state`: the digest signatures cover and disputes store."""
    return sha3(encode_state(state))


def funding_id(channel_id: bytes, participant: Address) -> bytes:
    """Where a participant's deposits for a channel are held: SHA3-256(channel_id ‖ address).

    The channel ID has a fixed 32 bytes, so the concatenation is unambiguous.
    """
    return sha3(channel_id + participant.raw)


def encode_withdrawal_auth(
    channel_id: bytes, participant: Address, receiver: Address, amount: int, asset: Asset
) -> bytes:
    """Canonical bytes of a withdrawal authorization.

    ``[tag, channel_id, participant, receiver, amount, asset.encode()]`` — unlike Ethereum
    (one contract per asset), the sim binds the asset into the authorization.
    """
    return _encode(
        (
            WITHDRAWAL_TAG,
            channel_id,
            participant.raw,
            receiver.raw,
            uint_bytes(amount),
            asset.encode(),
        )
    )


def sim_app_id(name: str) -> bytes:
    """The AppID of the app ``name`` on the sim ledger: the last 20 bytes of SHA3-256 of
    ``b"perun-sim/app/" + name`` (an address-shaped ID, like an app contract's address)."""
    return sha3(b"perun-sim/app/" + name.encode())[-20:]


PAYMENT_APP_ID = sim_app_id("payment")
"""AppID of the payment app on the sim ledger: the last 20 bytes of SHA3-256 of
``b"perun-sim/app/payment"`` (an address-shaped ID, like an app contract's address)."""
