"""Settlement: cooperative first, the dispute path as fallback (see docs/protocols.md)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from perun_core.channel.phase import Phase
from perun_core.errors import (
    ChainError,
    ChannelClosedError,
    ChannelNotReadyError,
    PerunError,
    ReentrantUpdateError,
    RequestTimedOutError,
    SubChannelsPresentError,
    SyncRequiredError,
    UpdateConflictError,
)
from perun_core.interfaces.adjudicator import AdjudicatorReq
from perun_core.logging import channel_extra

if TYPE_CHECKING:
    from perun_core.client.channel import Channel
    from perun_core.client.engine import Engine

log = logging.getLogger("perun.settle")

_DISPUTE = (Phase.REGISTERING, Phase.REGISTERED, Phase.PROGRESSING, Phase.PROGRESSED)


class SettleProtocol:
    """The settlement protocol of one client."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.client = engine.client

    async def finalize(self, ch: Channel) -> None:
        """Make the current state final with the peer (the caller holds the slot).

        A collision with the peer's update (a payment, say) is not a failure: the peer's
        proposal is decided first and the final proposal is made again on the state it
        leaves, a bounded number of times.
        """
        cfg = self.client.config
        ch.rt.settling = True  # the peer's final proposal is accepted without asking
        try:
            for _ in range(cfg.conflict_retries + 2):
                if not ch.rt.idle.is_set():
                    async with asyncio.timeout(cfg.update_timeout * 2):
                        await ch.rt.idle.wait()
                if not ch.machine.in_phase(Phase.ACTING):
                    return  # final already, or the ledger took over
                before = ch.state.version
                try:
                    await self.engine.updates.propose(ch, lambda s: s.finalized())
                    return
                except UpdateConflictError:
                    # We lost a collision: the winner proposes again (its own update, or a
                    # final state); wait until that is decided, then try again.
                    await self._wait_moved_on(ch, before, cfg.update_timeout)
                except ChannelNotReadyError:
                    # The peer finalized first (its proposal was accepted meanwhile).
                    if not ch.machine.in_phase(Phase.FINAL):
                        raise
                    return
            raise RequestTimedOutError("the channel could not be finalized with the peer")
        finally:
            ch.rt.settling = False

    @staticmethod
    async def _wait_moved_on(ch: Channel, version: int, timeout: float) -> None:  # noqa: ASYNC109 - every wait has a deadline; this one takes it as an argument
        """Wait (bounded) until the channel has a newer state or left ACTING."""
        try:
            async with asyncio.timeout(timeout):
                while ch.machine.in_phase(Phase.ACTING) and ch.state.version == version:
                    await ch.rt.changed.wait()
                while not ch.rt.idle.is_set():
                    await ch.rt.idle.wait()
        except TimeoutError:
            pass  # the winner did not propose again: our final proposal goes out now

    async def settle(self, ch: Channel) -> None:
        """Settle: finalize with the peer and conclude at once, or fall back to a dispute.

        The dispute path registers the latest fully signed state, waits out the challenge
        duration on the ledger, concludes and withdraws. It is taken when the peer rejects
        or does not answer the final update (or answers it in any way that does not make
        it final), when the channel is in dispute already, and for a channel whose funding
        failed (fund recovery).
        """
        m = ch.machine
        if m.phase == Phase.WITHDRAWN:
            return  # settled already (e.g. automatically after the peer concluded)
        if ch.parent is not None:
            await self.engine.subs.settle(ch)
            return
        if m.in_phase(Phase.ACTING, Phase.SIGNING, Phase.FINAL) and ch.state.allocation.locked:
            raise SubChannelsPresentError(
                f"channel 0x{ch.id.hex()[:12]} has live sub-channels: settle them first "
                "(or register the channel, which disputes the whole tree)"
            )
        if m.in_phase(Phase.ACTING, Phase.SIGNING) and m.needs_sync:
            await self.sync_first(ch)
        if m.in_phase(Phase.ACTING, Phase.SIGNING) and not m.needs_sync:
            try:
                await self.finalize(ch)
            except (ChannelClosedError, ReentrantUpdateError):
                raise
            except (PerunError, TimeoutError) as e:
                log.warning(
                    "channel 0x%s: cooperative settlement failed (%s); disputing",
                    ch.id.hex()[:12],
                    e,
                    extra=channel_extra(ch),
                )
        if m.in_phase(Phase.FINAL, Phase.WITHDRAWING):
            if ch.rt.settle_task is None:
                await self._conclude_final(ch)
            else:
                # Settling started already (the watcher saw the peer conclude): join it.
                await asyncio.shield(self.engine.disputes.ensure_settle(ch))
            return
        if m.in_phase(Phase.ACTING, Phase.SIGNING, Phase.FUNDING, *_DISPUTE, Phase.WITHDRAWING):
            await self.engine.disputes.settle(ch)
            return
        if m.needs_sync:
            raise SyncRequiredError("the channel must sync before it can settle")
        raise ChannelNotReadyError(
            f"cannot settle in phase {m.phase.name}", phase=m.phase, channel_id=ch.id
        )

    async def sync_first(self, ch: Channel) -> None:
        """Give a due sync round a chance (bounded): a synced channel settles cooperatively."""
        await self.engine.sync.start(ch)
        try:
            async with asyncio.timeout(self.client.config.sync_timeout):
                await ch.rt.sync_done.wait()
        except TimeoutError:
            pass  # the peer is silent: the ledger settles

    async def _conclude_final(self, ch: Channel) -> None:
        await ch.io.write(ch.machine.withdrawing())
        assert ch.machine.current is not None
        req = AdjudicatorReq(ch.params, ch.machine.current, ch.idx, secondary=ch.idx != 0)
        try:
            await self.client.adjudicator.withdraw(req, {})
        except ChainError as e:
            # The ledger fixed another outcome (the peer registered and concluded a state
            # while we finalized): the dispute path withdraws whatever the ledger holds.
            log.info(
                "channel 0x%s: concluding the final state failed (%s); following the ledger",
                ch.id.hex()[:12],
                e,
                extra=channel_extra(ch),
            )
            await asyncio.shield(self.engine.disputes.ensure_settle(ch))
            return
        await self.engine.finish_channel(ch)
