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
from perun_sim import SimBackend, SimClock, SimLedger
from perun_sim.server import LedgerServer
from perun_tcp import TcpBus

from perun_core.channel.phase import Phase
from perun_core.client import Channel, Client, ClientConfig
from perun_core.plugins import load_plugins
from perun_core.testing.crash import CRASH_ENV, TRACE_ENV, CrashPoint, read_trace
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
    async with LedgerServer(SimLedger(clock=SimClock.manual(0))) as server:
        url = await server.listen_tcp("127.0.0.1", 0)
        backend = SimBackend(server.ledger)
        asset = backend.default_assets()[0]
        account = backend.wallet().add_seed(f"alice-{point}".encode())
        await backend.faucet(account.address, asset, FUNDS)
        bus = TcpBus.from_backend(account, backend, handshake_timeout=5.0, close_timeout=1.0)
        await bus.listen("127.0.0.1", 0)
        client = Client(
            account=account,
            backend=backend,
            bus=bus,
            config=ClientConfig(update_timeout=3.0, proposal_timeout=5.0, sync_timeout=3.0),
        )
        channels: asyncio.Queue[Channel] = asyncio.Queue()
        client.on_proposal(lambda p, r: r.accept())
        client.on_new_channel(channels.put_nowait)
        victim: PeerProcess | None = None

        async def spawn(crash: CrashPoint | None, n: int, listen: str) -> PeerProcess:
            env = {TRACE_ENV: str(tmp / f"trace{n}")}
            if crash is not None:
                env[CRASH_ENV] = str(crash)
            v = await PeerProcess.spawn(
                ledger_url=url,
                peer=account.address,
                peer_endpoint=str(bus.endpoints[0]),
                listen=listen,
                funds=FUNDS if n == 0 else 0,
                seed=f"victim-{point}",
                persister="leveldb",
                db=str(tmp / "victim.db"),
                module="perun_core.testing.crash",
                env=env,
            )
            bus.add_peer(v.address, v.endpoint)
            return v

        try:
            await client.start()
            victim = await spawn(point, 0, "tcp://127.0.0.1:0")
            seen = await victim.call(
                "propose",
                mine=DEPOSIT["victim"],
                theirs=DEPOSIT["alice"],
                challenge_duration=CHALLENGE,
                app="payment",
            )
            ch = await asyncio.wait_for(channels.get(), 10)
            cid = seen["id"]
            assert cid == ch.id.hex() and ch.params.app == backend.payment_app_id()
            await victim.call("register", id=cid)
            await ch.wait_phase(Phase.REGISTERED, timeout=10)
            await backend.advance_time(CHALLENGE + 1)
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
                await until(lambda: old.address not in bus.connected_peers, 5)
                victim = await spawn(None, 1, old.endpoint)
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
            await backend.advance_time(CHALLENGE + 1)  # the force-execution window ends
            seen = await victim.call("settle", id=cid, timeout=30)
            assert seen["phase"] == "WITHDRAWN", seen
            await asyncio.wait_for(ch.settle(), 30)
            ledger = server.ledger
            assert ledger.balance_of(account.address, asset) == FUNDS + FORCED
            assert ledger.balance_of(victim.address, asset) == FUNDS - FORCED
            return {"outcome": outcome, "trace": read_trace(tmp / "trace0")}
        finally:
            if victim is not None:
                await victim.close()
            await client.close()
            await bus.close()
            await backend.close()


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
