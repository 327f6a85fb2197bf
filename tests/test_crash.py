"""Crash campaign: SIGKILL a client process at every persistence step, restart it, finish.

The victim is a client in its own OS process (:mod:`perun_core.testing.crash`: the demo peer
with a :class:`~perun_core.testing.crash.CrashingPersister` over LevelDB). Alice is a client
in the test process; both talk over the TCP bus and use one sim ledger served by the test
process (manual clock: dispute windows are skipped, never slept through).

Each scenario opens a channel, makes one payment each way, finalizes and settles, with the
victim as the channel's proposer and as its responder, finalizing itself or accepting
Alice's final state, or settling through the ledger because Alice refuses to finalize
(register, wait out the challenge duration, conclude, withdraw): ``SCENARIOS``. A dry run
of each scenario checks the victim's persistence events against the list there; the
campaign kills the victim with SIGKILL right **before** and right **after** each of them,
one kill point per run, restarts it on the same database and drives the channel to its
end. For the two main scenarios, the "after" points run once more with the restarted
process killed again, right after the first write of its recovery, and restarted once
more. Each run asserts:

* the victim really died at that point (``-SIGKILL``, last traced event = the point);
* after the restart both parties agree on one state (same version and balances, sync done),
  and it is the last state a party had confirmed before the crash, or that state plus the
  one operation that was in flight: nothing confirmed is lost;
* the channel still works (one more payment each way when it is still open) and settles;
* the ledger pays each party exactly its deposit-adjusted share of the last agreed state
  (``FUNDS - deposit + balance``), whether settled cooperatively or through a dispute; if no
  channel was left (the crash came before both signed version 0), nobody lost anything and a
  new channel opens and settles;
* nothing is left half-done: neither party holds a channel at the end.

The runs go a few at a time, each on its own ledger, accounts and database; a summary line
reports how many kill points were tried and how many passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from perun_sim import SimBackend, SimClock, SimLedger
from perun_sim.ledger import DisputePhase
from perun_sim.server import LedgerServer
from perun_tcp import TcpBus

from perun_core.channel.allocation import Allocation
from perun_core.channel.phase import Phase
from perun_core.channel.state import State
from perun_core.channel.types import Asset
from perun_core.client import Channel, Client, ClientConfig, LedgerChannelProposal
from perun_core.client.update import UpdateResponder, accept_incoming_payments
from perun_core.interfaces.wallet import Account
from perun_core.persistence.memory import MemoryPersister
from perun_core.plugins import load_plugins
from perun_core.testing.crash import CRASH_ENV, TRACE_ENV, CrashingPersister, CrashPoint, read_trace
from perun_core.testing.peer import PeerProcess, PeerProcessError

# Imported here, not in a test: pytest rewrites this module on import, and CPython 3.11 can
# fail rewriting inside a test's deep stack ("AST constructor recursion depth mismatch").
from perun_core.testing.persister import open_and_pay, params

pytestmark = pytest.mark.timeout(300)

FUNDS = 10_000
DEPOSIT = {"alice": 400, "victim": 300}
CHALLENGE = 60
CONCURRENCY = 4  # runs at a time: mostly waiting on sockets and timeouts; fine on 2 cores
ALICE_CONFIG = ClientConfig(update_timeout=3.0, proposal_timeout=3.0, sync_timeout=3.0)
VICTIM_UPDATE_TIMEOUT = 3.0
RECOVERY_CRASH = CrashPoint.parse("*:1:after")  # the second kill: after recovery's 1st write
MAX_RESTARTS = 3


@dataclass(frozen=True)
class Scenario:
    """A crash-free run and the victim's persistence events in it, in order.

    ``kill_from`` is the index of the first event that is a kill point (the scenarios that
    only vary the settlement share their earlier events with another scenario).
    ``sig_added`` never occurs: the client stores its own signature with the staged
    transaction (``staged``) and the peer's with the enabled one (``enabled``).
    """

    role: str  # the victim's role in opening: "proposer" or "responder"
    finalizer: str  # who proposes the final state: "victim" or "alice"
    events: tuple[tuple[str, int], ...]
    kill_from: int = 0
    recovery_crash: bool = False  # also kill the restarted process once (RECOVERY_CRASH)
    alice_rejects_final: bool = False  # the victim's settle() takes the dispute path


_OPEN_AS_RESPONDER = (
    ("channel_created", 1),  # v0 staged and signed (INIT_SIGNING), before the Acc leaves
    ("enabled", 1),  # v0 fully signed (FUNDING)
    ("phase_changed", 1),  # funded (ACTING)
    ("enabled", 2),  # Alice's payment accepted, before the Acc leaves
    ("staged", 1),  # own payment signed, before it is sent
    ("enabled", 3),  # own payment accepted by Alice
)
_OPEN_AS_PROPOSER = (
    ("channel_created", 1),  # v0 fully signed (FUNDING), before our v0 signature leaves
    ("phase_changed", 1),  # funded (ACTING)
    ("enabled", 1),  # Alice's payment accepted
    ("staged", 1),  # own payment signed
    ("enabled", 2),  # own payment accepted
)
SCENARIOS: dict[str, Scenario] = {
    "responder": Scenario(
        "responder",
        "alice",
        (
            *_OPEN_AS_RESPONDER,
            ("enabled", 4),  # Alice's final state accepted
            ("phase_changed", 2),  # WITHDRAWING
            ("channel_removed", 1),  # withdrawn
        ),
        recovery_crash=True,
    ),
    "proposer": Scenario(
        "proposer",
        "victim",
        (
            *_OPEN_AS_PROPOSER,
            ("staged", 2),  # own final state signed
            ("enabled", 3),  # final state accepted (FINAL)
            ("phase_changed", 2),  # WITHDRAWING
            ("channel_removed", 1),  # withdrawn
        ),
        recovery_crash=True,
    ),
    "responder-finalizing": Scenario(
        "responder",
        "victim",
        (
            *_OPEN_AS_RESPONDER,
            ("staged", 2),  # own final state signed
            ("enabled", 4),  # final state accepted (FINAL)
            ("phase_changed", 2),  # WITHDRAWING
            ("channel_removed", 1),  # withdrawn
        ),
        kill_from=len(_OPEN_AS_RESPONDER),
    ),
    "proposer-disputing": Scenario(
        "proposer",
        "victim",
        (
            *_OPEN_AS_PROPOSER,
            ("staged", 2),  # own final state signed (Alice will reject it)
            ("phase_changed", 2),  # rejected: discarded, its version burned (ACTING)
            ("phase_changed", 3),  # REGISTERING: our latest state goes to the ledger
            ("phase_changed", 4),  # REGISTERED
            ("phase_changed", 5),  # WITHDRAWING, after the challenge duration
            ("channel_removed", 1),  # concluded and withdrawn
        ),
        kill_from=len(_OPEN_AS_PROPOSER),
        alice_rejects_final=True,
    ),
    "responder-disputing": Scenario(
        "responder",
        "victim",
        (
            *_OPEN_AS_RESPONDER,
            ("staged", 2),  # own final state signed (Alice will reject it)
            ("phase_changed", 2),  # rejected: discarded, its version burned (ACTING)
            ("phase_changed", 3),  # REGISTERING
            ("phase_changed", 4),  # REGISTERED
            ("phase_changed", 5),  # WITHDRAWING, after the challenge duration
            ("channel_removed", 1),  # concluded and withdrawn
        ),
        kill_from=len(_OPEN_AS_RESPONDER),
        alice_rejects_final=True,
    ),
    "proposer-accepting-final": Scenario(
        "proposer",
        "alice",
        (
            *_OPEN_AS_PROPOSER,
            ("enabled", 3),  # Alice's final state accepted
            ("phase_changed", 2),  # WITHDRAWING
            ("channel_removed", 1),  # withdrawn
        ),
        kill_from=len(_OPEN_AS_PROPOSER),
    ),
}


@dataclass(frozen=True)
class Spec:
    """One run: a scenario, where the victim is killed (``None``: the dry run), and whether
    its restart is killed too."""

    scenario: str
    point: CrashPoint | None
    then: CrashPoint | None = None

    @property
    def id(self) -> str:
        then = f"+restart-{self.then}" if self.then else ""
        return f"{self.scenario}-{self.point or 'dry-run'}{then}"


def _specs() -> list[Spec]:
    out = []
    for name, sc in SCENARIOS.items():
        out.append(Spec(name, None))
        for event, n in sc.events[sc.kill_from :]:
            for when in ("before", "after"):
                out.append(Spec(name, CrashPoint.parse(f"{event}:{n}:{when}")))
    # Killing the recovery too, after each write of the scenario: on disk, "before write n"
    # is "after write n-1", so the "after" points reach every stored state.
    for name, sc in SCENARIOS.items():
        if sc.recovery_crash:
            for event, n in sc.events[sc.kill_from :]:
                point = CrashPoint.parse(f"{event}:{n}:after")
                out.append(Spec(name, point, RECOVERY_CRASH))
    return out


SPECS = _specs()


@dataclass
class Result:
    """What one run saw (``error`` is ``None`` when every assertion held)."""

    spec: Spec
    error: str | None = None
    killed_in: list[str] = field(default_factory=list)  # the steps during which it died
    outcome: list[str] = field(default_factory=list)  # what each recovery found
    disputes: int = 0  # ledger windows skipped (settled through the ledger)
    trace: list[tuple[str, int]] = field(default_factory=list)
    seconds: float = 0.0


class Died(Exception):
    """The victim process died during a step (a kill point was hit)."""


@dataclass
class Run:
    """The state of one run."""

    spec: Spec
    tmp: Path
    server: LedgerServer
    backend: SimBackend
    asset: Asset
    account: Account
    bus: TcpBus
    client: Client
    url: str
    result: Result
    victim: PeerProcess | None = None
    restarts: int = 0
    new_channels: asyncio.Queue[Channel] = field(default_factory=asyncio.Queue)
    ch: Channel | None = None  # Alice's end
    cid: bytes | None = None
    alice_task: asyncio.Future[Any] | None = None  # Alice's operation of the current step
    # Balances {alice, victim} of the last state a party confirmed, and the change to the
    # victim's balance of the operation in flight (None: no change, e.g. finalizing).
    confirmed: dict[str, int] | None = None
    in_doubt: int | None = None
    paid_on: bool = False

    @property
    def scenario(self) -> Scenario:
        return SCENARIOS[self.spec.scenario]

    @property
    def alice_idx(self) -> int:
        return 0 if self.scenario.role == "responder" else 1

    def balances(self, ch: Channel) -> dict[str, int]:
        row = ch.state.balances[0]
        return {"alice": row[self.alice_idx], "victim": row[1 - self.alice_idx]}

    def view_balances(self, view: dict[str, Any]) -> dict[str, int]:
        row = view["balances"][0]
        return {"alice": row[self.alice_idx], "victim": row[1 - self.alice_idx]}

    def trace_path(self, restart: int) -> Path:
        return self.tmp / f"trace{restart}"

    async def spawn(self, crash: CrashPoint | None, listen: str) -> PeerProcess:
        """Start the victim (the first time or again) on its database."""
        env = {TRACE_ENV: str(self.trace_path(self.restarts))}
        if crash is not None:
            env[CRASH_ENV] = str(crash)
        victim = await PeerProcess.spawn(
            ledger_url=self.url,
            peer=self.account.address,
            peer_endpoint=str(self.bus.endpoints[0]),
            listen=listen,
            funds=FUNDS if self.restarts == 0 else 0,
            seed=f"victim-{self.spec.id}",
            persister="leveldb",
            db=str(self.tmp / "victim.db"),
            update_timeout=VICTIM_UPDATE_TIMEOUT,
            module="perun_core.testing.crash",
            env=env,
        )
        self.bus.add_peer(victim.address, victim.endpoint)
        self.victim = victim
        return victim

    def vcall(self) -> PeerProcess:
        assert self.victim is not None
        return self.victim


# --- steps ------------------------------------------------------------------------------------


async def _step(run: Run, name: str, body: Callable[[], Awaitable[None]]) -> None:
    """Run one step; raise :class:`Died` if the victim dies meanwhile."""
    victim = run.vcall()
    if victim.proc.returncode is not None:
        raise Died(name)
    task = asyncio.ensure_future(body())
    death = asyncio.ensure_future(victim.proc.wait())
    try:
        await asyncio.wait({task, death}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()  # Alice's own operation (alice_task) runs on; recovery awaits it
            with contextlib.suppress(BaseException):
                await task
            raise Died(name)
        exc = task.exception()
        if exc is not None:
            # A command that failed because the child just died counts as the death.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(death), 3)
            if death.done():
                raise Died(name)
            raise exc
    finally:
        death.cancel()


async def _open(run: Run) -> None:
    victim = run.vcall()
    run.in_doubt = None
    run.confirmed = dict(DEPOSIT)  # the initial state, once both signed it
    if run.scenario.role == "responder":
        run.alice_task = asyncio.ensure_future(
            run.client.propose_channel(
                LedgerChannelProposal(
                    peer=victim.address,
                    allocation=Allocation((run.asset,), ((DEPOSIT["alice"], DEPOSIT["victim"]),)),
                    challenge_duration=CHALLENGE,
                )
            )
        )
        seen = await victim.call("channel", timeout=20)
        ch = await asyncio.shield(run.alice_task)  # a dying step must not cancel it
    else:
        seen = await victim.call(
            "propose",
            mine=DEPOSIT["victim"],
            theirs=DEPOSIT["alice"],
            challenge_duration=CHALLENGE,
        )
        ch = await asyncio.wait_for(run.new_channels.get(), 20)
    assert seen["id"] == ch.id.hex() and seen["version"] == 0
    run.ch, run.cid = ch, ch.id


async def _alice_pays(run: Run, amount: int) -> None:
    assert run.ch is not None
    run.in_doubt = amount
    run.alice_task = asyncio.ensure_future(run.ch.send(amount))
    await asyncio.shield(run.alice_task)
    run.confirmed, run.in_doubt = run.balances(run.ch), None


async def _victim_pays(run: Run, amount: int) -> None:
    assert run.ch is not None
    run.in_doubt = -amount
    seen = await run.vcall().call("pay", id=run.ch.id.hex(), amount=amount)
    run.confirmed, run.in_doubt = run.view_balances(seen), None


async def _alice_finalizes(run: Run) -> None:
    assert run.ch is not None
    run.in_doubt = None
    run.alice_task = asyncio.ensure_future(run.ch.update(lambda s: s.finalized()))
    await asyncio.shield(run.alice_task)


async def _victim_settles(run: Run) -> None:
    assert run.ch is not None
    run.in_doubt = None
    seen = await _drive(run, run.vcall().call("settle", id=run.ch.id.hex(), timeout=40))
    assert seen["phase"] == "WITHDRAWN", seen


async def _alice_settles(run: Run) -> None:
    assert run.ch is not None
    await _drive(run, run.ch.settle())
    assert run.ch.phase == Phase.WITHDRAWN


def _reject_final(ch: Channel, current: State, proposed: State, r: UpdateResponder) -> Any:
    """Alice's update handler in the dispute scenarios: payments yes, settling no."""
    if proposed.is_final:
        return r.reject("not settling now")
    return accept_incoming_payments(ch, current, proposed, r)


