"""The Persister: durable channel records (see docs/protocols.md).

The client calls the event methods in protocol order; calls for one channel are serialized,
and each is one atomic write. The restorer methods return the records written.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Self

from perun_core.channel.params import Params
from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.channel.types import Address
from perun_core.parts import PartConfig, build_from, load_config

if TYPE_CHECKING:
    from perun_core.interfaces.chain import ChainBackend
    from perun_core.interfaces.wallet import Account


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
    """Stores channel records and returns them on restore.

    Class attributes:
        Config: the options :meth:`open` takes (a :class:`~perun_core.parts.PartConfig`).
        durable: the records outlive the process; the ``Config`` of a durable persister
            has a ``path`` option (where the records go), which the test matrix fills in.
    """

    name: str = "persister"
    Config: ClassVar[type[PartConfig]] = PartConfig
    durable: ClassVar[bool] = False

    @classmethod
    async def open(
        cls,
        config: PartConfig | Mapping[str, Any] | None = None,
        *,
        account: Account | None = None,
        backend: ChainBackend | None = None,
    ) -> Self:
        """Build a persister from its typed configuration (the signature buses share).

        The default passes the fields of :attr:`Config` to the constructor as keywords.

        Args:
            config: a :attr:`Config`, a mapping of its fields or ``None`` (defaults).
            account: the account whose channels it will store.
            backend: the chain backend of those channels.

        Raises:
            ConfigError: an unknown option, a missing one or a value of the wrong type.
            PersistenceError: the store cannot be opened.
        """
        del account, backend  # the default persister needs neither
        what = f"persister {cls.name!r}"
        return build_from(cls, load_config(cls.Config, config, what), what)

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
