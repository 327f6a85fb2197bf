"""The watcher interface: what a client hands its newly enabled states to.

A watcher follows the ledger for the channels it watches and refutes registrations older
than the latest fully signed state it holds. The client runs its
:class:`~perun_core.watcher.local.LocalWatcher` in-process and may add any number of
:class:`~perun_core.watcher.remote.RemoteWatcher` s (watchtowers in other processes or on
other machines) that keep watching while the client is offline.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from perun_core.channel.params import Params
    from perun_core.channel.state import Transaction
    from perun_core.client.client import Client


class Watcher(ABC):
    """Watches channels on behalf of one participant and refutes stale registrations.

    The client calls :meth:`start_watching` synchronously with every newly enabled, fully
    signed transaction of a channel, ledger or sub-channel (idempotent; the newest wins), and
    :meth:`stop_watching` once the channel is withdrawn.
    """

    def attach(self, client: Client) -> None:  # noqa: B027 - optional hook
        """Called once by the client that uses this watcher (before it starts)."""

    @abstractmethod
    def is_watching(self, channel_id: bytes) -> bool:
        """Whether ``channel_id`` is watched."""

    @abstractmethod
    def start_watching(
        self, params: Params, idx: int, tx: Transaction, *, parent: bytes | None = None
    ) -> None:
        """Watch a channel from its fully signed transaction ``tx`` on (newest wins).

        Args:
            params: the channel's params.
            idx: our participant index.
            tx: the latest fully signed transaction.
            parent: a sub-channel's parent channel ID (handed over before it); a stale
                registration in a tree is refuted by registering the tree from its root.
        """

    @abstractmethod
    def publish(self, channel_id: bytes, tx: Transaction) -> None:
        """Hand the watcher a newer fully signed transaction of a watched channel."""

    @abstractmethod
    async def stop_watching(self, channel_id: bytes) -> None:
        """Stop watching one channel."""

    @abstractmethod
    async def close(self) -> None:
        """Stop watching everything (a remote tower keeps watching what it holds)."""

    def protected_version(self, channel_id: bytes) -> int | None:
        """The newest version of the channel this watcher is known to hold durably.

        ``None``: none (the default for watchers that live and die with the client).
        """
        del channel_id
        return None


__all__ = ["Watcher"]
