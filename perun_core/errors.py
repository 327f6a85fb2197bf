"""The perun-py error family.

Every error derives from :class:`PerunError`. Messages say what happened, to which channel or
peer, and what the caller can do. Errors that carry structured context (a channel ID, a
version, the rule that failed) expose it as attributes so code can react without parsing text.

Family tree (leaves in brackets)::

    PerunError
    ├── PluginError [PluginNotFoundError, PluginConflictError, PluginValidationError]
    ├── NotSupportedError [UnsupportedFeatureError]
    ├── InvalidStateError [InvalidAllocationError, InvalidInitialStateError, ...]
    ├── InvalidTransitionError
    │   ├── InvalidUpdateError  (update rules U1-U13, one leaf per rule)
    │   └── PhaseTransitionError
    ├── SignatureError [InvalidSignatureError, MalformedSignatureError]
    ├── ProtocolError [MalformedMessageError, FrameTooLargeError, MisroutedMessageError, ...]
    ├── FundingTimeoutError, ChannelFundingError
    ├── ChainError [ChainConnectionError, StaleStateError, RefutationClosedError,
    │               TimeoutNotElapsedError, AlreadyConcludedError, StateMismatchError, ...]
    ├── ConfigError [ChainConfigError]
    ├── PeerRejectedError [UpdateConflictError]
    ├── RequestTimedOutError
    ├── PersistenceError [StoreLockedError, StoreCorruptError, StoreClosedError,
    │                     StoreFailedError]
    ├── WatchtowerError [TowerUnavailableError, WatchRefusedError [NotAParticipantError,
    │                    StaleWatchStateError, InvalidWatchStateError, ...]]
    └── ChannelClosedError, ChannelRegisteredError, SyncRequiredError, ...
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def _short(b: bytes | None) -> str:
    """A short hex form of an ID for messages."""
    if b is None:
        return "?"
    h = b.hex()
    return "0x" + (h if len(h) <= 16 else h[:8] + "…" + h[-6:])


class PerunError(Exception):
    """Base class of every error raised by perun-py."""


# --- plugins ------------------------------------------------------------------------------


class PluginError(PerunError):
    """A plugin could not be found, loaded or registered."""


class PluginNotFoundError(PluginError, LookupError):
    """No plugin registered the requested name.

    The message ends with what to do, in this order of preference: a plugin of that name is
    installed but was filtered out (``PERUN_PLUGINS``, ``PERUN_DISABLE_PLUGINS``); the name
    is close to an installed one (a typo); otherwise how to install ``perun-<name>``, from a
    package index or from a perun-py source tree.

    Attributes:
        kind: what was looked up ("chain backend", "bus", "persister", "command", "plugin").
        name: the name asked for.
        installed: the names that are registered for this kind.
        skipped: installed plugins that were not loaded, with the reason.
        suggestion: the installed name closest to ``name``, if one is close.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        installed: Sequence[str],
        *,
        skipped: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.installed = tuple(installed)
        self.skipped = dict(skipped or {})
        close = difflib.get_close_matches(name, [*self.installed, *self.skipped], n=1)
        self.suggestion = close[0] if close else None
        have = ", ".join(self.installed) if self.installed else "none"
        if name in self.skipped:
            advice = f"A plugin {name!r} is installed but was not loaded: {self.skipped[name]}."
        elif self.suggestion is not None:
            advice = f"Did you mean {self.suggestion!r}?"
        else:
            advice = _install_hint(name)
        super().__init__(f"No {kind} {name!r}. Installed: {have}. {advice}")


def _install_hint(name: str) -> str:
    """How to install the first-party plugin ``name`` (e.g. ``"eth"``): from a package
    index, or from a perun-py source tree (the plugins are not published yet)."""
    return (
        f"Install it with: pip install perun-{name} "
        f"(from a perun-py source tree: pip install ./plugins/perun-{name})"
    )


class PluginConflictError(PluginError):
    """Two plugins registered the same name for the same kind."""


class PluginValidationError(PluginError):
    """A plugin registered something unusable (wrong type, abstract methods left open, bad hook)."""


