"""Allocations: who owns how much of which asset in a channel (see docs/concepts.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from perun_core.channel.types import Asset
from perun_core.errors import InsufficientFundsError

Balances = tuple[tuple[int, ...], ...]
"""``balances[asset][participant]``: asset-major rows, one column per participant."""


def as_balances(rows: Iterable[Iterable[int]]) -> Balances:
    """Freeze nested iterables of integers into a :data:`Balances` tuple."""
    return tuple(tuple(r) for r in rows)


@dataclass(frozen=True, slots=True)
class SubAlloc:
    """Funds of a channel locked in sub-channel or virtual channel ``id``.

    Attributes:
        id: the sub-channel's channel ID.
        balances: per asset, the total locked (sum over the sub-channel's participants).
        index_map: ``index_map[j]`` is the index, in the parent, of the party that receives
            sub-channel participant ``j``'s outcome.
    """

    id: bytes
    balances: tuple[int, ...]
    index_map: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.balances, tuple):
            object.__setattr__(self, "balances", tuple(self.balances))
        if not isinstance(self.index_map, tuple):
            object.__setattr__(self, "index_map", tuple(self.index_map))


@dataclass(frozen=True, slots=True)
class Allocation:
    """The distribution of a channel's funds.

    Attributes:
        assets: the assets, pairwise distinct, in a fixed order.
        balances: ``balances[a][p]`` is participant ``p``'s free balance of asset ``a``.
        locked: funds locked in sub-channels, in creation order.

    Construct with any sequences; they are frozen into tuples. Well-formedness (dimensions,
    limits) is checked by :func:`perun_core.channel.validation.check_allocation`, so invalid
    allocations received from peers can be represented and refused with a typed error.
    """

    assets: tuple[Asset, ...]
    balances: Balances
    locked: tuple[SubAlloc, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.assets, tuple):
            object.__setattr__(self, "assets", tuple(self.assets))
        b = self.balances
        if not (isinstance(b, tuple) and all(isinstance(r, tuple) for r in b)):
            object.__setattr__(self, "balances", as_balances(b))
        if not isinstance(self.locked, tuple):
            object.__setattr__(self, "locked", tuple(self.locked))

    @property
    def num_parts(self) -> int:
        """Number of participant columns (0 for an allocation without assets)."""
        return len(self.balances[0]) if self.balances else 0

    def totals(self) -> tuple[int, ...]:
        """Per-asset totals: free balances plus locked funds."""
        out = []
        for a, row in enumerate(self.balances):
            t = sum(row)
            for s in self.locked:
                if a < len(s.balances):
                    t += s.balances[a]
            out.append(t)
        return tuple(out)

    def balance(self, participant: int, asset: int = 0) -> int:
        """Free balance of one participant in one asset."""
        return self.balances[asset][participant]

    def with_balances(self, balances: Sequence[Sequence[int]]) -> Allocation:
        """A copy with other balances (assets and locked funds unchanged)."""
        return Allocation(self.assets, as_balances(balances), self.locked)

    def transfer(self, frm: int, to: int, amount: int, asset: int = 0) -> Allocation:
        """A copy in which ``amount`` of ``asset`` moved from participant ``frm`` to ``to``.

        Raises:
            InsufficientFundsError: ``frm`` holds less than ``amount``.
            ValueError: ``amount`` is negative.
        """
        if amount < 0:
            raise ValueError("a transfer amount cannot be negative")
        row = list(self.balances[asset])
        if row[frm] < amount:
            raise InsufficientFundsError(
                f"participant {frm} holds {row[frm]} of asset {asset}, cannot pay {amount}"
            )
        row[frm] -= amount
        row[to] += amount
        rows = list(self.balances)
        rows[asset] = tuple(row)
        return Allocation(self.assets, tuple(rows), self.locked)
