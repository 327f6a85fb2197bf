"""Errors specific to the Ethereum backend (all derive from :mod:`perun_core.errors`).

Every refusal by the contracts becomes a :class:`~perun_core.errors.ChainError`: the core leaf
of the rule that failed (:class:`~perun_core.errors.StaleStateError`,
:class:`~perun_core.errors.TimeoutNotElapsedError`, ...), refined here by a subclass of
:class:`ContractRevertError` of the same name that also says whether a mined transaction
failed. :func:`error_for_revert` chooses it from the revert string; ``_BY_REASON`` is the one
table of that mapping. The error keeps the revert string as ``reason`` and the transaction
hash (when one was sent) as ``tx``. Catch the core classes; the ones here exist so that code
written against earlier versions of this module keeps working.
"""

from __future__ import annotations

from typing import Final

from perun_core import errors as core
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


class NodeConnectionError(core.ChainConnectionError):
    """The Ethereum node cannot be reached (after retries) or answered garbage."""


class DeploymentError(ChainError):
    """The configured contracts are missing, incompatible or wired to other contracts."""


class KeystoreError(PerunError, ValueError):
    """A keystore file cannot be read, or its password is wrong."""


class TransactionTimeoutError(ChainError, TimeoutError):
    """A transaction was not mined in time, even after fee bumps."""


class ContractRevertError(ChainError):
    """The contract reverted; the base of every revert error of this backend.

    Raised as such for a reason without a more specific error (e.g. an internal check of the
    contracts, or an arithmetic panic).

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


# The Ethereum forms of the core refusals: each is a ContractRevertError (``mined``) and the
# core leaf, so ``except perun_core.errors.StaleStateError`` catches them.


class StaleStateError(ContractRevertError, core.StaleStateError):
    """The registered state has the same or a higher version ("invalid version")."""


class RefutationClosedError(ContractRevertError, core.RefutationClosedError):
    """The refutation window is over or the dispute moved on."""


class TimeoutNotElapsedError(ContractRevertError, core.TimeoutNotElapsedError):
    """The timeout the operation waits for has not passed on chain yet."""


class ForceExecutionClosedError(ContractRevertError, core.ForceExecutionClosedError):
    """Force-execution is over ("timeout passed") or the channel is concluded."""


class AlreadyConcludedError(ContractRevertError, core.AlreadyConcludedError):
    """The channel is already concluded (success where a conclusion was the goal)."""


class NotRegisteredError(ContractRevertError, core.NotRegisteredError):
    """The channel has no dispute on chain ("not registered")."""


class StateMismatchError(ContractRevertError, core.StateMismatchError):
    """The given state is not the one registered ("wrong old state", "invalid channel
    state")."""


class NotFinalError(ContractRevertError, core.NotFinalError):
    """``concludeFinal`` with a state that is not final ("state not final")."""


class NotSettledError(ContractRevertError, core.NotSettledError):
    """The asset holder has no outcome for the channel yet."""


class InsufficientHoldingsError(ContractRevertError, core.InsufficientHoldingsError):
    """The withdrawal asks for more than the participant holds."""


class DepositError(ContractRevertError, core.DepositError):
    """A deposit was refused (wrong value, missing allowance)."""


class InsufficientBalanceError(DepositError, core.InsufficientBalanceError):
    """The depositor does not hold the tokens ("ERC20: transfer amount exceeds balance")."""


class PayoutFailedError(ContractRevertError, core.PayoutFailedError):
    """The asset holder could not pay the receiver ("ETH transfer failed", "transfer
    failed")."""


class InvalidSignatureError(ContractRevertError, core.SignatureRefusedError):
    """A signature was refused on chain."""


class ChannelIDMismatchError(ContractRevertError, core.ParamsMismatchError):
    """The params do not hash to the state's channel ID ("invalid params")."""


class ChannelKindError(ContractRevertError, core.ChannelKindError):
    """The operation does not apply to this kind of channel ("not ledger", "must have app",
    ...)."""


class SubChannelMismatchError(ContractRevertError, core.SubChannelMismatchError):
    """The sub-channel states do not match the parent's locked sub-allocations."""


class InvalidProgressError(ContractRevertError, core.InvalidProgressError):
    """``progress`` refused the transition (generic rules or the app's revert)."""


class MissingSubStatesError(ContractRevertError, core.MissingSubStatesError):
    """Fewer sub-channel states than locked sub-allocations."""


ConcludedWithOtherStateError = core.ConcludedWithOtherStateError
"""The channel was concluded with a state other than the one given (the core class)."""


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
    "trying to set already settled channel": AlreadyConcludedError,
    "not registered": NotRegisteredError,
    "wrong old state": StateMismatchError,
    "invalid channel state": StateMismatchError,
    "state not final": NotFinalError,
    "channel not settled": NotSettledError,
    "insufficient funds": InsufficientHoldingsError,
    "wrong amount of ETH for deposit": DepositError,
    "message value must be 0 for token deposit": DepositError,
    "ERC20: insufficient allowance": DepositError,
    "transferFrom failed": DepositError,
    "ERC20: transfer amount exceeds balance": InsufficientBalanceError,
    "ETH transfer failed": PayoutFailedError,
    "transfer failed": PayoutFailedError,
    "not ledger": ChannelKindError,
    "cannot have sub-channels": ChannelKindError,
    "cannot have locked funds": ChannelKindError,
    "cannot have app": ChannelKindError,
    "must have app": ChannelKindError,
    "subChannels: too short": MissingSubStatesError,
    "subStates: too short": MissingSubStatesError,
    "invalid sub-channel id": SubChannelMismatchError,
    "invalid subchannel id": SubChannelMismatchError,
    "actorIdx out of range": InvalidProgressError,
    "version must increment by one": InvalidProgressError,
    "cannot progress from final state": InvalidProgressError,
    "balances length mismatch": InvalidProgressError,
    "assets length mismatch": InvalidProgressError,
    "old balances length mismatch": InvalidProgressError,
    "new balances length mismatch": InvalidProgressError,
    "sum of balances mismatch": InvalidProgressError,
    "SubAlloc[]: unequal length": InvalidProgressError,
    "SubAlloc: unequal ID": InvalidProgressError,
}
"""Revert string → error. Strings of internal checks (the asset holder's caller, array
lengths it receives, missing contract code) stay :class:`ContractRevertError`."""