class NotSupportedError(PerunError, NotImplementedError):
    """The backend or plugin does not offer this capability (see its ``capabilities``)."""


class UnknownAppError(NotSupportedError):
    """No app of this name or AppID is installed for this chain (a proposal naming it is
    rejected with ``INVALID``)."""


class UnsupportedFeatureError(NotSupportedError):
    """A channel feature was requested that this combination cannot provide."""


# --- data model ---------------------------------------------------------------------------


class InvalidStateError(PerunError, ValueError):
    """A value of the data model breaks an invariant.

    Attributes:
        channel_id: the channel concerned, if known.
        version: the state version concerned, if known.
        rule: a short name of the rule that failed.
    """

    rule: str = "invalid-state"

    def __init__(
        self,
        message: str,
        *,
        channel_id: bytes | None = None,
        version: int | None = None,
        rule: str | None = None,
    ) -> None:
        self.channel_id = channel_id
        self.version = version
        if rule is not None:
            self.rule = rule
        where = ""
        if channel_id is not None:
            where = f" (channel {_short(channel_id)}"
            where += f", version {version})" if version is not None else ")"
        super().__init__(f"[{self.rule}] {message}{where}")

    def add_context(self, *, channel_id: bytes | None, version: int | None) -> None:
        """Fill in the channel and version if the raiser did not know them.

        Apps and helpers raise with just a reason; the validator that called them adds
        where it happened, so every refusal names its channel and version.

        Args:
            channel_id: the channel being checked.
            version: the version being checked.
        """
        if self.channel_id is not None or channel_id is None:
            return
        self.channel_id = channel_id
        if self.version is None:
            self.version = version
        where = f" (channel {_short(channel_id)}"
        where += f", version {self.version})" if self.version is not None else ")"
        if self.args and isinstance(self.args[0], str):
            self.args = (self.args[0] + where, *self.args[1:])


class InvalidTransitionError(InvalidStateError):
    """A state transition breaks a rule."""

    rule = "invalid-transition"


class InvalidUpdateError(InvalidTransitionError):
    """An update (local, remote or forced) breaks one of the update rules U1-U13."""

    rule = "invalid-update"


class ChannelNotReadyError(InvalidUpdateError):
    """U1: the channel is not in a phase that allows updates."""

    rule = "U1-phase"

    def __init__(self, message: str, *, phase: Any = None, **kw: Any) -> None:
        self.phase = phase
        super().__init__(message, **kw)


class ChannelIDMismatchError(InvalidUpdateError):
    """U2: a state or params do not belong to this channel."""

    rule = "U2-channel-id"


class FinalStateError(InvalidUpdateError):
    """U3: the current state is final and cannot be followed by another state."""

    rule = "U3-final"


class VersionError(InvalidUpdateError):
    """U4: the proposed version is not the next version."""

    rule = "U4-version"

    def __init__(self, message: str, *, expected: int, got: int, **kw: Any) -> None:
        self.expected = expected
        self.got = got
        super().__init__(message, **kw)


class AppMismatchError(InvalidUpdateError):
    """U5: the state names another app than the channel's params."""

    rule = "U5-app"


class InvalidAppDataError(InvalidUpdateError):
    """U5: the state's app data does not decode under the channel's app."""

    rule = "U5-app-data"


class InvalidAllocationError(InvalidUpdateError):
    """U6: the allocation is malformed (dimensions, limits, duplicate assets or sub-allocs)."""

    rule = "U6-allocation"


class NegativeBalanceError(InvalidUpdateError):
    """U7: a balance is negative."""

    rule = "U7-negative"


class BalanceOverflowError(InvalidUpdateError):
    """U7: a balance or a per-asset total is not below 2**256."""

    rule = "U7-overflow"


class AssetsChangedError(InvalidUpdateError):
    """U8: the assets (or their order) differ from the current state's."""

    rule = "U8-assets"


