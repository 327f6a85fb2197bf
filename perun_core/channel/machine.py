"""The channel state machine: one channel's record and the named transitions on it.

Pure logic: synchronous, no I/O, no event loop. Every protocol (opening, update, sync,
dispute, settlement, restore) changes a channel only through these transitions. Each checks
the phase it starts from (a wrong one is a bug: :class:`~perun_core.errors.PhaseTransitionError`)
and returns the persistence events the caller must write, in order, *before* anything the
transition commits us to leaves the process (the client's ordered I/O does that).

The record holds a tuple of participants; nothing here assumes two parties.

=====================  ==================================================  ==================
transition             from                                                to
=====================  ==================================================  ==================
``stage``              ACTING                                              SIGNING
``add_sig``            (any phase with a staged transaction)               unchanged
``enable``             INIT_SIGNING / SIGNING                              FUNDING / ACTING, FINAL
``discard``            SIGNING (or any phase with a staged transaction)    ACTING
``adopt``              INIT_SIGNING, FUNDING..FINAL, REGISTERED, PROGRESSED  by the state
``funded``             FUNDING                                             ACTING
``registering``        FUNDING, ACTING, SIGNING, FINAL                     REGISTERING
``registered``         FUNDING..REGISTERING                                REGISTERED
``progressing``        REGISTERED, PROGRESSED                              PROGRESSING
``progress_failed``    PROGRESSING                                         REGISTERED / PROGRESSED
``progressed``         REGISTERED, PROGRESSING, PROGRESSED                 PROGRESSED
``adopt_progressed``   REGISTERED, PROGRESSING, PROGRESSED                 PROGRESSED
``withdrawing``        FINAL, REGISTERED, PROGRESSED                       WITHDRAWING
``withdrawn``          WITHDRAWING                                         WITHDRAWN
=====================  ==================================================  ==================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from perun_core.channel.params import Params
from perun_core.channel.phase import ALLOWED_TRANSITIONS, Phase, check_transition
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Address
from perun_core.channel.validation import next_version
from perun_core.errors import ChannelNotReadyError, PhaseTransitionError, VersionError

# --- persistence events ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Staged:
    """Write the staged transaction (``None``: cleared) and the phase."""

    staging: Transaction | None
    phase: Phase


@dataclass(frozen=True, slots=True)
class SigAdded:
    """Write one signature of the staged transaction."""

    version: int
    idx: int
    sig: bytes


@dataclass(frozen=True, slots=True)
class Enabled:
    """Write the new current transaction and phase; the staging area is cleared."""

    current: Transaction
    phase: Phase


@dataclass(frozen=True, slots=True)
class PhaseChanged:
    """Write the phase, the version floor and the sync flag."""

    phase: Phase
    version_floor: int
    needs_sync: bool


@dataclass(frozen=True, slots=True)
class Removed:
    """Delete every record of the channel."""


PersistEvent = Staged | SigAdded | Enabled | PhaseChanged | Removed
"""What a transition asks to be written."""

Events = tuple[PersistEvent, ...]

PRE_DISPUTE = frozenset(
    {Phase.FUNDING, Phase.ACTING, Phase.SIGNING, Phase.FINAL, Phase.REGISTERING}
)
"""Phases a registration observed on the ledger moves to REGISTERED."""

IN_DISPUTE = frozenset({Phase.REGISTERED, Phase.PROGRESSING, Phase.PROGRESSED})


class Machine:
    """One channel's record and its transitions.

    Args:
        params: the channel's parameters.
        idx: our participant index.
        peers: every participant's wire address, by index.
        phase: the phase (as restored).
        current: the current, fully signed transaction, if any.
        staging: the staged transaction, if any.
        version_floor: the highest burned version.
        needs_sync: whether a sync round must run before the next update.
        listener: called with ``(old, new)`` after every phase change (synchronously).
    """

    __slots__ = (
        "_current",
        "_floor",
        "_needs_sync",
        "_phase",
        "_staging",
        "idx",
        "listener",
        "params",
        "peers",
    )

    def __init__(
        self,
        params: Params,
        idx: int,
        peers: tuple[Address, ...],
        *,
        phase: Phase,
        current: Transaction | None = None,
        staging: Transaction | None = None,
        version_floor: int = 0,
        needs_sync: bool = False,
        listener: Callable[[Phase, Phase], None] | None = None,
    ) -> None:
        self.params = params
        self.idx = idx
        self.peers = peers
        self._phase = phase
        self._current = current
        self._staging = staging
        self._floor = version_floor
        self._needs_sync = needs_sync
        self.listener = listener

    # --- reads ---------------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        """The current phase."""
        return self._phase

    def in_phase(self, *phases: Phase) -> bool:
        """Whether the phase is one of ``phases`` (a call, so type checkers do not narrow
        the phase across awaits)."""
        return self._phase in phases

    @property
    def current(self) -> Transaction | None:
        """The current, fully signed transaction (``None`` before v0 has every signature).

        After a force execution it is the progressed state, which carries only its actor's
        signature (see :meth:`adopt_progressed`).
        """
        return self._current

    @property
    def current_version(self) -> int:
        """The current state's version (-1 before v0 has every signature)."""
        cur = self._current
        return cur.state.version if cur is not None else -1

    @property
    def staging(self) -> Transaction | None:
        """The staged transaction, if any."""
        return self._staging

    @property
    def version_floor(self) -> int:
        """The highest burned version."""
        return self._floor

    @property
    def needs_sync(self) -> bool:
        """Whether a sync round with the peers must run before the next update."""
        return self._needs_sync

    @property
    def next_version(self) -> int:
        """The version of the next update (every party computes the same)."""
        cur = self._current
        return next_version(cur.state.version if cur is not None else 0, self._floor)

    def phase_record(self) -> PhaseChanged:
        """The write of the phase, floor and sync flag as they are now."""
        return PhaseChanged(self._phase, self._floor, self._needs_sync)

    # --- transitions ---------------------------------------------------------------------------

    def _go(self, to: Phase) -> None:
        frm = self._phase
        if to != frm:
            check_transition(frm, to, channel_id=self.params.id)
            self._phase = to
            if self.listener is not None:
                self.listener(frm, to)

    def stage(self, tx: Transaction) -> Staged:
        """Stage an update (ours or a peer's, with the signatures known so far): → SIGNING.

        Raises:
            ChannelNotReadyError: not ACTING, or an update is staged already.
            VersionError: ``tx`` does not carry :attr:`next_version`.
        """
        if self._phase != Phase.ACTING or self._staging is not None:
            raise ChannelNotReadyError(
                f"cannot stage an update in {self._phase.name}",
                phase=self._phase,
                channel_id=self.params.id,
            )
        want = self.next_version
        if tx.state.version != want:
            raise VersionError(
                f"staged version {tx.state.version}, expected {want}",
                expected=want,
                got=tx.state.version,
                channel_id=self.params.id,
            )
        self._staging = tx
        self._go(Phase.SIGNING)
        return Staged(tx, Phase.SIGNING)

    def add_sig(self, idx: int, sig: bytes) -> SigAdded:
        """Add a (verified) signature to the staged transaction."""
        st = self._staging
        if st is None:
            raise PhaseTransitionError(self._phase, self._phase, channel_id=self.params.id)
        self._staging = st.with_sig(idx, sig)
        return SigAdded(st.state.version, idx, sig)

    def complete(self, tx: Transaction) -> Enabled:
        """Add the last signatures and enable: ``tx`` is the staged state, fully signed.

        One transition for the common case (the peer's acceptance, or our own signature on
        the peer's proposal), without a write per signature.
        """
        st = self._staging
        if st is None or (tx.state is not st.state and tx.state != st.state):
            raise PhaseTransitionError(self._phase, self._phase, channel_id=self.params.id)
        self._staging = tx
        return self.enable()

    def enable(self) -> Enabled:
        """Make the fully signed staged transaction current.

        INIT_SIGNING → FUNDING (v0), SIGNING → ACTING or FINAL.
        """
        st = self._staging
        if st is None or not st.fully_signed:
            raise PhaseTransitionError(self._phase, self._phase, channel_id=self.params.id)
        if self._phase == Phase.INIT_SIGNING:
            to = Phase.FUNDING
        else:
            to = Phase.FINAL if st.state.is_final else Phase.ACTING
        frm = self._phase
        if to not in ALLOWED_TRANSITIONS[frm]:
            raise PhaseTransitionError(frm, to, channel_id=self.params.id)
        self._current = st
        self._staging = None
        self._phase = to  # checked above (every update passes here: one check, not two)
        if self.listener is not None:
            self.listener(frm, to)
        return Enabled(st, to)

    def discard(self) -> tuple[int, PhaseChanged]:
        """Drop the staged transaction and burn its version: SIGNING → ACTING.

        Returns the burned version (-1 if nothing was staged) and the write.
        """
        st = self._staging
        burned = -1
        if st is not None and self._phase != Phase.INIT_SIGNING:
            burned = st.state.version
            self._staging = None
            if burned > self._floor:
                self._floor = burned
        if self._phase == Phase.SIGNING:
            self._go(Phase.ACTING)
        return burned, self.phase_record()

    def burn(self, version: int) -> PhaseChanged | None:
        """Raise the version floor to ``version`` (a write only if it moved)."""
        if version > self._floor:
            self._floor = version
            return self.phase_record()
        return None

    def set_needs_sync(self, needed: bool) -> PhaseChanged | None:
        """Set or clear the sync flag (a write only if it changed)."""
        if needed != self._needs_sync:
            self._needs_sync = needed
            return self.phase_record()
        return None

    def adopt(self, tx: Transaction) -> tuple[Enabled, PhaseChanged | None]:
        """Make a newer fully signed transaction (from a sync round) current.

        The caller verified every signature. The staged transaction, if any, is replaced
        (its version burns unless it is the adopted state). In dispute phases the phase
        follows the ledger, not the adoption. Returns the writes: the new current state,
        and the floor if it moved.
        """
        cur = self._current
        if not tx.fully_signed or (cur is not None and tx.state.version <= cur.state.version):
            raise PhaseTransitionError(self._phase, self._phase, channel_id=self.params.id)
        st = self._staging
        burned: PhaseChanged | None = None
        if st is not None and st.state.version > self._floor and st.state != tx.state:
            # A staged state the adoption replaces is dropped: its version burns, so it can
            # never be signed again with other content.
            self._floor = st.state.version
            burned = self.phase_record()
        self._current = tx
        self._staging = None
        if self._phase == Phase.INIT_SIGNING:
            self._go(Phase.FUNDING)
        elif self._phase in (Phase.ACTING, Phase.SIGNING, Phase.FINAL):
            if tx.state.is_final and self._phase == Phase.ACTING:
                self._go(Phase.SIGNING)  # FINAL is reached only through SIGNING
            self._go(Phase.FINAL if tx.state.is_final else Phase.ACTING)
        if burned is not None:
            burned = self.phase_record()  # the phase it ends in, with the new floor
        return Enabled(tx, self._phase), burned

    def funded(self) -> PhaseChanged:
        """Funding completed: FUNDING → ACTING."""
        self._go(Phase.ACTING)
        return self.phase_record()

    def registering(self) -> PhaseChanged:
        """Our own registration starts; a staged update is discarded (burned)."""
        self.discard()
        self._go(Phase.REGISTERING)
        return self.phase_record()

    def registered(self) -> PhaseChanged | None:
        """A registration (or a conclusion) is on the ledger: off-chain updates end.

        A staged update is discarded and its version burned. From dispute phases nothing
        changes (``None``).
        """
        if self._phase not in PRE_DISPUTE:
            return None
        self.discard()
        self._go(Phase.REGISTERED)
        return self.phase_record()

    def progressed(self) -> PhaseChanged | None:
        """A force-executed state is on the ledger."""
        if self._phase not in IN_DISPUTE:
            return None
        self._go(Phase.PROGRESSED)
        return self.phase_record()

    def progressing(self, tx: Transaction) -> Staged:
        """Our force update goes to the ledger: REGISTERED/PROGRESSED → PROGRESSING.

        ``tx`` (the forced state, signed by us only) is staged, so a restart finds it.

        Raises:
            ChannelNotReadyError: not REGISTERED or PROGRESSED.
        """
        if self._phase not in (Phase.REGISTERED, Phase.PROGRESSED):
            raise ChannelNotReadyError(
                f"a force update needs REGISTERED or PROGRESSED, not {self._phase.name}",
                phase=self._phase,
                channel_id=self.params.id,
            )
        self._staging = tx
        self._go(Phase.PROGRESSING)
        return Staged(tx, Phase.PROGRESSING)

    def progress_failed(self) -> Staged | None:
        """Our force update did not reach the ledger: back to the phase it started from.

        That is PROGRESSED when the current state is a force-executed one (it carries only
        its actor's signature; a registered state carries every signature), else
        REGISTERED. The staged state is dropped. ``None`` if not PROGRESSING.
        """
        if self._phase != Phase.PROGRESSING:
            return None
        cur = self._current
        to = Phase.REGISTERED if cur is not None and cur.fully_signed else Phase.PROGRESSED
        self._staging = None
        self._go(to)
        return Staged(None, to)

    def adopt_progressed(self, tx: Transaction) -> Enabled | None:
        """A force-executed state is on the ledger: it becomes the current state.

        ``tx`` holds the signatures we know of it (ours if we forced it, else none: the
        ledger checked the actor's). → PROGRESSED; a staged force update is cleared.
        ``None`` outside the dispute phases, or when ``tx`` is current already.
        """
        if self._phase not in IN_DISPUTE:
            return None
        cur = self._current
        if self._phase == Phase.PROGRESSED and cur is not None and cur.state == tx.state:
            return None
        self._current = tx
        self._staging = None
        self._go(Phase.PROGRESSED)
        return Enabled(tx, Phase.PROGRESSED)

    def withdrawing(self) -> PhaseChanged | None:
        """Conclusion and withdrawal start (``None`` if they had already)."""
        if self._phase == Phase.WITHDRAWING:
            return None
        self._go(Phase.WITHDRAWING)
        return self.phase_record()

    def withdrawn(self) -> Removed:
        """Funds withdrawn: the record goes."""
        if self._phase != Phase.WITHDRAWN:
            self._go(Phase.WITHDRAWN)
        return Removed()

    def recover_signing(self) -> Enabled | PhaseChanged:
        """After a restart in SIGNING: a fully signed staged state is enabled (we crashed
        between the last signature and enabling); otherwise the staged state is kept as
        our pending view, the phase returns to ACTING and a sync round decides it."""
        st = self._staging
        if st is not None and st.fully_signed:
            return self.enable()
        self._go(Phase.ACTING)
        self._needs_sync = True
        return self.phase_record()

    def snapshot(self) -> tuple[Phase, Transaction | None, Transaction | None, int, bool]:
        """``(phase, current, staging, version_floor, needs_sync)``."""
        return self._phase, self._current, self._staging, self._floor, self._needs_sync

    def state_at(self, version: int) -> State | None:
        """The current or staged state at ``version``, if we hold one."""
        for tx in (self._current, self._staging):
            if tx is not None and tx.state.version == version:
                return tx.state
        return None


__all__ = [
    "IN_DISPUTE",
    "PRE_DISPUTE",
    "Enabled",
    "Events",
    "Machine",
    "PersistEvent",
    "PhaseChanged",
    "Removed",
    "SigAdded",
    "Staged",
]
