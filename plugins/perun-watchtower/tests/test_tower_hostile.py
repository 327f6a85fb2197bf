"""A hostile client against a tower: forged, stale and other people's states, floods.

The tower runs in this process on a real TCP listener with a real LevelDB store and an
in-process sim ledger; the hostile client is a bus endpoint of its own (an authenticated TCP
connection) sending hand-made requests. Every refusal must be typed and change nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from perun_leveldb.store import LevelDBStore
from perun_sim import SimBackend
from perun_tcp import TcpBus
from perun_watchtower import TowerConfig, Watchtower

from perun_core.channel.allocation import Allocation
from perun_core.channel.params import Params, make_params
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Address
from perun_core.errors import (
    WATCH_REFUSALS,
    InvalidWatchStateError,
    NotAParticipantError,
    StaleWatchStateError,
    WatchQuotaExceededError,
)
from perun_core.interfaces.adjudicator import AdjudicatorReq
from perun_core.interfaces.wallet import Account
from perun_core.watcher import tower_wire
from perun_core.watcher.tower_wire import (
    StopWatching,
    StopWatchingAck,
    WatchAck,
    WatchRefused,
    WatchRequest,
    delegation_message,
)
from perun_core.wire.messages import Envelope, Message


@dataclass
class Setup:
    backend: SimBackend
    tower: Watchtower
    tower_endpoint: str
    alice: Account
    bob: Account
    mallory: Account


class Endpoint:
    """A client identity with its own TCP bus, sending requests and reading answers."""

    def __init__(self, bus: TcpBus, account: Account, tower: Address) -> None:
        self.bus = bus
        self.account = account
        self.tower = tower
        self.sub = bus.subscribe(account.address)
        self._next = 1

    async def ask(self, msg: WatchRequest | StopWatching) -> Message:
        rid = self._next
        self._next += 1
        if isinstance(msg, WatchRequest):
            msg = WatchRequest(rid, msg.params, msg.tx, msg.parent, msg.participant, msg.delegation)
        else:
            msg = StopWatching(rid, msg.channel_id)
        await self.bus.publish(Envelope(self.account.address, self.tower, msg))
        async with asyncio.timeout(10):
            while True:
                env = await self.sub.next()
                assert env is not None
                if getattr(env.msg, "request_id", None) == rid:
                    return env.msg


def _refusal(answer: Message) -> type[Exception]:
    assert isinstance(answer, WatchRefused), answer
    return WATCH_REFUSALS[answer.refusal]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    tower_wire.register()
    backend = SimBackend.from_config({"clock": "manual"})
    wallet = backend.wallet()
    tower_acct, alice, bob, mallory = (wallet.new_account() for _ in range(4))
    bus = TcpBus.from_backend(tower_acct, backend)
    await bus.listen("127.0.0.1", 0)
    config = TowerConfig(states_per_second=50, burst=40, max_channels_per_client=3)
    tower = Watchtower(
        backend=backend,
        account=tower_acct,
        bus=bus,
        store=LevelDBStore(tmp_path / "tower.db"),
        config=config,
    )
    await tower.start()
    try:
        yield Setup(backend, tower, str(bus.advertised_endpoints()[0]), alice, bob, mallory)
    finally:
        await tower.close()
        await bus.close()
        await backend.close()


async def _endpoint(s: Setup, account: Account) -> Endpoint:
    bus = TcpBus.from_backend(account, s.backend)
    bus.add_peer(s.tower.address, s.tower_endpoint)
    return Endpoint(bus, account, s.tower.address)


def _channel(s: Setup, a: Account, b: Account, nonce: int) -> Params:
    return make_params(
        s.backend, challenge_duration=60, participants=(a.address, b.address), nonce=nonce
    )


def _signed(
    s: Setup, p: Params, version: int, balances: tuple[int, int], *signers: Account
) -> Transaction:
    asset = s.backend.default_assets()[0]
    state = State(p.id, version, Allocation((asset,), (balances,)), None, b"", False)
    sigs = tuple(s.backend.sign_state(acct, state) for acct in signers)
    return Transaction(state, sigs)


async def test_alice_hands_states_and_mallorys_attacks_are_refused(setup: Setup) -> None:
    s = setup
    alice = await _endpoint(s, s.alice)
    mallory = await _endpoint(s, s.mallory)
    try:
        p = _channel(s, s.alice, s.bob, 1)
        v3 = _signed(s, p, 3, (70, 30), s.alice, s.bob)
        answer = await alice.ask(WatchRequest(0, p, v3))
        assert isinstance(answer, WatchAck) and answer.version == 3
        assert s.tower.held_version(p.id) == 3

        # Stale: the same or an older version.
        v2 = _signed(s, p, 2, (60, 40), s.alice, s.bob)
        assert _refusal(await alice.ask(WatchRequest(0, p, v2))) is StaleWatchStateError
        # Forged: Bob's signature replaced by Alice's, or missing.
        forged = _signed(s, p, 4, (100, 0), s.alice, s.alice)
        assert _refusal(await alice.ask(WatchRequest(0, p, forged))) is InvalidWatchStateError
        half = Transaction(forged.state, (forged.sigs[0], None))
        assert _refusal(await alice.ask(WatchRequest(0, p, half))) is InvalidWatchStateError
        # Params that do not hash to the ID.
        other = Params(60, p.participants, 2, id=p.id)
        assert _refusal(await alice.ask(WatchRequest(0, other, v3))) is InvalidWatchStateError
        # Other people's channel: Mallory is no participant, not even with a forged delegation.
        v5 = _signed(s, p, 5, (80, 20), s.alice, s.bob)
        assert _refusal(await mallory.ask(WatchRequest(0, p, v5))) is NotAParticipantError
        bad = WatchRequest(0, p, v5, None, s.alice.address, b"\x01" * 65)
        assert _refusal(await mallory.ask(bad)) is NotAParticipantError
        # Mallory cannot stop Alice's watch either.
        assert _refusal(await mallory.ask(StopWatching(0, p.id))) is NotAParticipantError
        assert s.tower.held_version(p.id) == 3  # nothing changed

        # A delegation Alice signed lets Mallory's identity hand Alice's states.
        deleg = s.alice.sign(delegation_message(s.tower.address, s.mallory.address))
        ok = await mallory.ask(WatchRequest(0, p, v5, None, s.alice.address, deleg))
        assert isinstance(ok, WatchAck) and ok.version == 5

        # Stop: the owner (Alice) only; the record goes from the store.
        assert isinstance(await alice.ask(StopWatching(0, p.id)), StopWatchingAck)
        assert s.tower.held_version(p.id) is None
        assert len(s.tower) == 0
    finally:
        await alice.bus.close()
        await mallory.bus.close()


async def test_channel_quota_and_flood(setup: Setup) -> None:
    s = setup
    mallory = await _endpoint(s, s.mallory)
    try:
        # Mallory's own channels (with a second key of hers): 3 fit, the 4th is refused.
        answers = []
        for n in range(4):
            p = _channel(s, s.mallory, s.bob, 100 + n)
            answers.append(
                await mallory.ask(WatchRequest(0, p, _signed(s, p, 1, (1, 1), s.mallory, s.bob)))
            )
        assert [type(a) for a in answers[:3]] == [WatchAck] * 3
        assert _refusal(answers[3]) is WatchQuotaExceededError
        assert len(s.tower) == 3
        # A flood of requests beyond the rate: refused with the quota error, none stored.
        p = _channel(s, s.mallory, s.bob, 100)
        tx = _signed(s, p, 1, (1, 1), s.mallory, s.bob)
        results = await asyncio.gather(*(mallory.ask(WatchRequest(0, p, tx)) for _ in range(80)))
        kinds = {_refusal(a) for a in results}
        assert WatchQuotaExceededError in kinds
        assert kinds <= {WatchQuotaExceededError, StaleWatchStateError}
        assert s.tower.held_version(p.id) == 1
        assert s.tower.stats.refused["WatchQuotaExceededError"] >= 1
    finally:
        await mallory.bus.close()


async def test_tower_refutes_a_stale_registration(setup: Setup) -> None:
    """The tower registers its newer state over a stale registration (from its own account)."""
    s = setup
    alice = await _endpoint(s, s.alice)
    try:
        p = _channel(s, s.alice, s.bob, 7)
        v1 = _signed(s, p, 1, (50, 50), s.alice, s.bob)
        v9 = _signed(s, p, 9, (90, 10), s.alice, s.bob)
        assert isinstance(await alice.ask(WatchRequest(0, p, v9)), WatchAck)
        adj = s.backend.adjudicator(s.bob)
        sub = await adj.subscribe(p)
        await adj.register(AdjudicatorReq(p, v1, 1))
        versions = []
        async with asyncio.timeout(10):
            while 9 not in versions:
                ev = await sub.next()
                assert ev is not None
                versions.append(ev.version)
        await sub.close()
        assert versions == [1, 9]
        assert s.tower.refutations == 1
    finally:
        await alice.bus.close()
