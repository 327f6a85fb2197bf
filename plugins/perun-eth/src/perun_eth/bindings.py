"""Calldata and view calls of the Perun contracts, encoded with eth_abi.

Only the functions of the reference interface are used, so these bindings drive our own
deployment and any ABI-compatible one alike. Calldata is built from the selectors and the ABI
tuple types of :mod:`perun_eth.encoding`; nothing here depends on our artifacts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode

from perun_core.channel.allocation import Allocation, SubAlloc
from perun_core.channel.params import Params
from perun_core.channel.state import SignedState, State
from perun_core.channel.types import Address, Asset
from perun_eth.encoding import (
    PARAMS_ABI,
    STATE_ABI,
    ZERO_ADDRESS,
    keccak256,
    params_abi,
    state_abi,
)

SIGNED_STATE_ABI: Final = f"({PARAMS_ABI},{STATE_ABI},bytes[])"
WITHDRAWAL_AUTH_ABI: Final = "(bytes32,address,address,uint256)"


def _selector(signature: str) -> bytes:
    return keccak256(signature.encode())[:4]


# The canonical signatures of the contract functions (tuples expanded).
REGISTER: Final = _selector(f"register({SIGNED_STATE_ABI},{SIGNED_STATE_ABI}[])")
PROGRESS: Final = _selector(f"progress({PARAMS_ABI},{STATE_ABI},{STATE_ABI},uint256,bytes)")
CONCLUDE: Final = _selector(f"conclude({PARAMS_ABI},{STATE_ABI},{STATE_ABI}[])")
CONCLUDE_FINAL: Final = _selector(f"concludeFinal({PARAMS_ABI},{STATE_ABI},bytes[])")
CHANNEL_ID: Final = _selector(f"channelID({PARAMS_ABI})")
HASH_STATE: Final = _selector(f"hashState({STATE_ABI})")
DISPUTES: Final = _selector("disputes(bytes32)")
DEPOSIT: Final = _selector("deposit(bytes32,uint256)")
WITHDRAW: Final = _selector(f"withdraw({WITHDRAWAL_AUTH_ABI},bytes)")
HOLDINGS: Final = _selector("holdings(bytes32)")
SETTLED: Final = _selector("settled(bytes32)")
ADJUDICATOR: Final = _selector("adjudicator()")
TOKEN: Final = _selector("token()")
APPROVE: Final = _selector("approve(address,uint256)")
ALLOWANCE: Final = _selector("allowance(address,address)")
BALANCE_OF: Final = _selector("balanceOf(address)")
TRANSFER: Final = _selector("transfer(address,uint256)")

CHANNEL_UPDATE_TOPIC: Final = keccak256(b"ChannelUpdate(bytes32,uint64,uint8,uint64)")
DEPOSITED_TOPIC: Final = keccak256(b"Deposited(bytes32,uint256)")
WITHDRAWN_TOPIC: Final = keccak256(b"Withdrawn(bytes32,uint256,address)")


class Phase(IntEnum):
    """The on-chain dispute phases."""

    DISPUTE = 0
    FORCEEXEC = 1
    CONCLUDED = 2


@dataclass(frozen=True, slots=True)
class Dispute:
    """``Adjudicator.disputes(channelID)`` of a registered channel."""

    timeout: int
    challenge_duration: int
    version: int
    has_app: bool
    phase: Phase
    state_hash: bytes


def _call(selector: bytes, types: Sequence[str], args: Sequence[Any]) -> bytes:
    return selector + abi_encode(list(types), list(args))


def _signed_abi(s: SignedState) -> tuple[Any, ...]:
    return (params_abi(s.params), state_abi(s.state), list(s.sigs))


def register_data(root: SignedState, subs: Sequence[SignedState]) -> bytes:
    """Calldata of ``register(channel, subChannels)`` (subs in depth-first pre-order)."""
    return _call(
        REGISTER,
        [SIGNED_STATE_ABI, f"{SIGNED_STATE_ABI}[]"],
        [_signed_abi(root), [_signed_abi(s) for s in subs]],
    )


def progress_data(params: Params, old: State, new: State, actor_idx: int, sig: bytes) -> bytes:
    """Calldata of ``progress(params, stateOld, state, actorIdx, sig)``."""
    return _call(
        PROGRESS,
        [PARAMS_ABI, STATE_ABI, STATE_ABI, "uint256", "bytes"],
        [params_abi(params), state_abi(old), state_abi(new), actor_idx, sig],
    )


def conclude_data(params: Params, state: State, subs: Sequence[State]) -> bytes:
    """Calldata of ``conclude(params, state, subStates)``."""
    return _call(
        CONCLUDE,
        [PARAMS_ABI, STATE_ABI, f"{STATE_ABI}[]"],
        [params_abi(params), state_abi(state), [state_abi(s) for s in subs]],
    )


def conclude_final_data(params: Params, state: State, sigs: Sequence[bytes]) -> bytes:
    """Calldata of ``concludeFinal(params, state, sigs)``."""
    return _call(
        CONCLUDE_FINAL,
        [PARAMS_ABI, STATE_ABI, "bytes[]"],
        [params_abi(params), state_abi(state), list(sigs)],
    )


def channel_id_data(params: Params) -> bytes:
    """Calldata of ``channelID(params)``."""
    return _call(CHANNEL_ID, [PARAMS_ABI], [params_abi(params)])


def hash_state_data(state: State) -> bytes:
    """Calldata of ``hashState(state)``."""
    return _call(HASH_STATE, [STATE_ABI], [state_abi(state)])


def disputes_data(channel_id: bytes) -> bytes:
    """Calldata of ``disputes(channelID)``."""
    return _call(DISPUTES, ["bytes32"], [channel_id])


def decode_dispute(out: bytes) -> Dispute | None:
    """The ``disputes`` return value, or ``None`` for a channel never registered."""
    timeout, d, version, has_app, phase, state_hash = abi_decode(
        ["uint64", "uint64", "uint64", "bool", "uint8", "bytes32"], out
    )
    if state_hash == bytes(32):  # storage never written: no dispute
        return None
    return Dispute(timeout, d, version, bool(has_app), Phase(phase), bytes(state_hash))


def deposit_data(funding_id: bytes, amount: int) -> bytes:
    """Calldata of ``deposit(fundingID, amount)``."""
    return _call(DEPOSIT, ["bytes32", "uint256"], [funding_id, amount])


def withdraw_data(
    channel_id: bytes, participant: Address, receiver: Address, amount: int, sig: bytes
) -> bytes:
    """Calldata of ``withdraw(authorization, signature)``."""
    auth = (channel_id, participant.raw, receiver.raw, amount)
    return _call(WITHDRAW, [WITHDRAWAL_AUTH_ABI, "bytes"], [auth, sig])


def bytes32_arg(selector: bytes, value: bytes) -> bytes:
    """Calldata of a ``f(bytes32)`` view (``holdings``, ``settled``)."""
    return _call(selector, ["bytes32"], [value])


def approve_data(spender: bytes, amount: int) -> bytes:
    """Calldata of ERC-20 ``approve(spender, amount)``."""
    return _call(APPROVE, ["address", "uint256"], [spender, amount])


def allowance_data(owner: bytes, spender: bytes) -> bytes:
    """Calldata of ERC-20 ``allowance(owner, spender)``."""
    return _call(ALLOWANCE, ["address", "address"], [owner, spender])


def balance_of_data(owner: bytes) -> bytes:
    """Calldata of ERC-20 ``balanceOf(owner)``."""
    return _call(BALANCE_OF, ["address"], [owner])


def transfer_data(to: bytes, amount: int) -> bytes:
    """Calldata of ERC-20 ``transfer(to, amount)``."""
    return _call(TRANSFER, ["address", "uint256"], [to, amount])


def decode_uint(out: bytes) -> int:
    """A single ``uint256`` return value."""
    return int(abi_decode(["uint256"], out)[0])


def decode_bool(out: bytes) -> bool:
    """A single ``bool`` return value."""
    return bool(abi_decode(["bool"], out)[0])


def decode_address(out: bytes) -> bytes:
    """A single ``address`` return value (20 raw bytes)."""
    return bytes.fromhex(abi_decode(["address"], out)[0][2:])


# --- decoding calldata back into channel objects ------------------------------------------------


def _app(raw: Any) -> bytes | None:
    b = bytes.fromhex(raw[2:]) if isinstance(raw, str) else bytes(raw)
    return None if b == ZERO_ADDRESS else b


def _addr(raw: Any) -> bytes:
    return bytes.fromhex(raw[2:]) if isinstance(raw, str) else bytes(raw)


def state_from_abi(value: Sequence[Any], app: bytes | None) -> State:
    """A core :class:`State` from a decoded ``State`` tuple (``app`` comes from the params)."""
    cid, version, (assets, balances, locked), data, is_final = value
    return State(
        channel_id=bytes(cid),
        version=int(version),
        allocation=Allocation(
            tuple(Asset(int(c), _addr(h)) for c, h in assets),
            tuple(tuple(int(b) for b in row) for row in balances),
            tuple(
                SubAlloc(bytes(i), tuple(int(b) for b in bals), tuple(int(j) for j in im))
                for i, bals, im in locked
            ),
        ),
        app=app,
        data=bytes(data),
        is_final=bool(is_final),
    )


@dataclass(frozen=True, slots=True)
class CalledState:
    """A state found in adjudicator calldata, with what else the call carried."""

    state: State
    sigs: tuple[bytes, ...] = ()
    actor_idx: int | None = None


def states_in_calldata(data: bytes) -> list[CalledState]:
    """Every channel state in a call to ``register``, ``progress``, ``conclude`` or
    ``concludeFinal`` (the root first, then sub-states in order); ``[]`` for other calls."""
    sel, body = data[:4], data[4:]
    try:
        if sel == REGISTER:
            root, subs = abi_decode([SIGNED_STATE_ABI, f"{SIGNED_STATE_ABI}[]"], body)
            return [
                CalledState(state_from_abi(s[1], _app(s[0][3])), tuple(bytes(x) for x in s[2]))
                for s in (root, *subs)
            ]
        if sel == PROGRESS:
            p, _old, new, actor, sig = abi_decode(
                [PARAMS_ABI, STATE_ABI, STATE_ABI, "uint256", "bytes"], body
            )
            return [CalledState(state_from_abi(new, _app(p[3])), (bytes(sig),), int(actor))]
        if sel == CONCLUDE:
            p, st, subs = abi_decode([PARAMS_ABI, STATE_ABI, f"{STATE_ABI}[]"], body)
            app = _app(p[3])
            return [CalledState(state_from_abi(st, app))] + [
                CalledState(state_from_abi(s, None)) for s in subs
            ]
        if sel == CONCLUDE_FINAL:
            p, st, sigs = abi_decode([PARAMS_ABI, STATE_ABI, "bytes[]"], body)
            return [CalledState(state_from_abi(st, _app(p[3])), tuple(bytes(x) for x in sigs))]
    except Exception:  # noqa: BLE001 - not decodable: a foreign call that shares a selector
        return []  # not decodable: a foreign call that shares a selector
    return []