async def _scenario(run: Run) -> None:
    """The whole scenario (raises :class:`Died` when the victim dies)."""
    await _step(run, "open", lambda: _open(run))
    await _step(run, "alice pays", lambda: _alice_pays(run, 3))
    await _step(run, "victim pays", lambda: _victim_pays(run, 5))
    if run.scenario.finalizer == "alice":
        await _step(run, "alice finalizes", lambda: _alice_finalizes(run))
    await _step(run, "victim settles", lambda: _victim_settles(run))
    await _step(run, "alice settles", lambda: _alice_settles(run))


async def _drive(run: Run, work: Awaitable[Any], limit: float = 40.0) -> Any:
    """Await ``work``; whenever a dispute window runs on the ledger, skip it (manual clock)."""
    task = asyncio.ensure_future(work)
    deadline = time.monotonic() + limit
    ledger = run.server.ledger
    try:
        while not task.done():
            if time.monotonic() > deadline:
                raise AssertionError(f"not done within {limit}s")
            d = ledger.dispute(run.cid) if run.cid is not None else None
            now = ledger.clock.now()
            if d is not None and d.phase != DisputePhase.CONCLUDED and now < d.timeout:
                await run.backend.advance_time(d.timeout - now)
                run.result.disputes += 1
            await asyncio.wait({task}, timeout=0.05)
        return task.result()
    finally:
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieved: the caller was cancelled, the victim died


