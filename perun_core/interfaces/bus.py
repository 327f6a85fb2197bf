"""The Bus: delivers envelopes between wire addresses (see docs/wire-format.md)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import ClassVar

from perun_core.channel.types import Address
from perun_core.wire.messages import Envelope


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
    """

    name: ClassVar[str]

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
