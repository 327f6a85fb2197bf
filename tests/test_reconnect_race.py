"""Issue F8: bounded proposal-ID memory, and a payment racing the reconnect sync round."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from perun_core.channel.allocation import Allocation
from perun_core.client import ClientConfig
from perun_core.testing.faults import FaultyBus
from perun_core.testing.parties import PartyFactory, open_channel
from perun_core.wire import messages as wire
from perun_core.wire.local_bus import LocalBus


async def test_seen_proposal_ids_are_bounded(backend: Any, asset: Any) -> None:
    f = PartyFactory(backend, LocalBus())
    alice = await f.make("alice")
    bob = await f.make("bob", config=ClientConfig(seen_proposals=64), accept=False)
    bob.client.on_proposal(lambda p, r: r.reject("no"))
    try:
        for _ in range(300):
            prop = wire.LedgerChannelProposal(
                proposal_id=os.urandom(32),
                backend=backend.name,
                challenge_duration=60,  # Bob's handler rejects it: nothing is opened
                nonce_share=os.urandom(32),
                app=None,
                init_data=b"",
                init_alloc=Allocation((asset,), ((1, 1),)),
                funding_agreement=None,
                aux=b"",
                participant=alice.account.address,
                peers=(alice.address, bob.address),
            )
            await f.bus.publish(wire.Envelope(alice.address, bob.address, prop))
        await asyncio.sleep(0.05)
        assert len(bob.client._engine.proposals._seen) <= 64
    finally:
        await f.close()


async def test_first_payment_after_a_restart_waits_for_the_sync_round(
    backend: Any, asset: Any
) -> None:
    bus = FaultyBus()
    f = PartyFactory(backend, bus)
    alice, bob = await f.make("alice"), await f.make("bob")
    ch_a, _ = await open_channel(alice, bob, asset, (100, 100))
    await ch_a.send(1)
    await bob.client.close()
    # Alice's answers to Bob's sync requests are held back: Bob's round is still running
    # when Alice's payment reaches him.
    held: list[wire.Envelope] = []

    def hold(env: wire.Envelope) -> wire.Envelope | None:
        if env.sender == alice.address and isinstance(env.msg, wire.ChannelSync):
            held.append(env)
            return None
        return env

    bus.rules.append(hold)
    f2 = PartyFactory(backend, bus)
    try:
        bob2 = await f2.make("bob", account=bob.account, persister=bob.persister)
        ch_b = await bob2.next_channel()
        assert not ch_b.synced
        pay = asyncio.ensure_future(ch_a.send(1))
        await asyncio.sleep(0.1)  # Bob refused it for now: he is syncing
        bus.rules.remove(hold)
        for env in held:
            await bus.publish(env)
        await asyncio.wait_for(pay, 10)  # no SYNC_REQUIRED reaches the caller
        await ch_b.send(1)
        assert ch_a.state == ch_b.state and ch_a.balances[0] == (99, 101)
    finally:
        await f2.close()
        await f.close()
