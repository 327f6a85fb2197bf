"""Fault injection for scenario tests: a bus that loses, rewrites and counts messages, and a
persister whose writes can be made to fail.

Both wrap real parts (:class:`~perun_core.wire.local_bus.LocalBus`, any persister); only the
faults a test asks for are injected.
"""

from __future__ import annotations

from collections.abc import Callable

from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.channel.types import Address
from perun_core.errors import PersistenceError
from perun_core.interfaces.persister import ChannelRecord, Persister
from perun_core.wire import messages as wire
from perun_core.wire.local_bus import LocalBus

Rule = Callable[[wire.Envelope], "wire.Envelope | None"]
"""Returns the envelope to deliver (possibly rewritten), or ``None`` to lose it."""


class FaultyBus(LocalBus):
    """A :class:`LocalBus` whose envelopes pass through test-installed rules.

    Every published envelope is counted by message type (``sent``), then each rule in
    ``rules`` may rewrite or drop it; dropped ones are kept in ``dropped``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rules: list[Rule] = []
        self.dropped: list[wire.Envelope] = []
        self.sent: list[wire.Envelope] = []

    def count(self, kind: type[wire.Message], sender: object | None = None) -> int:
        """How many envelopes of ``kind`` (from ``sender``, if given) were published."""
        return sum(
            1
            for e in self.sent
            if isinstance(e.msg, kind) and (sender is None or e.sender == sender)
        )

    def drop_once(self, pred: Callable[[wire.Envelope], bool]) -> None:
        """Lose the next envelope matching ``pred``."""
        fired = False

        def rule(env: wire.Envelope) -> wire.Envelope | None:
            nonlocal fired
            if not fired and pred(env):
                fired = True
                return None
            return env

        self.rules.append(rule)

    def drop_all(self, pred: Callable[[wire.Envelope], bool]) -> Callable[[], None]:
        """Lose every envelope matching ``pred`` until the returned function is called."""

        def rule(env: wire.Envelope) -> wire.Envelope | None:
            return None if pred(env) else env

        self.rules.append(rule)
        return lambda: self.rules.remove(rule) if rule in self.rules else None

    def rewrite_once(
        self,
        pred: Callable[[wire.Envelope], bool],
        change: Callable[[wire.Envelope], wire.Envelope],
    ) -> None:
        """Replace the next envelope matching ``pred`` by ``change(envelope)``."""
        fired = False

        def rule(env: wire.Envelope) -> wire.Envelope | None:
            nonlocal fired
            if not fired and pred(env):
                fired = True
                return change(env)
            return env

        self.rules.append(rule)

    async def deliver(self, envelope: wire.Envelope) -> None:
        """Deliver an envelope as is (no rules, not counted): one a rule held back."""
        await super().publish(envelope)

    async def publish(self, envelope: wire.Envelope) -> None:
        """Count, apply the rules, and deliver what is left."""
        self.sent.append(envelope)
        env: wire.Envelope | None = envelope
        for rule in list(self.rules):
            if env is None:
                break
            env = rule(env)
        if env is None:
            self.dropped.append(envelope)
            return
        await super().publish(env)


class FailingPersister(Persister):
    """Delegates to ``inner``; the hooks named in ``fail`` raise :class:`PersistenceError`.

    ``fail`` maps a hook name (``"enabled"``, ``"staged"``, ``"phase_changed"``, …) to how many
    of its next calls fail.
    """

    def __init__(self, inner: Persister) -> None:
        self.inner = inner
        self.fail: dict[str, int] = {}
        self.failed: list[str] = []

    def _check(self, hook: str) -> None:
        left = self.fail.get(hook, 0)
        if left > 0:
            self.fail[hook] = left - 1
            self.failed.append(hook)
            raise PersistenceError(f"injected failure of {hook}")

    async def channel_created(self, record: ChannelRecord) -> None:
        """See :meth:`Persister.channel_created`."""
        self._check("channel_created")
        await self.inner.channel_created(record)

    async def staged(self, channel_id: bytes, staging: Transaction | None, phase: Phase) -> None:
        """See :meth:`Persister.staged`."""
        self._check("staged")
        await self.inner.staged(channel_id, staging, phase)

    async def sig_added(self, channel_id: bytes, version: int, idx: int, sig: bytes) -> None:
        """See :meth:`Persister.sig_added`."""
        self._check("sig_added")
        await self.inner.sig_added(channel_id, version, idx, sig)

    async def enabled(self, channel_id: bytes, current: Transaction, phase: Phase) -> None:
        """See :meth:`Persister.enabled`."""
        self._check("enabled")
        await self.inner.enabled(channel_id, current, phase)

    async def phase_changed(
        self, channel_id: bytes, phase: Phase, version_floor: int, needs_sync: bool
    ) -> None:
        """See :meth:`Persister.phase_changed`."""
        self._check("phase_changed")
        await self.inner.phase_changed(channel_id, phase, version_floor, needs_sync)

    async def channel_removed(self, channel_id: bytes) -> None:
        """See :meth:`Persister.channel_removed`."""
        self._check("channel_removed")
        await self.inner.channel_removed(channel_id)

    async def active_peers(self) -> list[Address]:
        """See :meth:`Persister.active_peers`."""
        return await self.inner.active_peers()

    async def restore_peer(self, peer: Address) -> list[ChannelRecord]:
        """See :meth:`Persister.restore_peer`."""
        return await self.inner.restore_peer(peer)

    async def restore_channel(self, channel_id: bytes) -> ChannelRecord | None:
        """See :meth:`Persister.restore_channel`."""
        return await self.inner.restore_channel(channel_id)