# --- recovery ---------------------------------------------------------------------------------


def _alice_synced(ch: Channel) -> bool:
    return ch.synced


async def _settle_views(run: Run, limit: float = 20.0) -> tuple[str, dict[str, Any] | None]:
    """Wait until Alice and the restarted victim are in a stable, consistent situation.

    Returns ``(kind, victim's view)`` with kind ``"none"`` (no channel was funded: none on
    the victim's side, at most a half-created one on Alice's), ``"live"`` (both hold the
    channel at the same state, sync done) or ``"settled"`` (the channel is settled on the
    ledger and the victim has withdrawn and removed it; Alice may still have to withdraw).
    """
    ledger = run.server.ledger
    deadline = time.monotonic() + limit
    last = ""
    stable = 0
    while True:
        try:
            listed = (await run.vcall().call("channels"))["channels"]
        except PeerProcessError:
            raise Died("recovery") from None
        views = {v["id"]: v for v in listed}
        chans = {c.id: c for c in run.client.channels}
        cid = run.cid
        if cid is None:
            known = [c for c in chans.values() if c.phase != Phase.INIT_SIGNING]
            cid = known[0].id if known else next(iter(bytes.fromhex(i) for i in views), None)
        a = chans.get(cid) if cid is not None else None
        if a is None and run.ch is not None and run.ch.id == cid:
            a = run.ch  # withdrawn and forgotten by Alice's client already
        v = views.get(cid.hex()) if cid is not None else None
        kind = ""
        if not views and (a is None or a.phase == Phase.INIT_SIGNING):
            kind = "none"
        elif cid is not None and not views and ledger.is_settled(run.asset, cid):
            kind = "settled"
        elif (
            a is not None
            and v is not None
            and v["synced"]
            and _alice_synced(a)
            and v["version"] == a.state.version
            and run.view_balances(v) == run.balances(a)
        ):
            kind = "live"
        if kind:
            stable = stable + 1 if kind == last else 1
            last = kind
            if stable >= 3:  # unchanged over three polls: nothing is still in motion
                if kind != "none" and a is not None:
                    run.ch, run.cid = a, a.id
                return kind, v
        else:
            stable, last = 0, ""
        if time.monotonic() > deadline:
            a_desc = f"{a!r} synced={_alice_synced(a)}" if a is not None else "none"
            raise AssertionError(
                f"no consistent state after the restart: alice {a_desc}, victim {views}"
            )
        await asyncio.sleep(0.05)


