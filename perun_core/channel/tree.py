"""Sub-channel funding and settlement as pure changes of the parent's allocation.

A sub-channel has its parent's participants in the same order, so its index map is the
identity. Funding moves the sub-channel's initial balances out of the parent's free balances
into a locked sub-allocation; settlement removes that sub-allocation and credits the
sub-channel's final balances back through the index map. Both parties compute the same
expected parent state from the same sub-channel state, which is how the responder accepts
these parent updates without asking its user.
"""

from __future__ import annotations

from perun_core.channel.allocation import Allocation, SubAlloc
from perun_core.channel.state import State
from perun_core.errors import InsufficientFundsError, LockedFundsChangedError


def funded_allocation(parent: Allocation, sub_id: bytes, init: Allocation) -> Allocation:
    """The parent allocation after funding sub-channel ``sub_id`` with ``init``.

    Raises:
        InsufficientFundsError: a participant's free balance in the parent is below its
            initial balance in the sub-channel.
        LockedFundsChangedError: the assets differ, or ``sub_id`` is locked already.
    """
    if init.assets != parent.assets:
        raise LockedFundsChangedError("a sub-channel must have its parent's assets, in order")
    if any(sa.id == sub_id for sa in parent.locked):
        raise LockedFundsChangedError("the sub-channel is funded already")
    rows = []
    for a, (have, take) in enumerate(zip(parent.balances, init.balances, strict=True)):
        if len(have) != len(take):
            raise LockedFundsChangedError("a sub-channel must have its parent's participants")
        row = []
        for p, (h, t) in enumerate(zip(have, take, strict=True)):
            if h < t:
                raise InsufficientFundsError(
                    f"participant {p} holds {h} of asset {a} in the parent, the sub-channel "
                    f"needs {t}"
                )
            row.append(h - t)
        rows.append(tuple(row))
    lock = SubAlloc(sub_id, init.totals(), tuple(range(parent.num_parts)))
    return Allocation(parent.assets, tuple(rows), (*parent.locked, lock))


def settled_allocation(parent: Allocation, final: State) -> Allocation:
    """The parent allocation after folding the final sub-channel state ``final`` back.

    Raises:
        LockedFundsChangedError: ``final`` is not final, still locks funds, is not locked
            by the parent, or its totals differ from what the parent locks.
    """
    if not final.is_final or final.allocation.locked:
        raise LockedFundsChangedError(
            "only a final sub-channel state without locked funds settles into its parent"
        )
    sub = final.allocation
    pos = next((i for i, sa in enumerate(parent.locked) if sa.id == final.channel_id), None)
    if pos is None:
        raise LockedFundsChangedError("the parent does not lock this sub-channel")
    lock = parent.locked[pos]
    if sub.assets != parent.assets or sub.totals() != lock.balances:
        raise LockedFundsChangedError("the sub-channel's totals differ from the parent's lock")
    rows = []
    for have, back in zip(parent.balances, sub.balances, strict=True):
        row = list(have)
        for j, amount in enumerate(back):
            row[lock.index_map[j]] += amount
        rows.append(tuple(row))
    rest = parent.locked[:pos] + parent.locked[pos + 1 :]
    return Allocation(parent.assets, tuple(rows), rest)


def free_balances_cover(parent: Allocation, init: Allocation) -> bool:
    """Whether the parent's free balances cover ``init`` per asset and participant."""
    try:
        funded_allocation(parent, b"", init)
    except (InsufficientFundsError, LockedFundsChangedError, ValueError):
        return False
    return True
