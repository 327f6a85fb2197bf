"""Cooperative settlement: finalize, conclude and withdraw (PROTOCOL.md §5.4)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from perun_core.channel.phase import Phase
from perun_core.errors import (
    ChannelClosedError,
    ChannelNotReadyError,
    RequestTimedOutError,
    UpdateConflictError,
)
from perun_core.interfaces.adjudicator import AdjudicatorReq

if TYPE_CHECKING:
    from perun_core.client.channel import Channel
    from perun_core.client.client import Client

log = logging.getLogger("perun.settle")


class SettleProtocol:
    """The settlement protocol of one client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def finalize(self, ch: Channel) -> None:
        """Make the current state final with the peer (the caller holds the slot)."""
        cfg = self.client.config
        ch._settling = True  # the peer's final proposal is accepted without asking
        try:
            if not ch._idle.is_set():
                async with asyncio.timeout(cfg.update_timeout * 2):
                    await ch._idle.wait()
            if ch._phase == Phase.ACTING:
                try:
                    await self.client._updates.propose(ch, lambda s: s.finalized())
                except UpdateConflictError:
                    # We lost a collision: the winner's final proposal is on its way.
                    try:
                        await ch.wait_phase(Phase.FINAL, timeout=cfg.update_timeout * 2)
                    except TimeoutError:
                        raise RequestTimedOutError(
                            "peer did not finalize the channel after winning a collision"
                        ) from None
                except ChannelNotReadyError:
                    # The peer finalized first (its proposal was accepted meanwhile).
                    if not ch._is_phase(Phase.FINAL):
                        raise
        finally:
            ch._settling = False

    async def settle(self, ch: Channel) -> None:
        """Finalize if needed, then conclude and withdraw our outcome."""
        if ch._phase == Phase.WITHDRAWN:
            raise ChannelClosedError(f"channel 0x{ch.id.hex()[:12]} is already settled")
        if ch._phase in (Phase.ACTING, Phase.SIGNING):
            await self.finalize(ch)
        if ch._phase not in (Phase.FINAL, Phase.WITHDRAWING):
            raise ChannelNotReadyError(
                f"cannot settle cooperatively in phase {ch._phase.name}",
                phase=ch._phase,
                channel_id=ch.id,
            )
        if ch._phase == Phase.FINAL:
            ch._set_phase(Phase.WITHDRAWING)
            await ch._persist_phase()
        assert ch._current is not None
        req = AdjudicatorReq(ch.params, ch._current, ch.idx, secondary=ch.idx != 0)
        await self.client.adjudicator.withdraw(req, {})
        ch._set_phase(Phase.WITHDRAWN)
        await ch._io(lambda: self.client.persister.channel_removed(ch.id))
        self.client._remove_channel(ch)