async def _restart(run: Run) -> None:
    """The victim died by the kill: check that, and start it again on its database."""
    old = run.vcall()
    code = await old.proc.wait()
    assert code == -signal.SIGKILL, f"the victim exited with {code}, not by the kill"
    point = run.spec.point if run.restarts == 0 else run.spec.then
    assert point is not None, "killed, but no kill point was set for this start"
    trace = read_trace(run.trace_path(run.restarts))
    if run.restarts == 0:
        run.result.trace = trace
    if point.event == "*":
        assert len(trace) == point.n, f"killed after {trace}, expected the write #{point.n}"
    else:
        assert trace and trace[-1] == (point.event, point.n), f"killed after {trace[-1:]}"
    await old.close()
    for _ in range(500):  # Alice's bus notices the dead connection
        if old.address not in run.bus.connected_peers:
            break
        await asyncio.sleep(0.01)
    run.restarts += 1
    crash = run.spec.then if run.restarts == 1 else None
    try:
        await run.spawn(crash, listen=old.endpoint)
    except PeerProcessError:
        if crash is None:
            raise
        # Killed while restoring, before it reported ready: check and start once more.
        run.result.killed_in.append("restore")
        await _restart(run)


async def _recover(run: Run) -> None:
    """Restart the killed victim (again, if it is killed again) and finish the channel."""
    while True:
        if run.restarts >= MAX_RESTARTS:
            raise AssertionError(f"killed more often than planned: {run.result.killed_in}")
        await _restart(run)
        try:
            await _finish(run)
            return
        except Died as died:
            run.result.killed_in.append(str(died.args[0]))


