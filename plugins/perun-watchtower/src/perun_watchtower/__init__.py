"""perun-watchtower: a remote watchtower that keeps state channels safe while clients sleep.

Run it::

    perun watchtower serve --config tower.toml

and point clients at it (``[perun.watchtower]`` in their ``perun.toml``, or
``Client(..., watchers=[RemoteWatcher(tower_address, "tcp://HOST:PORT")])``). The tower
stores each channel's latest fully signed state durably, acknowledges it, and registers it
whenever an older state is registered on the ledger. See ``docs/watchtower.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.lazy import lazy_exports

if TYPE_CHECKING:
    from perun_watchtower.config import TowerConfig
    from perun_watchtower.service import TowerStats, Watchtower
else:
    __getattr__ = lazy_exports(
        __name__,
        {
            "TowerConfig": "perun_watchtower.config",
            "TowerStats": "perun_watchtower.service",
            "Watchtower": "perun_watchtower.service",
        },
    )

__all__ = ["TowerConfig", "TowerStats", "Watchtower"]
