"""Per-client quotas: channels, bytes and request rate (what a flood runs into)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from perun_core.channel.types import Address
from perun_core.errors import WatchQuotaExceededError
from perun_watchtower.config import TowerConfig


@dataclass(slots=True)
class _Usage:
    channels: int = 0
    bytes: int = 0
    tokens: float = 0.0
    refilled: float = field(default_factory=time.monotonic)


class Quotas:
    """What each client identity uses of the tower, checked against :class:`TowerConfig`."""

    def __init__(self, config: TowerConfig) -> None:
        self.config = config
        self.total_channels = 0
        self._usage: dict[Address, _Usage] = {}

    def _of(self, client: Address) -> _Usage:
        u = self._usage.get(client)
        if u is None:
            u = self._usage[client] = _Usage(tokens=float(self.config.burst))
        return u

    def usage(self, client: Address) -> tuple[int, int]:
        """``(channels, bytes)`` charged to ``client``."""
        u = self._usage.get(client)
        return (0, 0) if u is None else (u.channels, u.bytes)

    def admit_request(self, client: Address, channel_id: bytes | None = None) -> None:
        """Take one request from ``client``'s rate budget.

        Raises:
            WatchQuotaExceededError: the client sends faster than ``states_per_second``.
        """
        u = self._of(client)
        now = time.monotonic()
        cfg = self.config
        u.tokens = min(float(cfg.burst), u.tokens + (now - u.refilled) * cfg.states_per_second)
        u.refilled = now
        if u.tokens < 1.0:
            raise WatchQuotaExceededError(
                f"more than {cfg.states_per_second:g} states per second (burst {cfg.burst}); "
                "slow down and resend",
                channel_id=channel_id,
            )
        u.tokens -= 1.0

    def admit_growth(self, client: Address, channels: int, size: int, channel_id: bytes) -> None:
        """Check that ``client`` may store ``channels`` more channels and ``size`` more bytes.

        Raises:
            WatchQuotaExceededError: a channel or byte limit would be exceeded.
        """
        u = self._of(client)
        cfg = self.config
        if channels and self.total_channels + channels > cfg.max_channels:
            raise WatchQuotaExceededError(
                f"the tower watches its maximum of {cfg.max_channels} channels",
                channel_id=channel_id,
            )
        if u.channels + channels > cfg.max_channels_per_client:
            raise WatchQuotaExceededError(
                f"this client has its maximum of {cfg.max_channels_per_client} channels "
                "watched; stop watching withdrawn ones",
                channel_id=channel_id,
            )
        if u.bytes + size > cfg.max_bytes_per_client:
            raise WatchQuotaExceededError(
                f"this client's records would exceed {cfg.max_bytes_per_client} bytes",
                channel_id=channel_id,
            )

    def charge(self, client: Address, channels: int, size: int) -> None:
        """Add (or, negative, release) channels and bytes to ``client``'s usage."""
        u = self._of(client)
        u.channels += channels
        u.bytes += size
        self.total_channels += channels