async def _finish(run: Run) -> None:
    """Drive the channel to its end after a restart (raises :class:`Died` on a kill)."""
    result = run.result
    # Alice's operation of the interrupted step ends by itself: answered after the
    # restart, resolved by the sync, or timed out.
    task = run.alice_task
    if task is not None and not task.done():

        async def settle_down() -> None:
            with contextlib.suppress(Exception):
                await _drive(run, asyncio.shield(task), limit=20)

        await _step(run, "recovery", settle_down)  # the restarted victim may die meanwhile
    kind, view = await _settle_views(run)
    result.outcome.append(kind)
    ledger = run.server.ledger
    if kind == "none":
        # Nothing was funded: every account is as it was. Then the victim still works.
        assert ledger.balance_of(run.account.address, run.asset) == FUNDS
        assert ledger.balance_of(run.vcall().address, run.asset) == FUNDS
        run.ch = run.cid = None
        run.confirmed = run.in_doubt = None
        await _scenario(run)
        result.outcome.append("new channel")
    else:
        ch = run.ch
        assert ch is not None and run.confirmed is not None
        agreed = run.balances(ch)
        allowed = [run.confirmed]
        if run.in_doubt is not None:
            allowed.append(
                {
                    "alice": run.confirmed["alice"] - run.in_doubt,
                    "victim": run.confirmed["victim"] + run.in_doubt,
                }
            )
        assert agreed in allowed, f"agreed state {agreed} is none of {allowed}: lost something"
        run.confirmed, run.in_doubt = agreed, None
        both_acting = ch.phase == Phase.ACTING and view is not None and view["phase"] == "ACTING"
        if kind == "live" and both_acting and not run.paid_on:
            await _step(run, "alice pays on", lambda: _alice_pays(run, 2))
            await _step(run, "victim pays on", lambda: _victim_pays(run, 1))
            run.paid_on = True
            result.outcome.append("paid on")
        if kind == "live":
            await _step(run, "victim settles", lambda: _victim_settles(run))
        await _step(run, "alice settles", lambda: _alice_settles(run))
    assert run.confirmed is not None
    _check_ledger(run, run.confirmed)


