"""Crash during a sub-channel's life: SIGKILL the victim at each of its sub-channel writes.

The victim (:mod:`perun_core.testing.crash` over LevelDB, its own OS process) opens a ledger
channel with Alice (a client in the test process), opens a sub-channel of it, pays Alice 3
in the sub-channel, settles the sub-channel into the ledger channel and settles that. The dry
run lists the victim's persistence events; each kill point kills it right before or right
after one write of the sub-channel steps (its creation, the parent's funding update, the
funded phase, the payment, the final state, the parent's settlement update, the removal).
The restarted victim restores the tree from disk and the test drives it to the end, redoing
only what did not happen. Whatever the point, both parties end with exactly the balances of
the payment: nobody loses funds.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
from crash_victim import victim_world

from perun_core.channel.phase import Phase
from perun_core.client import ClientConfig
from perun_core.plugins import load_plugins
from perun_core.testing.crash import CrashPoint, read_trace
from perun_core.testing.peer import PeerProcess, PeerProcessError
from perun_core.testing.waiting import until

pytestmark = pytest.mark.timeout(240)

FUNDS = 10_000
DEPOSIT = {"alice": 400, "victim": 300}
SUB = 10  # each party's share of the sub-channel
PAID = 3  # the victim pays Alice this much in the sub-channel
EVENTS = [
    ("channel_created", 1),  # the ledger channel
    ("phase_changed", 1),  # funded (ACTING)
    ("channel_created", 2),  # the sub-channel, v0 fully signed (FUNDING)
    ("staged", 1),  # the parent update that funds it, signed, before it is sent
    ("enabled", 1),  # ... accepted: the parent locks the sub-channel's funds
    ("phase_changed", 2),  # the sub-channel funded (ACTING)
    ("staged", 2),  # the payment in the sub-channel
    ("enabled", 2),
    ("staged", 3),  # the sub-channel's final state
    ("enabled", 3),
    ("staged", 4),  # the parent update that folds the sub-channel back
    ("enabled", 4),
    ("phase_changed", 3),  # the sub-channel WITHDRAWING
    ("channel_removed", 1),  # ... and removed
]
KILL_POINTS = [f"{e}:{n}:{w}" for e, n in EVENTS[2:] for w in ("before", "after")]


async def _drive(victim: PeerProcess, cid: str) -> None:
    """From whatever state the victim restored: fund, pay, settle the sub-channel."""
    subs: list[dict[str, Any]] = []
    for _ in range(200):
        views = (await victim.call("channels"))["channels"]
        subs = [v for v in views if v["parent"] == cid]
        led = next((v for v in views if v["id"] == cid), None)
        if led is None:
            return  # settled already
        if not subs and led["locked"]:
            await asyncio.sleep(0.05)  # the sub-channel's record comes with the tree
            continue
        if all(v["phase"] not in ("FUNDING", "INIT_SIGNING") for v in subs) and led["synced"]:
            break
        await asyncio.sleep(0.05)
    if not subs and led["balances"] == [[DEPOSIT["victim"] - PAID, DEPOSIT["alice"] + PAID]]:
        return  # the sub-channel was settled into the parent before the kill
    if not subs:
        sub = await victim.call("propose_sub", id=cid, mine=SUB, theirs=SUB)
    else:
        sub = subs[0]
    if sub["phase"] == "ACTING" and sub["balances"] == [[SUB, SUB]]:
        sub = await victim.call("pay", id=sub["id"], amount=PAID)
    assert sub["phase"] in ("ACTING", "FINAL", "WITHDRAWING", "WITHDRAWN"), sub
    if sub["phase"] != "WITHDRAWN":
        sub = await victim.call("settle", id=sub["id"], timeout=60)
    assert sub["phase"] == "WITHDRAWN", sub


async def _run(point: CrashPoint | None, tmp: Path) -> list[tuple[str, int]]:
    config = ClientConfig(update_timeout=2.0, proposal_timeout=5.0, sync_timeout=3.0)
    async with victim_world(str(point), tmp, FUNDS, config) as w:
        victim: PeerProcess | None = None
        try:
            victim = await w.spawn(point, 0, "tcp://127.0.0.1:0")
            seen = await victim.call("propose", mine=DEPOSIT["victim"], theirs=DEPOSIT["alice"])
            cid = seen["id"]
            ledger_a = await asyncio.wait_for(w.channels.get(), 10)
            assert ledger_a.id.hex() == cid
            try:
                await _drive(victim, cid)
            except PeerProcessError:  # the kill ends the command; checked below
                if point is None:
                    raise
                code = await victim.proc.wait()
                assert code == -signal.SIGKILL, f"the victim exited with {code}"
                trace = read_trace(tmp / "trace0")
                assert trace[-1] == (point.event, point.n), trace
                old = victim
                await old.close()
                await until(lambda: old.address not in w.bus.connected_peers, 5)
                victim = await w.spawn(None, 1, old.endpoint)
                await _drive(victim, cid)
            # The tree is folded back: both ends of the ledger channel agree, then settle.
            await until(lambda: not ledger_a.state.allocation.locked, 15, what="Alice's fold")
            want = (DEPOSIT["victim"] - PAID, DEPOSIT["alice"] + PAID)
            await until(lambda: ledger_a.balances[0] == want, 15, what="Alice's balances")
            seen = await victim.call("settle", id=cid, timeout=60)
            assert seen["phase"] == "WITHDRAWN", seen
            await asyncio.wait_for(ledger_a.settle(), 30)
            assert ledger_a.phase == Phase.WITHDRAWN
            ledger = w.server.ledger
            assert ledger.balance_of(w.account.address, w.asset) == FUNDS + PAID
            assert ledger.balance_of(victim.address, w.asset) == FUNDS - PAID
            return read_trace(tmp / "trace0")
        finally:
            if victim is not None:
                await victim.close()


@pytest.fixture(scope="module")
def leveldb() -> None:
    if "leveldb" not in load_plugins().persisters:
        pytest.skip("the crash tests need perun-leveldb")


@pytest.mark.usefixtures("leveldb")
async def test_dry_run_lists_the_sub_channel_writes(tmp_path: Path) -> None:
    trace = await _run(None, tmp_path)
    assert trace[: len(EVENTS)] == EVENTS


@pytest.mark.usefixtures("leveldb")
@pytest.mark.parametrize("point", KILL_POINTS)
async def test_kill_at_each_sub_channel_write(point: str, tmp_path: Path) -> None:
    await _run(CrashPoint.parse(point), tmp_path)
