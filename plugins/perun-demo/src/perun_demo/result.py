"""What one run of the demo measured."""

from __future__ import annotations

from dataclasses import dataclass

from perun_core.errors import PerunError


@dataclass(slots=True)
class DemoResult:
    """What the demo measured (used by tests and the exit code)."""

    ok: bool
    payments: int
    """Payments made (the one-process flows count each; every requested one is made)."""
    net_to_bob: int
    initial: dict[str, int]
    final: dict[str, int]
    expected: dict[str, int]
    seconds: float
    restored: int = 0
    """Channels restored from the stores at ``--db`` (0 without it)."""
    open_channels: int = 0
    """Channels left open at the end (``--keep-open``)."""


class DemoOptionError(PerunError, ValueError):
    """An option of the demo is out of range (a negative payment count, a zero deposit)."""


MAX_DEPOSIT = 10**30
"""The largest deposit the demo accepts: ten times it is credited to each party, and every
ledger keeps balances below 2**256."""


def check_amounts(payments: int, deposit: int) -> None:
    """Refuse payment counts and deposits the demo cannot honour.

    Raises:
        DemoOptionError: ``payments`` is negative, or ``deposit`` is not in
            ``1..MAX_DEPOSIT`` (with no deposit, no payment can be made).
    """
    if payments < 0:
        raise DemoOptionError(f"--payments must be 0 or more, not {payments}")
    if not 1 <= deposit <= MAX_DEPOSIT:
        raise DemoOptionError(
            f"--deposit must be between 1 and {MAX_DEPOSIT:.0e}, not {deposit}: each party "
            "deposits it and every payment moves part of it"
        )
