"""Restart from persistence, and channel sync after lost messages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from perun_core.channel.phase import Phase
from perun_core.client import ClientConfig
from perun_core.errors import RequestTimedOutError
from perun_core.testing.parties import PartyFactory, open_channel
from perun_core.wire import messages as wire
from perun_core.wire.local_bus import LocalBus


class LossyBus(LocalBus):
    """A LocalBus that loses the next envelope matching ``drop``."""

    def __init__(self) -> None:
        super().__init__()
        self.drop: Callable[[wire.Envelope], bool] | None = None
        self.dropped: list[wire.Envelope] = []

    async def publish(self, envelope: wire.Envelope) -> None:
        if self.drop is not None and self.drop(envelope):
            self.drop = None
            self.dropped.append(envelope)
            return
        await super().publish(envelope)


QUICK = ClientConfig(update_timeout=0.3, proposal_timeout=5, sync_timeout=2)


async def test_restart_restores_channels_and_they_settle(backend, asset) -> None:  # type: ignore[no-untyped-def]
    bus = LossyBus()
    f = PartyFactory(backend, bus)
    petra, robert = await f.make("petra"), await f.make("robert")
    ch_p, ch_r = await open_channel(petra, robert, asset, (100, 100))
    await ch_p.send(7)
    await ch_r.send(2)
    before = ch_p.record()
    await petra.client.close()
    await robert.client.close()
    # New clients on the same accounts and stores.
    f2 = PartyFactory(backend, bus)
    petra2 = await f2.make("petra", account=petra.account, persister=petra.persister)
    robert2 = await f2.make("robert", account=robert.account, persister=robert.persister)
    ch_p2, ch_r2 = await petra2.next_channel(), await robert2.next_channel()
    assert ch_p2.id == ch_r2.id == ch_p.id
    # The restored channel syncs with the peer first (its record says so until then).
    for _ in range(500):
        if not (ch_p2.record().needs_sync or ch_r2.record().needs_sync):
            break
        await asyncio.sleep(0.01)
    assert ch_p2.record() == before
    assert ch_p2.phase == ch_r2.phase == Phase.ACTING
    await ch_r2.update(lambda s: s.finalized())
    await ch_r2.settle()
    await ch_p2.settle()
    assert await backend.balance_of(petra.account.address, asset) == f.funds - 5
    assert await backend.balance_of(robert.account.address, asset) == f.funds + 5
    await f2.close()


async def test_lost_acceptance_is_recovered_by_sync(backend, asset) -> None:  # type: ignore[no-untyped-def]
    bus = LossyBus()
    f = PartyFactory(backend, bus)
    petra, robert = await f.make("petra", config=QUICK), await f.make("robert", config=QUICK)
    ch_p, ch_r = await open_channel(petra, robert, asset, (100, 100))
    await ch_p.send(1)
    bus.drop = lambda e: isinstance(e.msg, wire.ChannelUpdateAcc)
    with pytest.raises(RequestTimedOutError):
        await ch_p.send(10)
    assert bus.dropped and ch_r.state.version == 2  # Robert accepted; Petra never heard
    await ch_p.wait_phase(Phase.ACTING, timeout=2)
    for _ in range(100):
        if ch_p.state == ch_r.state and not ch_p.machine.needs_sync:
            break
        await __import__("asyncio").sleep(0.01)
    assert ch_p.state == ch_r.state and ch_p.state.version == 2
    assert ch_p.next_version == ch_r.next_version == 3
    await ch_p.send(1)
    assert ch_r.balances[0] == (88, 112)
    await f.close()


async def test_lost_proposal_burns_its_version_on_both_sides(backend, asset) -> None:  # type: ignore[no-untyped-def]
    bus = LossyBus()
    f = PartyFactory(backend, bus)
    petra, robert = await f.make("petra", config=QUICK), await f.make("robert", config=QUICK)
    ch_p, ch_r = await open_channel(petra, robert, asset, (100, 100))
    bus.drop = lambda e: isinstance(e.msg, wire.ChannelUpdate)
    with pytest.raises(RequestTimedOutError):
        await ch_p.send(10)
    for _ in range(100):
        if not ch_p.machine.needs_sync and ch_r.version_floor == 1:
            break
        await __import__("asyncio").sleep(0.01)
    assert ch_p.state == ch_r.state and ch_p.state.version == 0
    assert ch_p.next_version == ch_r.next_version == 2  # version 1 is burned
    st = await ch_p.send(3)
    assert st.version == 2 and ch_r.balances[0] == (97, 103)
    await f.close()


async def test_a_cancelled_update_is_resolved_by_sync(backend, asset) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    bus = LossyBus()
    f = PartyFactory(backend, bus)
    petra, robert = await f.make("petra", config=QUICK), await f.make("robert", config=QUICK)
    ch_p, ch_r = await open_channel(petra, robert, asset, (100, 100))
    bus.drop = lambda e: isinstance(e.msg, wire.ChannelUpdateAcc)  # Robert's answer is lost
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ch_p.send(4), 0.05)  # the caller gives up first
    for _ in range(200):
        if ch_p.state == ch_r.state and not ch_p.machine.needs_sync:
            break
        await asyncio.sleep(0.01)
    assert ch_p.state == ch_r.state and ch_p.state.version == 1  # sync adopted Robert's
    assert ch_p.phase == Phase.ACTING
    st = await ch_p.send(1)
    assert st.version == 2 and ch_r.balances[0] == (95, 105)
    await f.close()