class TotalsMismatchError(InvalidUpdateError):
    """U9: a per-asset total differs from the current state's (money created or destroyed)."""

    rule = "U9-totals"

    def __init__(self, message: str, *, asset: int, old: int, new: int, **kw: Any) -> None:
        self.asset = asset
        self.old = old
        self.new = new
        super().__init__(message, **kw)


class LockedFundsChangedError(InvalidUpdateError):
    """U10: locked sub-allocations changed outside a sub-channel funding/settlement update."""

    rule = "U10-locked"


class ActorMismatchError(InvalidUpdateError):
    """U11: the actor index is not a participant or not the sender's own index."""

    rule = "U11-actor"


class AppTransitionError(InvalidUpdateError):
    """U12: the app refused the transition (raised by apps with the reason)."""

    rule = "U12-app"


class AppFaultError(AppTransitionError):
    """U12: the app raised an unexpected exception; treated as a refusal."""

    rule = "U12-app-fault"


class NoAppError(InvalidUpdateError):
    """A force update on a channel without app: the ledger has no rule to run a transition
    signed by one party only (such a channel settles with its registered state)."""

    rule = "no-app"


class InvalidInitialStateError(InvalidStateError):
    """The version-0 state of a channel is not acceptable."""

    rule = "initial-state"


class InvalidFundingAgreementError(InvalidStateError):
    """A funding agreement does not match the initial balances' shape or totals."""

    rule = "V5-funding-agreement"


class InsufficientFundsError(InvalidStateError):
    """A party tried to move more than it owns."""

    rule = "insufficient-funds"


class SubChannelsPresentError(InvalidStateError):
    """The channel still locks funds in live sub-channels: settle them first (or dispute,
    which registers the whole tree)."""

    rule = "sub-channels-present"


class PhaseTransitionError(InvalidTransitionError):
    """An internal phase change that the channel state machine does not allow (a bug)."""

    rule = "phase-transition"

    def __init__(self, frm: Any, to: Any, **kw: Any) -> None:
        self.frm = frm
        self.to = to
        super().__init__(f"phase transition {frm!s} -> {to!s} is not allowed", **kw)


# --- signatures ---------------------------------------------------------------------------


class SignatureError(PerunError):
    """A signature is missing, malformed or does not verify."""


class InvalidSignatureError(SignatureError, InvalidUpdateError):
    """U13: a well-formed signature that was not made by the expected signer on this data."""

    rule = "U13-signature"


class MalformedSignatureError(SignatureError, ValueError):
    """Signature bytes that cannot be a signature of the backend's scheme."""


# --- wire ---------------------------------------------------------------------------------


class ProtocolError(PerunError):
    """A malformed or unexpected message from a peer."""


class MalformedMessageError(ProtocolError, ValueError):
    """Bytes that do not decode to a valid message (type, fields, limits, canonical form)."""