def _check_ledger(run: Run, expected: dict[str, int]) -> None:
    victim = run.vcall()
    assert run.cid is not None
    ledger = run.server.ledger
    got = {
        "alice": ledger.balance_of(run.account.address, run.asset),
        "victim": ledger.balance_of(victim.address, run.asset),
    }
    want = {who: FUNDS - DEPOSIT[who] + expected[who] for who in ("alice", "victim")}
    assert got == want, f"ledger balances {got}, expected {want}"
    for addr in (run.account.address, victim.address):
        assert ledger.holdings_of(run.asset, run.cid, addr) == 0


async def _nothing_left(run: Run) -> None:
    """Neither party holds a channel any more (a half-created one is dropped by sync)."""
    for _ in range(100):
        left = (await run.vcall().call("channels"))["channels"]
        if not left and not run.client.channels:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"left over: alice {run.client.channels}, victim {left}")


# --- one run ----------------------------------------------------------------------------------


async def _one(spec: Spec, tmp: Path) -> Result:
    result = Result(spec)
    t0 = time.monotonic()
    async with LedgerServer(SimLedger(clock=SimClock.manual(0))) as server:
        url = await server.listen_tcp("127.0.0.1", 0)
        backend = SimBackend(server.ledger)
        account = backend.wallet().add_seed(f"alice-{spec.id}".encode())
        asset = backend.default_assets()[0]
        await backend.faucet(account.address, asset, FUNDS)
        bus = TcpBus.from_backend(account, backend, handshake_timeout=5.0, close_timeout=1.0)
        await bus.listen("127.0.0.1", 0)
        client = Client(
            account=account,
            backend=backend,
            bus=bus,
            funder=backend.funder(account),
            adjudicator=backend.adjudicator(account),
            config=ALICE_CONFIG,
        )
        run = Run(spec, tmp, server, backend, asset, account, bus, client, url, result)
        client.on_proposal(lambda p, r: r.accept())
        client.on_new_channel(run.new_channels.put_nowait)
        if run.scenario.alice_rejects_final:
            client.on_update_proposal(_reject_final)
        try:
            await client.start()
            await run.spawn(spec.point, listen="tcp://127.0.0.1:0")
            try:
                await _scenario(run)
            except Died as died:
                result.killed_in.append(str(died.args[0]))
                await _recover(run)
            else:
                assert run.confirmed is not None
                _check_ledger(run, run.confirmed)
                result.trace = read_trace(run.trace_path(0))
                if spec.point is not None:
                    raise AssertionError(f"the kill point was never reached: {result.trace}")
                assert result.trace == list(run.scenario.events), result.trace
                result.outcome.append("completed")
            await _nothing_left(run)
            if spec.then is not None and run.restarts < 2:
                result.outcome.append("(recovery made no write)")
        except Exception as e:  # noqa: BLE001 - the campaign records any failure of a run with its traceback
            result.error = "".join(traceback.format_exception(e, limit=-6))
        finally:
            if run.victim is not None:
                await run.victim.close()
            await client.close()
            await bus.close()
            await backend.close()
    result.seconds = time.monotonic() - t0
    return result


