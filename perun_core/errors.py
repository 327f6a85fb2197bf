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
    │   ├── InvalidUpdateError  (rules U1-U13 of PROTOCOL.md §2, one leaf per rule)
    │   └── PhaseTransitionError
    ├── SignatureError [InvalidSignatureError, MalformedSignatureError]
    ├── ProtocolError [MalformedMessageError, FrameTooLargeError, MisroutedMessageError, ...]
    ├── FundingTimeoutError, ChannelFundingError
    ├── ChainError
    ├── PeerRejectedError [UpdateConflictError]
    ├── RequestTimedOutError
    ├── PersistenceError [StoreLockedError, StoreCorruptError, StoreClosedError,
    │                     StoreFailedError]
    └── ChannelClosedError, ChannelRegisteredError, SyncRequiredError, ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence


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

    Attributes:
        kind: what was looked up ("chain backend", "bus", "persister", "logger").
        name: the name asked for.
        installed: the names that are registered for this kind.
    """

    def __init__(self, kind: str, name: str, installed: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.installed = tuple(installed)
        have = ", ".join(self.installed) if self.installed else "none"
        super().__init__(
            f"No {kind} {name!r}. Installed: {have}. Install it with: pip install perun-{name}"
        )


class PluginConflictError(PluginError):
    """Two plugins registered the same name for the same kind."""


class PluginValidationError(PluginError):
    """A plugin registered something unusable (wrong type, abstract methods left open, bad hook)."""


class NotSupportedError(PerunError, NotImplementedError):
    """The backend or plugin does not offer this capability (see its ``capabilities``)."""


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
    """An update (local, remote or forced) breaks one of the rules U1-U13 of PROTOCOL.md §2."""

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


class InvalidInitialStateError(InvalidStateError):
    """The version-0 state of a channel is not acceptable."""

    rule = "initial-state"


class InvalidFundingAgreementError(InvalidStateError):
    """A funding agreement does not match the initial balances' shape or totals."""

    rule = "V5-funding-agreement"


class InsufficientFundsError(InvalidStateError):
    """A party tried to move more than it owns."""

    rule = "insufficient-funds"


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


class MissingSubStatesError(ChainError):
    """Conclusion needs the states of every locked sub-channel."""


# --- peers and requests -------------------------------------------------------------------


class RejectCode:
    """Rejection codes of ``ChannelProposalRej``/``ChannelUpdateRej`` (PROTOCOL.md §6.5)."""

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

    def __init__(self, reason: str, code: int = RejectCode.REJECTED, *, what: str = "request"):
        self.reason = reason
        self.code = code
        name = RejectCode.NAMES.get(code, str(code))
        super().__init__(f"peer rejected the {what} ({name}): {reason}")


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
