"""The Bus: delivers envelopes between wire addresses (see docs/wire-format.md)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

from perun_core.channel.types import Address
from perun_core.errors import NotSupportedError
from perun_core.parts import PartConfig, build_from, load_config
from perun_core.wire.messages import Envelope

if TYPE_CHECKING:
    from perun_core.interfaces.chain import ChainBackend
    from perun_core.interfaces.wallet import Account


class Subscription(ABC):
    """Envelopes addressed to one wire address, in the order they arrived."""

    @abstractmethod
    async def next(self) -> Envelope | None:
        """The next envelope, or ``None`` once the subscription is closed."""

    @abstractmethod
    def close(self) -> None:
        """Stop receiving; a pending ``next()`` returns ``None``."""

    def set_receiver(self, receiver: Callable[[Envelope], None]) -> bool:
        """Optionally hand every envelope to ``receiver`` as it arrives, instead of ``next()``.

        A bus that supports it calls ``receiver(envelope)`` synchronously, in arrival order,
        from its own receiving code (envelopes already waiting go first, at once), which
        saves a queue and an event-loop turn per envelope; ``next()`` then only waits for
        the close and returns ``None``. ``receiver`` must not block and should not raise.

        Args:
            receiver: called with each envelope.

        Returns:
            Whether the subscription delivers to ``receiver`` from now on; the default
            (``False``) means: keep calling ``next()``.
        """
        return False


ConnectHandler = Callable[[Address], Awaitable[None]]
"""Called with the peer's wire address when a (re)connection to it is authenticated."""


class Bus(ABC):
    """Message transport between clients.

    Delivery between one pair of addresses is in order. A bus that connects over a network
    authenticates both ends (each proves control of its wire address) before it delivers.

    Class attributes:
        name: the registry name (``"local"``, ``"tcp"``).
        Config: the options :meth:`open` takes (a :class:`~perun_core.parts.PartConfig`).
        shared: one instance carries the clients of any number of accounts in a process
            (``local``); otherwise each account opens its own bus and learns where its
            peers are through :meth:`add_peer`.
    """

    name: ClassVar[str]
    Config: ClassVar[type[PartConfig]] = PartConfig
    shared: ClassVar[bool] = False

    @classmethod
    async def open(
        cls,
        config: PartConfig | Mapping[str, Any] | None = None,
        *,
        account: Account | None = None,
        backend: ChainBackend | None = None,
    ) -> Self:
        """Build a bus from its typed configuration (the one signature every bus has).

        The default passes the fields of :attr:`Config` to the constructor as keywords; a
        bus that needs the account or the backend, or must start listening, overrides it.

        Args:
            config: a :attr:`Config`, a mapping of its fields or ``None`` (defaults).
            account: the wire identity of the client that will use the bus.
            backend: the chain backend (its signature scheme authenticates peers).

        Raises:
            ConfigError: an unknown option, a missing one or a value of the wrong type.
        """
        del account, backend  # the default bus needs neither
        what = f"bus {getattr(cls, 'name', cls.__name__)!r}"
        return build_from(cls, load_config(cls.Config, config, what), what)

    def advertised_endpoints(self) -> tuple[str, ...]:
        """Where peers reach this bus (endpoint strings for :meth:`add_peer`); empty for a
        bus that needs no address book (an in-process one)."""
        return ()

    def add_peer(self, address: Address, endpoint: str) -> None:
        """Tell the bus where ``address`` listens (one of its :meth:`advertised_endpoints`).

        Raises:
            NotSupportedError: this bus keeps no address book.
        """
        raise NotSupportedError(f"bus {type(self).__name__} keeps no address book")

    @abstractmethod
    async def publish(self, envelope: Envelope) -> None:
        """Send ``envelope`` to its recipient.

        Raises:
            PeerDisconnectedError: the recipient cannot be reached.
        """

    @abstractmethod
    def subscribe(self, address: Address) -> Subscription:
        """Receive the envelopes addressed to ``address`` (one subscription per address)."""

    def on_connect(self, address: Address, handler: ConnectHandler) -> None:  # noqa: B027
        """Call ``handler(peer)`` whenever a connection of ``address`` to a peer comes up."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Close every connection and subscription."""