async def _campaign(specs: list[Spec], root: Path) -> dict[str, Result]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int, spec: Spec) -> Result:
        async with gate:
            tmp = root / f"run{i}"
            tmp.mkdir()
            return await _one(spec, tmp)

    results = await asyncio.gather(*(one(i, s) for i, s in enumerate(specs)))
    return {r.spec.id: r for r in results}


# --- pytest -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def campaign(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Result]]:
    """Runs every selected kill point once (concurrently) and reports the totals."""
    if "leveldb" not in load_plugins().persisters:
        pytest.skip("the crash campaign needs perun-leveldb")
    wanted = {
        item.callspec.params["spec"].id
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_kill_point" and item.module is request.module
    }
    specs = [s for s in SPECS if s.id in wanted]
    t0 = time.monotonic()
    results = asyncio.run(_campaign(specs, tmp_path_factory.mktemp("crash")))
    seconds = time.monotonic() - t0
    runs = [r for r in results.values() if r.spec.point is not None]
    kills = sum(len(r.killed_in) for r in runs)
    passed = sum(1 for r in runs if r.error is None)
    outcomes: dict[str, int] = {}
    for r in runs:
        key = " → ".join(r.outcome) if r.error is None else "FAILED"
        outcomes[key] = outcomes.get(key, 0) + 1
    line = (
        f"crash campaign: {len(runs)} kill points tried ({kills} kills incl. restarts), "
        f"{passed} passed, {sum(r.disputes for r in runs)} dispute windows skipped, "
        f"{len(results) - len(runs)} dry runs, {seconds:.1f}s; outcomes: "
        + "; ".join(f"{k}: {n}" for k, n in sorted(outcomes.items()))
    )
    # Shown in every run (output capture paused), also with -q.
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(line)
    else:
        print(line)
    yield results


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_kill_point(campaign: dict[str, Result], spec: Spec) -> None:
    result = campaign[spec.id]
    if result.error is not None:
        pytest.fail(
            f"{spec.id} (killed in: {result.killed_in}; victim's events {result.trace}):\n"
            f"{result.error}",
            pytrace=False,
        )


