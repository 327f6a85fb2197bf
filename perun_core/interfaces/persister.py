"""The Persister: durable channel records (see docs/protocols.md).

The client calls the event methods in protocol order; calls for one channel are serialized,
and each is one atomic write. The restorer methods return the records written.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

from perun_core.channel.params import Params
from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.channel.types import Address


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """Everything needed to restore one channel."""

    params: Params
    idx: int
    peers: tuple[Address, ...]
    phase: Phase
    current: Transaction | None = None
    staging: Transaction | None = None
    parent: bytes | None = None
    version_floor: int = 0
    needs_sync: bool = False

    @property
    def channel_id(self) -> bytes:
        """The channel's ID."""
        return self.params.id

    def evolve(self, **changes: object) -> ChannelRecord:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]


class Persister(ABC):
    """Stores channel records and returns them on restore."""

    name: str = "persister"

    # --- events -----------------------------------------------------------------------------

    @abstractmethod
    async def channel_created(self, record: ChannelRecord) -> None:
        """A channel was created (v0 staged and signed by us)."""

    @abstractmethod
    async def staged(self, channel_id: bytes, staging: Transaction | None, phase: Phase) -> None:
        """An update was staged (or a staged one discarded: ``staging is None``)."""

    @abstractmethod
    async def sig_added(self, channel_id: bytes, version: int, idx: int, sig: bytes) -> None:
        """A signature was added to the staged transaction of ``version``."""

    @abstractmethod
    async def enabled(self, channel_id: bytes, current: Transaction, phase: Phase) -> None:
        """A fully signed transaction became current; the staging area is cleared."""

    @abstractmethod
    async def phase_changed(
        self, channel_id: bytes, phase: Phase, version_floor: int, needs_sync: bool
    ) -> None:
        """The phase, version floor or sync flag changed."""

    @abstractmethod
    async def channel_removed(self, channel_id: bytes) -> None:
        """The channel is withdrawn; every record of it is deleted."""

    # --- restorer ---------------------------------------------------------------------------

    @abstractmethod
    async def active_peers(self) -> list[Address]:
        """Wire addresses of every peer we share a stored channel with."""

    @abstractmethod
    async def restore_peer(self, peer: Address) -> list[ChannelRecord]:
        """Every stored channel shared with ``peer``."""

    @abstractmethod
    async def restore_channel(self, channel_id: bytes) -> ChannelRecord | None:
        """The stored record of one channel, or ``None``."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release the store."""