class FrameTooLargeError(MalformedMessageError):
    """A message or frame above the configured maximum size."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"frame of {size} bytes exceeds the maximum of {limit} bytes")


class UnsupportedWireVersionError(ProtocolError):
    """The peer speaks a wire version this build does not."""


class MisroutedMessageError(ProtocolError):
    """An envelope whose sender/recipient do not match the connection it arrived on."""


class AuthenticationError(ProtocolError):
    """A peer failed to prove control of its wire address."""


class PeerDisconnectedError(ProtocolError):
    """The connection to a peer closed while a request was outstanding."""


# --- funding and chain --------------------------------------------------------------------


class FundingTimeoutError(PerunError, TimeoutError):
    """Not every participant funded before the funding deadline.

    Attributes:
        missing: per asset index, the participant indices that did not fund.
    """

    def __init__(
        self, missing: Sequence[Sequence[int]], *, channel_id: bytes | None = None
    ) -> None:
        self.missing = tuple(tuple(m) for m in missing)
        self.channel_id = channel_id
        who = sorted({p for m in self.missing for p in m})
        per_asset = "; ".join(
            f"asset {a}: participants {list(m)}" for a, m in enumerate(self.missing) if m
        )
        super().__init__(
            f"funding of channel {_short(channel_id)} timed out; participants {who} did not "
            f"fund ({per_asset}). Call settle() on the channel to recover the deposits made."
        )

    @property
    def unfunded_participants(self) -> tuple[int, ...]:
        """Indices of every participant that left at least one asset unfunded."""
        return tuple(sorted({p for m in self.missing for p in m}))


class ChannelFundingError(PerunError):
    """Opening a channel failed during funding; carries the channel for fund recovery.

    Attributes:
        channel: the channel object (phase FUNDING); call ``await channel.settle()`` to get
            every deposit back through the dispute path.
        cause: the underlying error (often :class:`FundingTimeoutError`).
    """

    def __init__(self, channel: Any, cause: BaseException) -> None:
        self.channel = channel
        self.cause = cause
        super().__init__(
            f"funding failed: {cause}. The channel is returned on this error; "
            "call settle() on it to recover deposits."
        )


class ChainError(PerunError):
    """A ledger operation failed or was refused.

    Attributes:
        reason: the ledger's refusal reason (Ethereum: the revert string).
        tx: the transaction hash or ID, if one was sent.
    """

    def __init__(self, reason: str, *, tx: str | None = None, operation: str | None = None):
        self.reason = reason
        self.tx = tx
        self.operation = operation
        op = f"{operation}: " if operation else ""
        at = f" (tx {tx})" if tx else ""
        super().__init__(f"{op}{reason}{at}")


class ChainConnectionError(ChainError):
    """The ledger (or its node) could not be reached; the operation may or may not have
    happened. Unlike the refusals below, retrying later can succeed."""


# The ledger refusals. Backends raise the leaf matching the rule the ledger enforced and keep
# the ledger's own text (Ethereum: the revert string) in ``reason``; callers decide by type,
# never by parsing ``reason``. A refused transaction changed nothing on the ledger.


class StaleStateError(ChainError):
    """Registering or refuting with a version that is not newer than the registered one
    (Ethereum: "invalid version"). Someone registered the same or a newer state first."""


class RefutationClosedError(ChainError):
    """Refuting is over: the refutation window has ended, or the dispute has moved on to
    force-execution or conclusion (Ethereum: "refutation timeout passed", "incorrect phase")."""


class TimeoutNotElapsedError(ChainError):
    """The timeout the operation waits for has not passed in ledger time: concluding before
    the dispute's (effective) timeout, or force-executing during the refutation window
    (Ethereum: "timeout not passed yet", "timeout not passed"). Wait for the event's timeout
    and retry."""


class ForceExecutionClosedError(ChainError):
    """Force-execution (``progress``) is over: its window has ended or the channel is
    concluded (Ethereum: "timeout passed", "invalid phase")."""


class AlreadyConcludedError(ChainError):
    """The channel is already concluded and its outcome set (Ethereum: "channel already
    concluded", "trying to set already settled channel"). Where concluding was the goal, this
    is success: withdraw."""


class NotRegisteredError(ChainError):
    """The operation needs a dispute on the ledger and the channel has none (Ethereum: "not
    registered")."""


class StateMismatchError(ChainError):
    """The state given is not the one the ledger holds for the channel: concluding with a
    state other than the registered one, or force-executing from another old state
    (Ethereum: "invalid channel state", "wrong old state")."""


class ConcludedWithOtherStateError(StateMismatchError):
    """The channel is already concluded, with another state than the one given.

    The outcome is fixed: withdrawing still pays what the concluded state allocates (an
    ``Adjudicator.withdraw`` does not raise this); only concluding with the given state is
    impossible.
    """


class NotFinalError(ChainError):
    """Concluding at once (``conclude_final``) needs a final state (Ethereum: "state not
    final")."""


class NotSettledError(ChainError):
    """Withdrawing from a channel whose outcome is not set yet (Ethereum: "channel not
    settled"). Conclude first."""


class InsufficientHoldingsError(ChainError):
    """A withdrawal asks for more than the participant holds in the channel (Ethereum:
    "insufficient funds"); after a full withdrawal, nothing is left."""


class DepositError(ChainError):
    """A deposit was refused (wrong value sent, missing token allowance, malformed input)."""


class InsufficientBalanceError(DepositError):
    """The depositor's account does not hold the amount (sim: "insufficient balance";
    ERC-20: "ERC20: transfer amount exceeds balance")."""


class PayoutFailedError(ChainError):
    """The ledger could not pay a withdrawal to its receiver (Ethereum: "ETH transfer
    failed", "transfer failed": the receiving contract or the token refused)."""


class SignatureRefusedError(ChainError, SignatureError):
    """The ledger refused a signature: missing, made by another key, or malformed (Ethereum:
    "signatures length mismatch", "invalid signature", "signature verification failed",
    "ECDSA: …")."""


class ParamsMismatchError(ChainError):
    """The params do not belong to the state: they do not hash to its channel ID (Ethereum:
    "invalid params")."""


class ChannelKindError(ChainError):
    """The operation does not apply to this kind of channel or state (Ethereum: "not ledger",
    "cannot have sub-channels", "cannot have locked funds", "cannot have app", "must have
    app")."""


class SubChannelMismatchError(ChainError):
    """The sub-channel states given do not match the parent's locked sub-allocations (IDs,
    assets or amounts; Ethereum: "invalid sub-channel id", "invalid subchannel id",
    "Asset[]: unequal length", "uint256[]: unequal item", …)."""


class InvalidProgressError(ChainError):
    """The ledger refused a force-executed transition: the generic rules (Ethereum: "version
    must increment by one", "cannot progress from final state", "sum of balances mismatch",
    "actorIdx out of range", …) or the app's own (its revert reason)."""


class InvalidLedgerInputError(ChainError):
    """A value the ledger cannot accept at all: a malformed amount, ID, state or allocation,
    or an asset of another ledger."""


class MissingSubStatesError(ChainError):
    """Conclusion needs the states of every locked sub-channel (Ethereum: "subChannels: too
    short", "subStates: too short")."""


class ConfigError(PerunError, ValueError):
    """A configuration that cannot work: a key missing or malformed, or one that contradicts
    what it configures."""


class ChainConfigError(ConfigError):
    """A chain backend's configuration contradicts the chain it names (another chain ID,
    contracts missing or not behaving as configured, other tokens). Raised when the backend
    is built, before any funds can move."""


# --- peers and requests -------------------------------------------------------------------


class RejectCode:
    """Rejection codes of ``ChannelProposalRej``/``ChannelUpdateRej`` (see docs/wire-format.md)."""

    REJECTED = 1
    INVALID = 2
    CONFLICT = 3
    NOT_READY = 4
    SYNC_REQUIRED = 5
    TIMEOUT = 6
    UNKNOWN_CHANNEL = 7

    NAMES = {
        1: "REJECTED",
        2: "INVALID",
        3: "CONFLICT",
        4: "NOT_READY",
        5: "SYNC_REQUIRED",
        6: "TIMEOUT",
        7: "UNKNOWN_CHANNEL",
    }


class PeerRejectedError(PerunError):
    """The peer rejected a proposal or update.

    Attributes:
        reason: the peer's reason text.
        code: the rejection code (:class:`RejectCode`).
    """

    def __init__(
        self,
        reason: str,
        code: int = RejectCode.REJECTED,
        *,
        what: str = "request",
        signed: Any = None,
    ):
        self.reason = reason
        self.code = code
        self.signed = signed
        name = RejectCode.NAMES.get(code, str(code))
        msg = f"peer rejected the {what} ({name}): {reason}"
        if signed is not None:
            msg += (
                f"; it holds our signature on v{signed.version}, so it may still register "
                "that state on the ledger"
            )
        super().__init__(msg)

    @property
    def may_be_enforced(self) -> bool:
        """Whether the peer holds our signature on the rejected state.

        A rejected update that we signed is not current, but the peer can countersign and
        register it; it then becomes the outcome unless a newer fully signed state refutes
        it. The state is in :attr:`signed`.
        """
        return self.signed is not None


class UpdateConflictError(PeerRejectedError):
    """Both parties proposed an update at once and the peer's proposal won; retry the update."""


class RequestTimedOutError(PerunError, TimeoutError):
    """A peer did not answer within the configured timeout."""


class ReentrantUpdateError(PerunError, RuntimeError):
    """``update()`` was called from inside the same channel's update handler or callback."""


class ResponderUsedError(PerunError, RuntimeError):
    """``accept()``/``reject()`` was called twice on the same responder."""


class UpdateAbortedError(PerunError):
    """A pending decision was aborted (sync, dispute or shutdown) before it was made."""


class ChannelClosedError(PerunError):
    """The channel (or client) is closed, withdrawn or shutting down."""


class ChannelRegisteredError(PerunError):
    """The channel is in dispute on the ledger; off-chain updates are over."""


class SyncRequiredError(PerunError):
    """The channel must sync with its peer before the next update."""


class SyncError(ProtocolError):
    """A sync message was invalid (bad signatures, missing own signature)."""


class ChannelDivergedError(PerunError):
    """Both parties hold different states at the same version (impossible without a bug)."""


class UnknownChannelError(PerunError, KeyError):
    """No channel with this ID is known to the client."""


# --- persistence --------------------------------------------------------------------------


class PersistenceError(PerunError):
    """A channel store could not be opened, read or written.

    Attributes:
        path: the store's location (a directory for on-disk stores), if it has one.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class StoreLockedError(PersistenceError):
    """The store is already open in another process or by another handle in this one."""


class StoreCorruptError(PersistenceError):
    """The store's files or one of its records cannot be read back."""


class StoreClosedError(PersistenceError):
    """The store was used after ``close()``."""


class StoreFailedError(PersistenceError):
    """An earlier write of this store failed, so it refuses every further call (fail closed).

    After a failed write the engine's files and memory may disagree about what is stored;
    close the store and open it again, which checks its files, before using it.
    """


# --- watchtower ---------------------------------------------------------------------------


class WatchtowerError(PerunError):
    """A remote watchtower refused a request or could not be reached.

    Attributes:
        channel_id: the channel the request was about, if any.
    """

    def __init__(self, message: str, *, channel_id: bytes | None = None) -> None:
        self.channel_id = channel_id
        where = f"channel {_short(channel_id)}: " if channel_id is not None else ""
        super().__init__(where + message)


class WatchRefusedError(WatchtowerError):
    """The tower refused to watch a state (the leaf says why; ``code`` goes on the wire).

    The tower keeps whatever it held before; the client's local watcher is unaffected.
    """

    code: int = 0


class NotAParticipantError(WatchRefusedError):
    """The requesting identity is not a participant of the channel (nor authorized by one)."""

    code = 1


class StaleWatchStateError(WatchRefusedError):
    """The tower already holds this version of the channel or a newer one."""

    code = 2


class InvalidWatchStateError(WatchRefusedError):
    """The state is not one the adjudicator would accept (a signature is missing or wrong,
    the ID does not match the params, another backend, ...); fix the client, resend."""

    code = 3


class WatchQuotaExceededError(WatchRefusedError):
    """A per-client or tower-wide limit (channels, states per second, bytes) was reached."""

    code = 4


class UnknownWatchedChannelError(WatchRefusedError):
    """The tower does not watch this channel (e.g. the parent of a sub-channel)."""

    code = 5


class TowerFailureError(WatchRefusedError):
    """The tower could not store the state (its store failed); try again or another tower."""

    code = 6


WATCH_REFUSALS: dict[int, type[WatchRefusedError]] = {
    c.code: c
    for c in (
        NotAParticipantError,
        StaleWatchStateError,
        InvalidWatchStateError,
        WatchQuotaExceededError,
        UnknownWatchedChannelError,
        TowerFailureError,
    )
}
"""The refusal classes by their wire code (an unknown code maps to :class:`WatchRefusedError`)."""


class TowerUnavailableError(WatchtowerError):
    """The tower did not acknowledge in time or cannot be reached (the client keeps retrying)."""