def test_every_persistence_step_is_a_kill_point() -> None:
    """Each event of each scenario is a kill point, before and after the write."""
    for name, sc in SCENARIOS.items():
        points = {str(s.point) for s in SPECS if s.scenario == name and s.point and not s.then}
        kills = sc.events[sc.kill_from :]
        assert points == {f"{e}:{n}:{w}" for e, n in kills for w in ("before", "after")}
    # Together the scenarios cover what the client writes in a channel's life.
    covered = {e for sc in SCENARIOS.values() for e, _ in sc.events[sc.kill_from :]}
    assert covered == {"channel_created", "staged", "enabled", "phase_changed", "channel_removed"}
    # Both roles, both ways of reaching the final state, and the dispute path in both roles.
    assert {sc.role for sc in SCENARIOS.values() if sc.alice_rejects_final} == {
        "proposer",
        "responder",
    }
    assert {(sc.role, sc.finalizer) for sc in SCENARIOS.values()} == {
        (r, f) for r in ("proposer", "responder") for f in ("victim", "alice")
    }


# --- the injection point itself (in process) --------------------------------------------------


class _Killed(Exception):
    pass


def _raise() -> None:
    raise _Killed


@pytest.mark.parametrize(
    ("spec", "stored"),
    [
        # (crash point, what the store holds afterwards: phase, version of staged/current)
        ("channel_created:1:before", None),
        ("*:3:after", (Phase.FUNDING, None, 0)),
        ("sig_added:2:before", (Phase.SIGNING, 1, 0)),  # v1 staged with our signature only
        ("sig_added:2:after", (Phase.SIGNING, 1, 0)),  # ... and with the peer's
        ("enabled:2:after", (Phase.ACTING, None, 1)),
    ],
)
async def test_crashing_persister_stops_exactly_at_its_point(
    spec: str, stored: tuple[Phase, int | None, int] | None, tmp_path: Path
) -> None:

    inner = MemoryPersister()
    trace = tmp_path / "trace"
    point = CrashPoint.parse(spec)
    store = CrashingPersister(inner, point, trace=str(trace), kill=_raise)
    with pytest.raises(_Killed):
        await open_and_pay(store, params(1))
    events = read_trace(trace)
    # The trace holds every event that started, the crashing one last.
    if point.event == "*":
        assert len(events) == point.n
    else:
        assert events[-1] == (point.event, point.n)
    rec = await inner.restore_channel(params(1).id)
    if stored is None:
        assert rec is None
        return
    assert rec is not None
    phase, staged, current = stored
    assert rec.phase == phase
    assert (rec.staging.state.version if rec.staging else None) == staged
    assert rec.current is not None and rec.current.state.version == current
    if spec.startswith("sig_added:2"):
        assert rec.staging is not None
        assert (rec.staging.sigs[1] is not None) == (point.when == "after")
    await store.close()


def test_crash_points_parse_and_refuse_nonsense() -> None:
    assert str(CrashPoint.parse("enabled:3:after")) == "enabled:3:after"
    assert CrashPoint.parse("*:1:before") == CrashPoint("*", 1, "before")
    for bad in ("enabled:3", "enabled:x:after", "enable:1:after", "enabled:0:after", "a:1:during"):
        with pytest.raises(ValueError):
            CrashPoint.parse(bad)
