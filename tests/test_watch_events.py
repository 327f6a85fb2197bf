"""Shared timers and shared event streams: the per-client structures behind cheap channels.

- :class:`Deadlines` (one timer for every proposer's wait) expires exactly the waits still
  registered, in order; answered updates leave none behind. (An update that times out is
  covered end to end by ``test_restore_sync.py``.)
- :class:`ChannelEvents` streams (the sim ledger's native one and the default built on
  ``subscribe()``) deliver each added channel's latest past event first, then new ones, and
  nothing of removed channels; the watchtower refutes through them as before.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from perun_sim import SimBackend, SimLedger

from perun_core.channel import Allocation, Params, State, Transaction
from perun_core.client import ClientConfig
from perun_core.client.deadlines import Deadlines
from perun_core.errors import ChainConnectionError
from perun_core.interfaces import (
    Adjudicator,
    AdjudicatorReq,
    ChannelEvents,
    RegisteredEvent,
)
from perun_core.testing.parties import PartyFactory, open_channel
from perun_core.testing.waiting import until
from perun_core.watcher.events import PerChannelEvents
from perun_core.wire.local_bus import LocalBus

# --- Deadlines -------------------------------------------------------------------------------


async def test_deadlines_expire_only_live_waits_in_order() -> None:
    fired: list[tuple[str, int]] = []
    d = Deadlines(0.2, lambda key, arg: fired.append((key, arg)))
    d.add("a", 1)
    d.add("b", 2)
    d.add("c", 3)
    d.discard("b")  # finished in time
    assert len(d) == 2
    await asyncio.sleep(0.1)
    d.add("late", 4)  # its own, later deadline (0.3)
    await asyncio.sleep(0.15)  # 0.25: the first two are due, "late" is not
    assert fired == [("a", 1), ("c", 3)]
    await asyncio.sleep(0.15)
    assert fired == [("a", 1), ("c", 3), ("late", 4)]
    assert len(d) == 0


async def test_deadlines_close_stops_everything() -> None:
    fired: list[Any] = []
    d = Deadlines(0.01, lambda key, arg: fired.append(key))
    d.add(1, None)
    d.close()
    await asyncio.sleep(0.03)
    assert fired == []


async def test_answered_updates_leave_no_deadline_behind() -> None:
    backend = SimBackend.from_config({"clock": "manual"})
    asset = backend.default_assets()[0]
    f = PartyFactory(backend, LocalBus())
    try:
        alice, bob = await f.make("alice"), await f.make("bob")
        ch_a, _ = await open_channel(alice, bob, asset, (100, 100))
        for _ in range(20):
            await ch_a.send(1)
        assert len(alice.client._engine.updates.deadlines) == 0
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        assert ch_a.my_balance() == 80
    finally:
        await f.close()
        await backend.close()


# --- ChannelEvents ---------------------------------------------------------------------------


@pytest.fixture
async def ledger_backend() -> AsyncIterator[SimBackend]:
    backend = SimBackend(SimLedger())
    yield backend
    await backend.close()


def _signed_state(backend: SimBackend, version: int) -> tuple[Params, Any, Any, Transaction]:
    w = backend.wallet()
    a, b = w.add_seed(secrets.token_bytes(8)), w.add_seed(secrets.token_bytes(8))
    params = Params(
        challenge_duration=60,
        participants=(a.address, b.address),
        nonce=secrets.randbits(64),
        app=backend.payment_app_id(),
    ).with_id(backend)
    return params, a, b, _tx(backend, params, a, b, version)


def _tx(backend: SimBackend, params: Params, a: Any, b: Any, version: int) -> Transaction:
    asset = backend.default_assets()[0]
    st = State(params.id, version, Allocation((asset,), ((0, 0),)), params.app)
    return Transaction(st, (backend.sign_state(a, st), backend.sign_state(b, st)))


async def _events_of(adj: Adjudicator, native: bool) -> ChannelEvents:
    return adj.channel_events() if native else PerChannelEvents(adj)


@pytest.mark.parametrize("native", [True, False], ids=["sim-native", "per-channel-default"])
async def test_channel_events_replay_then_follow(ledger_backend: SimBackend, native: bool) -> None:
    backend = ledger_backend
    p1, acct1, _, tx1 = _signed_state(backend, 3)
    p2, acct2, other2, tx2 = _signed_state(backend, 5)
    p3, _, _, _ = _signed_state(backend, 1)
    adj1, adj2 = backend.adjudicator(acct1), backend.adjudicator(acct2)
    await adj1.register(AdjudicatorReq(p1, tx1, 0))  # before the stream exists
    events = await _events_of(adj1, native)
    assert isinstance(events, PerChannelEvents) != native
    try:
        events.add(p1)
        events.add(p1)  # idempotent
        events.add(p2)
        events.add(p3)
        events.remove(p3.id)
        cid, ev = await asyncio.wait_for(_next(events), 5)
        assert cid == p1.id and isinstance(ev, RegisteredEvent) and ev.version == 3
        await adj2.register(AdjudicatorReq(p2, tx2, 0))
        cid, ev = await asyncio.wait_for(_next(events), 5)
        assert cid == p2.id and isinstance(ev, RegisteredEvent) and ev.version == 5
        # Removed: no more events of p2 (a higher registration is a new event).
        events.remove(p2.id)
        await adj2.register(AdjudicatorReq(p2, _tx(backend, p2, acct2, other2, 6), 0))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(_next(events), 0.2)
    finally:
        await events.close()
    assert await events.next() is None


async def _next(events: ChannelEvents) -> tuple[bytes, Any]:
    item = await events.next()
    assert item is not None
    return item


async def test_watcher_uses_one_stream_for_every_channel(ledger_backend: SimBackend) -> None:
    """Many watched channels, one native stream and one reader task (not one per channel)."""
    backend = ledger_backend
    asset = backend.default_assets()[0]
    f = PartyFactory(backend, LocalBus())
    try:
        alice, bob = await f.make("alice"), await f.make("bob")
        before = len(asyncio.all_tasks())
        pairs = [await open_channel(alice, bob, asset, (10, 10)) for _ in range(5)]
        await asyncio.sleep(0.05)
        watcher = alice.client.watcher
        assert watcher is not None
        assert all(watcher.is_watching(a.id) for a, _ in pairs)
        ledger = backend.ledger
        assert isinstance(ledger, SimLedger)
        assert len(ledger._hubs) == 2  # alice's and bob's watchtower
        assert len(asyncio.all_tasks()) - before <= 2  # no task per watched channel
    finally:
        await f.close()


class _FlakyAdjudicator:
    """Delegates to a real adjudicator; its first ``fail`` registrations fail as if the node
    were down (a typed :class:`ChainConnectionError`)."""

    def __init__(self, inner: Adjudicator, fail: int) -> None:
        self.inner = inner
        self.fail = fail
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def register(self, req: Any, sub_states: Any = None) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise ChainConnectionError("node unreachable (test)")
        await self.inner.register(req, sub_states)


async def test_the_watcher_keeps_refuting_while_the_node_is_down() -> None:
    """Eight failed attempts (about 5 s of back-off) do not cost the refutation: the watcher
    tries until the window closes."""
    backend = SimBackend.from_config({"clock": "manual"})
    asset = backend.default_assets()[0]
    f = PartyFactory(backend, LocalBus())
    try:
        mallory = await f.make("mallory", config=ClientConfig(watch=False, auto_settle=False))
        alice = await f.make("alice", config=ClientConfig(auto_settle=False))
        ch_m, ch_a = await open_channel(mallory, alice, asset, (50, 50), challenge_duration=60)
        stale = ch_m.transaction
        assert stale is not None
        await ch_m.send(20)
        watcher = alice.client.watcher
        assert watcher is not None
        flaky = _FlakyAdjudicator(backend.adjudicator(alice.account), fail=8)
        watcher._adjudicator = flaky  # type: ignore[assignment]  # the node alice's watcher uses
        await backend.adjudicator(mallory.account).register(AdjudicatorReq(ch_m.params, stale, 0))
        await until(lambda: watcher.refutations == 1, timeout=30)
        assert flaky.calls == 9
        await until(lambda: ch_a.last_event is not None and ch_a.last_event.version == 1)
    finally:
        await f.close()
        await backend.close()
