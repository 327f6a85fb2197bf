"""Channel phases and the transitions between them (see docs/concepts.md)."""

from __future__ import annotations

from enum import IntEnum

from perun_core.errors import PhaseTransitionError


class Phase(IntEnum):
    """Lifecycle phase of a channel; the numeric values are used on the wire."""

    INIT_ACTING = 0
    INIT_SIGNING = 1
    FUNDING = 2
    ACTING = 3
    SIGNING = 4
    FINAL = 5
    REGISTERING = 6
    REGISTERED = 7
    PROGRESSING = 8
    PROGRESSED = 9
    WITHDRAWING = 10
    WITHDRAWN = 11

    def __str__(self) -> str:
        return self.name


P = Phase
ALLOWED_TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    P.INIT_ACTING: frozenset({P.INIT_SIGNING}),
    P.INIT_SIGNING: frozenset({P.FUNDING}),
    P.FUNDING: frozenset({P.ACTING, P.REGISTERING, P.REGISTERED}),
    P.ACTING: frozenset({P.SIGNING, P.REGISTERING, P.REGISTERED}),
    P.SIGNING: frozenset({P.ACTING, P.FINAL, P.REGISTERING, P.REGISTERED}),
    P.FINAL: frozenset({P.REGISTERING, P.REGISTERED, P.WITHDRAWING}),
    P.REGISTERING: frozenset({P.REGISTERED}),
    P.REGISTERED: frozenset({P.PROGRESSING, P.PROGRESSED, P.WITHDRAWING}),
    P.PROGRESSING: frozenset({P.REGISTERED, P.PROGRESSED}),
    P.PROGRESSED: frozenset({P.PROGRESSING, P.PROGRESSED, P.WITHDRAWING}),
    P.WITHDRAWING: frozenset({P.WITHDRAWN}),
    P.WITHDRAWN: frozenset(),
}
"""For each phase, the phases it may move to. Anything else is a bug."""


def check_transition(frm: Phase, to: Phase, *, channel_id: bytes | None = None) -> None:
    """Raise :class:`PhaseTransitionError` unless ``frm -> to`` is allowed."""
    if to not in ALLOWED_TRANSITIONS[frm]:
        raise PhaseTransitionError(frm, to, channel_id=channel_id)


UPDATABLE = frozenset({P.ACTING})
"""Phases in which a new off-chain update may start (U1)."""
