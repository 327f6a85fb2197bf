"""Errors specific to the Ethereum backend (all derive from :mod:`perun_core.errors`).

Every refusal by the contracts becomes a :class:`~perun_core.errors.ChainError` subclass chosen
by its revert string (ETHEREUM.md §7.1); :func:`error_for_revert` does the mapping. The error
keeps the revert string as ``reason`` and the transaction hash (when one was sent) as ``tx``.
"""

from __future__ import annotations

from typing import Final

from perun_core.errors import ChainError, InvalidStateError, PerunError, UnsupportedFeatureError


class UnsupportedParamsError(UnsupportedFeatureError, InvalidStateError):
    """Channel params that the Ethereum ``Params`` struct cannot express.

    Raised for non-empty ``aux`` (it has no field in the struct, so it could not be bound into
    the channel ID), participants or AppIDs that are not 20-byte addresses, and challenge
    durations that do not fit the contract's ``uint64``. It is both "not supported" and an
    invalid-state error, so proposals with such params are refused like any invalid ones.
    """


class EthConfigError(PerunError, ValueError):
    """An Ethereum backend configuration that cannot work (missing or malformed key)."""


class NodeConnectionError(ChainError):
    """The Ethereum node cannot be reached (after retries) or answered garbage."""


class DeploymentError(ChainError):
    """The configured contracts are missing, incompatible or wired to other contracts."""


class KeystoreError(PerunError, ValueError):
    """A keystore file cannot be read, or its password is wrong."""


class TransactionTimeoutError(ChainError, TimeoutError):
    """A transaction was not mined in time, even after fee bumps."""


class ContractRevertError(ChainError):
    """The contract reverted with a reason that has no more specific error.

    Attributes:
        mined: whether a mined transaction failed (``tx`` is its hash); otherwise the
            pre-flight estimate or call reverted and nothing was sent.
    """

    def __init__(
        self,
        reason: str,
        *,
        tx: str | None = None,
        operation: str | None = None,
        mined: bool = False,
    ) -> None:
        super().__init__(reason, tx=tx, operation=operation)
        self.mined = mined


class TransactionFailedError(ContractRevertError):
    """A mined transaction failed (status 0) for a reason without a more specific error
    (e.g. out of gas); ``reason`` is what replaying it gave. Mined failures with a known
    revert string raise that string's error, with ``mined`` set."""


class ChannelIDMismatchError(ContractRevertError):
    """The params do not hash to the state's channel ID ("invalid params")."""


class InvalidSignatureError(ContractRevertError):
    """A signature was refused on chain."""


class StaleStateError(ContractRevertError):
    """The registered state has the same or a higher version ("invalid version")."""


class RefutationClosedError(ContractRevertError):
    """The refutation window is over or the dispute moved on."""


class TimeoutNotElapsedError(ContractRevertError):
    """The timeout the operation waits for has not passed on chain yet."""


class ForceExecutionClosedError(ContractRevertError):
    """Force-execution is over ("timeout passed") or the channel is concluded."""


class AlreadyConcludedError(ContractRevertError):
    """The channel is already concluded (success where a conclusion was the goal)."""


class NotRegisteredError(ContractRevertError):
    """The channel has no dispute on chain ("not registered")."""


class StateMismatchError(ContractRevertError):
    """The given state is not the one registered ("wrong old state", "invalid channel
    state")."""


class NotSettledError(ContractRevertError):
    """The asset holder has no outcome for the channel yet."""


class InsufficientHoldingsError(ContractRevertError):
    """The withdrawal asks for more than the participant holds."""


class DepositError(ContractRevertError):
    """A deposit was refused (wrong value, missing allowance)."""


class ConcludedWithOtherStateError(ChainError):
    """The channel was concluded with a state other than the one we hold."""


_BY_REASON: Final[dict[str, type[ContractRevertError]]] = {
    "invalid params": ChannelIDMismatchError,
    "signatures length mismatch": InvalidSignatureError,
    "invalid signature": InvalidSignatureError,
    "signature verification failed": InvalidSignatureError,
    "invalid version": StaleStateError,
    "refutation timeout passed": RefutationClosedError,
    "incorrect phase": RefutationClosedError,
    "timeout not passed": TimeoutNotElapsedError,
    "timeout not passed yet": TimeoutNotElapsedError,
    "timeout passed": ForceExecutionClosedError,
    "invalid phase": ForceExecutionClosedError,
    "channel already concluded": AlreadyConcludedError,
    "not registered": NotRegisteredError,
    "wrong old state": StateMismatchError,
    "invalid channel state": StateMismatchError,
    "channel not settled": NotSettledError,
    "insufficient funds": InsufficientHoldingsError,
    "wrong amount of ETH for deposit": DepositError,
    "message value must be 0 for token deposit": DepositError,
    "ERC20: insufficient allowance": DepositError,
}


def error_for_revert(
    reason: str, *, tx: str | None = None, operation: str | None = None, mined: bool = False
) -> ContractRevertError:
    """The typed error for a contract's revert ``reason`` (ETHEREUM.md §7.1 table).

    Args:
        reason: the revert string.
        tx: the transaction hash, if one was sent.
        operation: what was attempted.
        mined: a mined transaction failed (unknown reasons give
            :class:`TransactionFailedError` then).
    """
    cls = _BY_REASON.get(reason)
    if cls is None and reason.startswith("ECDSA: "):
        cls = InvalidSignatureError
    if cls is None:
        cls = TransactionFailedError if mined else ContractRevertError
    return cls(reason, tx=tx, operation=operation, mined=mined)