_EQUALITY_REASONS: Final = frozenset(
    {
        "Asset[]: unequal length",
        "Asset: unequal chainID",
        "Asset: unequal holder",
        "uint256[]: unequal length",
        "uint256[]: unequal item",
        "uint16[]: unequal length",
        "uint16[]: unequal item",
    }
)
"""Equality checks shared by ``register`` (sub-channels against the locked funds) and
``progress`` (the new state against the old)."""

_INTERNAL_REASONS: Final = frozenset(
    {"can only be called by the adjudicator", "participants length should equal balances"}
)


def error_for_revert(
    reason: str, *, tx: str | None = None, operation: str | None = None, mined: bool = False
) -> ContractRevertError:
    """The typed error for a contract's revert ``reason``.

    Args:
        reason: the revert string.
        tx: the transaction hash, if one was sent.
        operation: what was attempted (``"progress"`` turns the reasons of the app contract,
            which are free text, into :class:`InvalidProgressError`).
        mined: a mined transaction failed (unknown reasons give
            :class:`TransactionFailedError` then).
    """
    cls = _BY_REASON.get(reason)
    if cls is None and reason.startswith("ECDSA: "):
        cls = InvalidSignatureError
    if cls is None and reason in _EQUALITY_REASONS:
        cls = InvalidProgressError if operation == "progress" else SubChannelMismatchError
    if (
        cls is None
        and operation == "progress"
        and reason
        and not reason.startswith("panic ")
        and reason not in _INTERNAL_REASONS
    ):
        cls = InvalidProgressError  # the app contract's validTransition reverted
    if cls is None:
        cls = TransactionFailedError if mined else ContractRevertError
    return cls(reason, tx=tx, operation=operation, mined=mined)
