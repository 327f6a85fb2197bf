"""Crash during force execution: SIGKILL the forcing client around its PROGRESSING write.

The victim (:mod:`perun_core.testing.crash` over LevelDB, its own OS process) opens a
payment-app channel with Alice (a client in the test process), registers it and, after the
refutation window, forces a payment of 20 to Alice on the ledger. The dry run checks the
victim's persistence events; each kill point kills it right before or right after the write
that stages the force update (PROGRESSING) or the one that makes the forced state current
(PROGRESSED). The restarted victim follows the ledger: its channel leaves PROGRESSING by
itself (the replayed event tells whether the progress landed), a force update that never
left can be made again, and both parties settle on exactly the forced state.
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

pytestmark = pytest.mark.timeout(180)

FUNDS = 10_000
DEPOSIT = {"alice": 400, "victim": 300}
FORCED = 20  # the victim forces this payment to Alice
CHALLENGE = 60
EVENTS = [
    ("channel_created", 1),  # v0 fully signed (FUNDING)
    ("phase_changed", 1),  # funded (ACTING)
    ("phase_changed", 2),  # REGISTERING
    ("phase_changed", 3),  # REGISTERED
    ("staged", 1),  # the force update signed and staged (PROGRESSING), before it is sent
    ("enabled", 1),  # the forced state current (PROGRESSED)
    ("phase_changed", 4),  # WITHDRAWING
    ("channel_removed", 1),  # concluded and withdrawn
]
KILL_POINTS = [f"{e}:{n}:{w}" for e, n in EVENTS[4:6] for w in ("before", "after")]


async def _run(point: CrashPoint | None, tmp: Path) -> dict[str, Any]:
    config = ClientConfig(update_timeout=3.0, proposal_timeout=5.0, sync_timeout=3.0)
    async with victim_world(str(point), tmp, FUNDS, config) as w:
        victim: PeerProcess | None = None
        try:
            victim = await w.spawn(point, 0, "tcp://127.0.0.1:0")
            seen = await victim.call(
                "propose",
                mine=DEPOSIT["victim"],
                theirs=DEPOSIT["alice"],
                challenge_duration=CHALLENGE,
                app="payment",
            )
            ch = await asyncio.wait_for(w.channels.get(), 10)
            cid = seen["id"]
            assert cid == ch.id.hex() and ch.params.app == w.backend.payment_app_id()
            await victim.call("register", id=cid)
            await ch.wait_phase(Phase.REGISTERED, timeout=10)
            await w.backend.advance_time(CHALLENGE + 1)
            outcome = "completed"
            try:
                seen = await victim.call("force_pay", id=cid, amount=FORCED)
                assert seen["phase"] == "PROGRESSED" and seen["version"] == 1, seen
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
                seen = await victim.call("channel", timeout=10)
                # The ledger's replayed event moves it out of PROGRESSING.
                for _ in range(100):
                    seen = await victim.call("state", id=cid)
                    if seen["phase"] != "PROGRESSING":
                        break
                    await asyncio.sleep(0.05)
                outcome = seen["phase"]
                if seen["phase"] == "REGISTERED":  # the progress never left: force again
                    seen = await victim.call("force_pay", id=cid, amount=FORCED)
                assert seen["phase"] == "PROGRESSED" and seen["version"] == 1, seen
            assert seen["balances"] == [[DEPOSIT["victim"] - FORCED, DEPOSIT["alice"] + FORCED]]
            await until(lambda: ch.phase == Phase.PROGRESSED, 10, what="Alice adopts it")
            assert ch.state.balances[0] == (DEPOSIT["victim"] - FORCED, DEPOSIT["alice"] + FORCED)
            await w.backend.advance_time(CHALLENGE + 1)  # the force-execution window ends
            seen = await victim.call("settle", id=cid, timeout=30)
            assert seen["phase"] == "WITHDRAWN", seen
            await asyncio.wait_for(ch.settle(), 30)
            ledger = w.server.ledger
            assert ledger.balance_of(w.account.address, w.asset) == FUNDS + FORCED
            assert ledger.balance_of(victim.address, w.asset) == FUNDS - FORCED
            return {"outcome": outcome, "trace": read_trace(tmp / "trace0")}
        finally:
            if victim is not None:
                await victim.close()


@pytest.fixture(scope="module")
def leveldb() -> None:
    if "leveldb" not in load_plugins().persisters:
        pytest.skip("the crash tests need perun-leveldb")


@pytest.mark.usefixtures("leveldb")
async def test_dry_run_lists_the_force_writes(tmp_path: Path) -> None:
    result = await _run(None, tmp_path)
    assert result["trace"] == EVENTS


@pytest.mark.usefixtures("leveldb")
@pytest.mark.parametrize("point", KILL_POINTS)
async def test_kill_around_force_execution(point: str, tmp_path: Path) -> None:
    result = await _run(CrashPoint.parse(point), tmp_path)
    # Before the progress call, nothing reached the ledger: the restart finds REGISTERED
    # (and forces again); once it was sent, the ledger's Progressed event is adopted.
    expected = "REGISTERED" if point.startswith("staged") else "PROGRESSED"
    assert result["outcome"] == expected
