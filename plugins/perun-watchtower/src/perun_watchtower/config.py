"""The tower's own settings (``[watchtower]`` in ``tower.toml``)."""

from __future__ import annotations

from perun_core.parts import PartConfig


class TowerConfig(PartConfig, frozen=True, kw_only=True):
    """Limits of a watchtower; every refusal they cause is a typed
    :class:`~perun_core.errors.WatchQuotaExceededError`.

    Attributes:
        max_channels_per_client: channels one client identity may have watched.
        max_bytes_per_client: stored bytes (encoded records) per client identity.
        states_per_second: sustained requests per second per client identity (a token
            bucket; every request counts, refused ones too).
        burst: how many requests a client may send at once above that rate.
        max_channels: channels the whole tower watches at most (all clients together).
        clients: if non-empty, only these wire addresses (the backend's text form) may use
            the tower.
    """

    max_channels_per_client: int = 10_000
    max_bytes_per_client: int = 64 << 20
    states_per_second: float = 200.0
    burst: int = 2_000
    max_channels: int = 1_000_000
    clients: tuple[str, ...] = ()
