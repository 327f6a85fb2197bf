"""The adversarial campaign: Mallory against an honest Alice, seeded and repeatable.

Mallory uses only what any peer has: her own client and keys, the wire codec (her messages
go out on the bus under her address) and the adjudicator. Each run opens a channel, makes a
few payments, then plays one scenario at random:

``stale_registration``   Mallory registers an older state; Alice's watcher must refute.
``silent_update``        Mallory goes silent in the middle of Alice's update.
``silent_settle``        Mallory goes silent during Alice's final update, then concludes or
                         registers an older state.
``hostile_messages``     Mallory sends a handful of the :data:`~perun_core.testing.hostile.HOSTILE`
                         messages; both then pay each other and settle.
``register_during_settle``  Mallory registers while answering Alice's final update.
``concurrent``           both pay at once, several rounds.
``crash``                Alice's process dies at a random moment; her restarted client goes on.
``app_force``            a second channel with the payment app: Mallory registers it (maybe an
                         older state), then tries bogus force moves (taking Alice's funds,
                         skipping versions, signed by Alice's key) and maybe a valid one.
``sub_channel``          either opens a sub-channel; both pay in it; then Mallory registers
                         the tree with an older sub-channel state, goes silent, or
                         cooperates while Alice settles the sub-channel and the channel.

A run counts *funds lost* when Alice withdraws less than her balance in the worst state she
signed that could legally be the outcome (her latest fully signed state, or a newer one she
signed), a *hang* when it does not finish in time, and *untyped errors* for every exception
that reached Alice's API or error callback and is not a :class:`~perun_core.errors.PerunError`.

Run it from a source tree: ``python tests/adversarial/campaign.py --runs 2000 --seed 1`` (sim;
``--backend eth`` starts anvil); it prints one JSON object. A backend plugin runs
:func:`run_campaign` on its own ledger.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from perun_core.channel.allocation import Allocation
from perun_core.channel.machine import IN_DISPUTE
from perun_core.channel.phase import Phase
from perun_core.channel.state import SignedState, State, Transaction
from perun_core.client import Channel, ClientConfig, LedgerChannelProposal
from perun_core.errors import PerunError
from perun_core.interfaces.adjudicator import AdjudicatorReq
from perun_core.interfaces.chain import ChainBackend
from perun_core.persistence.memory import MemoryPersister
from perun_core.testing.faults import FaultyBus
from perun_core.testing.hostile import HOSTILE, Stage
from perun_core.testing.parties import PartyFactory, open_channel
from perun_core.testing.waiting import until

CHALLENGE = 30
ALICE = ClientConfig(update_timeout=0.4, proposal_timeout=5, sync_timeout=1.0)
MALLORY = ClientConfig(
    update_timeout=0.4, proposal_timeout=5, sync_timeout=1.0, watch=False, auto_settle=False
)
RUN_TIMEOUT = 60.0


@dataclass
class RunResult:
    """The outcome of one run."""

    seed: int
    scenario: str
    passed: bool = False
    funds_lost: bool = False
    hang: bool = False
    untyped: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass
class Summary:
    """Counts over a campaign."""

    runs: int = 0
    passed: int = 0
    funds_lost: int = 0
    hangs: int = 0
    untyped_errors: int = 0
    by_scenario: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def add(self, r: RunResult) -> None:
        """Count one run."""
        self.runs += 1
        self.passed += r.passed
        self.funds_lost += r.funds_lost
        self.hangs += r.hang
        self.untyped_errors += len(r.untyped)
        self.by_scenario[r.scenario] += 1
        if not r.passed and len(self.failures) < 20:
            self.failures.append({"seed": r.seed, "scenario": r.scenario, "detail": r.detail[:300]})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {
            "runs": self.runs,
            "passed": self.passed,
            "funds_lost": self.funds_lost,
            "hangs": self.hangs,
            "untyped_errors": self.untyped_errors,
            "by_scenario": dict(sorted(self.by_scenario.items())),
            "failures": self.failures,
        }


class _Run:
    """One run's parties, channel and bookkeeping."""

    def __init__(self, backend: ChainBackend, asset: Any, rng: random.Random, res: RunResult):
        self.backend = backend
        self.asset = asset
        self.rng = rng
        self.res = res
        self.bus = FaultyBus()
        self.f = PartyFactory(backend, self.bus)
        self.history: list[Transaction] = []  # every fully signed state Mallory holds

    async def setup(self) -> None:
        self.alice = await self.f.make("alice", config=ALICE, persister=MemoryPersister())
        self.mallory = await self.f.make("mallory", config=MALLORY)
        self.alice.client.on_error(self.on_alice_error)
        self.start = await self._alice_balance()
        a, m = self.rng.randint(1, 60), self.rng.randint(1, 60)
        if self.rng.random() < 0.5:
            self.ch_a, self.ch_m = await open_channel(
                self.alice, self.mallory, self.asset, (a, m), challenge_duration=CHALLENGE
            )
        else:
            self.ch_m, self.ch_a = await open_channel(
                self.mallory, self.alice, self.asset, (m, a), challenge_duration=CHALLENGE
            )
        self.deposit = a
        self.record()
        for _ in range(self.rng.randint(1, 6)):
            await self.pay_random()

    def on_alice_error(self, e: BaseException) -> None:
        if not isinstance(e, PerunError):
            self.res.untyped.append(f"callback: {type(e).__name__}: {e}")

    async def _alice_balance(self) -> int:
        return int(await self.backend.balance_of(self.alice.account.address, self.asset))

    def record(self) -> None:
        tx = self.ch_m.transaction
        if tx is not None and (not self.history or self.history[-1] != tx):
            self.history.append(tx)

    async def call(self, aw: Awaitable[Any]) -> Any:
        """Await one of Alice's API calls; a typed error is an answer, anything else is not."""
        try:
            return await aw
        except PerunError as e:
            return e
        except TimeoutError as e:
            return e
        except Exception as e:  # noqa: BLE001 - the campaign counts untyped errors instead of stopping
            self.res.untyped.append(f"{type(e).__name__}: {e}")
            return e

    async def pay_random(self) -> None:
        a_idx = self.ch_a.idx
        bal = self.ch_a.balances[0]
        if self.rng.random() < 0.5 and bal[a_idx] > 0:
            await self.call(self.ch_a.send(self.rng.randint(1, bal[a_idx])))
        elif bal[1 - a_idx] > 0:
            with suppress(PerunError):
                await self.ch_m.send(self.rng.randint(1, bal[1 - a_idx]))
        self.record()

    def alice_share(self, st: State) -> int:
        return int(st.balances[0][self.ch_a.idx])

    def worst_outcome(self) -> int:
        """Alice's balance in the worst state that may legally be the outcome."""
        cands = [self.ch_a.state, *self.ch_a.enforceable_states]
        staged = self.ch_a.machine.staging
        if staged is not None and staged.sigs[self.ch_a.idx] is not None:
            cands.append(staged.state)
        return min(self.alice_share(s) for s in cands)

    async def settle_alice(self, ch: Channel | None = None) -> None:
        """Settle Alice's end, moving ledger time on while it waits for the ledger."""
        ch = ch or self.ch_a
        res = await self.with_ledger_time(self.call(ch.settle()))
        if ch.phase != Phase.WITHDRAWN:
            # auto-settle may still be finishing; give it a moment, then try once more
            try:
                await ch.wait_phase(Phase.WITHDRAWN, timeout=3)
            except TimeoutError:
                await self.backend.advance_time(CHALLENGE + 1)
                res = await self.call(ch.settle())
        if ch.phase != Phase.WITHDRAWN:
            raise AssertionError(f"Alice's channel not withdrawn ({ch.phase.name}): {res!r}")

    async def with_ledger_time(self, aw: Awaitable[Any]) -> Any:
        """Await ``aw``, moving ledger time past a challenge window whenever it waits a while
        (a dispute on the manual-clock ledger ends only when time moves)."""
        task = asyncio.ensure_future(aw)
        for _ in range(40):
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                break
            await self.backend.advance_time(CHALLENGE + 1)
        return await task

    async def check_outcome(self, floor: int) -> None:
        got = await self._alice_balance() - (self.start - self.deposit)
        if got < floor:
            self.res.funds_lost = True
            raise AssertionError(f"Alice withdrew {got}, at least {floor} was hers")

    async def close(self) -> None:
        await self.f.close()


Scenario = Callable[[_Run], Awaitable[None]]


async def stale_registration(r: _Run) -> None:
    for _ in range(r.rng.randint(1, 4)):
        await r.pay_random()
    if len(r.history) < 2:
        await r.call(r.ch_a.send(1)) if r.ch_a.balances[0][r.ch_a.idx] else None
        r.record()
    stale = r.rng.choice(r.history[:-1]) if len(r.history) > 1 else r.history[0]
    floor = r.worst_outcome()
    adj = r.backend.adjudicator(r.mallory.account)
    with suppress(PerunError):
        await adj.register(AdjudicatorReq(r.ch_m.params, stale, r.ch_m.idx))
    await r.settle_alice()
    await r.check_outcome(floor)


async def silent_update(r: _Run) -> None:
    r.bus.drop_all(lambda e: e.sender == r.mallory.address)
    if r.ch_a.balances[0][r.ch_a.idx] > 0:
        await r.call(r.ch_a.send(1))
    floor = r.worst_outcome()
    await r.settle_alice()
    await r.check_outcome(floor)


async def silent_settle(r: _Run) -> None:
    # Mallory accepts the final state, but Alice never hears it; then she acts on chain.
    r.bus.drop_all(lambda e: e.sender == r.mallory.address)
    task = asyncio.ensure_future(r.call(r.ch_a.settle()))
    try:
        await r.ch_m.wait_phase(Phase.FINAL, timeout=2)
        final = True
    except TimeoutError:
        final = False
    floor = min(r.worst_outcome(), r.alice_share(r.ch_m.state))
    adj = r.backend.adjudicator(r.mallory.account)
    try:
        if final and r.rng.random() < 0.6:
            await adj.withdraw(AdjudicatorReq(r.ch_m.params, r.ch_m.transaction, r.ch_m.idx))  # type: ignore[arg-type]
        elif len(r.history) > 1:
            await adj.register(AdjudicatorReq(r.ch_m.params, r.history[0], r.ch_m.idx))
    except PerunError:
        pass
    await r.with_ledger_time(task)
    if r.ch_a.phase != Phase.WITHDRAWN:
        await r.settle_alice()
    await r.check_outcome(floor)


async def hostile_messages(r: _Run) -> None:
    stage = Stage(
        backend=r.backend,
        mallory=r.mallory.account,
        mallory_addr=r.mallory.address,
        alice_addr=r.alice.address,
        eve=r.backend.wallet().new_account(),
        tx=r.ch_m.transaction,  # type: ignore[arg-type]
        old=r.history[0],
        m_idx=r.ch_m.idx,
    )
    kinds = r.rng.sample(sorted(HOSTILE), k=r.rng.randint(1, 6))
    r.res.detail = ",".join(kinds)
    before = r.ch_a.state
    for kind in kinds:
        try:
            envs = HOSTILE[kind](stage)
        except PerunError:
            continue  # not constructible in this channel (e.g. a payment from an empty side)
        for env in envs:
            # The bus itself may refuse one (e.g. nobody subscribed for a stranger).
            with suppress(PerunError):
                await r.bus.publish(env)
        await asyncio.sleep(0.02)
        if r.ch_a.state != before:
            raise AssertionError(f"{kind} changed Alice's state")
    await asyncio.sleep(0.1)
    # Both can still pay (the channel may need a sync round first) and settle cooperatively.
    for ch in (r.ch_a, r.ch_m):
        if ch.balances[0][ch.idx] > 0:
            res = await r.call(ch.send(1))
            if isinstance(res, BaseException):
                res = await r.call(ch.send(1))
                if isinstance(res, BaseException):
                    raise AssertionError(f"payment after {kinds} failed: {res!r}")
    floor = r.worst_outcome()
    await r.settle_alice()
    await r.check_outcome(floor)


async def register_during_settle(r: _Run) -> None:
    adj = r.backend.adjudicator(r.mallory.account)

    async def register_instead(ch: Any, cur: Any, new: Any, responder: Any) -> None:
        with suppress(PerunError):
            await adj.register(AdjudicatorReq(ch.params, ch.transaction, ch.idx))
        responder.reject("registered instead")

    r.mallory.client.on_update_proposal(register_instead)
    floor = r.worst_outcome()
    await r.settle_alice()
    await r.check_outcome(floor)


async def concurrent(r: _Run) -> None:
    for _ in range(r.rng.randint(2, 6)):
        a_ok = r.ch_a.balances[0][r.ch_a.idx] > 0
        m_ok = r.ch_m.balances[0][r.ch_m.idx] > 0
        jobs: list[Awaitable[Any]] = []
        if a_ok:
            jobs.append(r.call(r.ch_a.send(1)))
        if m_ok:
            jobs.append(_quiet(r.ch_m.send(1)))
        await asyncio.gather(*jobs)
        await asyncio.sleep(0.01)
        if r.ch_a.state != r.ch_m.state and r.ch_a.synced and r.ch_m.synced:
            raise AssertionError("the parties hold different states")
    floor = r.worst_outcome()
    await r.settle_alice()
    await r.check_outcome(floor)


async def crash(r: _Run) -> None:
    # Alice's process dies at a random moment of a payment; a new client restores.
    if r.ch_a.balances[0][r.ch_a.idx] > 0:
        task = asyncio.ensure_future(r.call(r.ch_a.send(1)))
        await asyncio.sleep(r.rng.choice([0, 0, 0.001, 0.003, 0.01]))
    else:
        task = None
    await r.alice.client.close()
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    alice2 = await r.f.make(
        "alice", config=ALICE, account=r.alice.account, persister=r.alice.persister
    )
    alice2.client.on_error(r.on_alice_error)
    ch = await alice2.next_channel()
    r.ch_a = ch
    for _ in range(100):
        if ch.synced:
            break
        await asyncio.sleep(0.02)
    floor = r.worst_outcome()
    await r.settle_alice(ch)
    await r.check_outcome(floor)


async def sub_channel(r: _Run) -> None:
    a_idx, m_idx = r.ch_a.idx, r.ch_m.idx
    free = r.ch_a.balances[0]
    shares = [0, 0]
    shares[a_idx] = r.rng.randint(0, free[a_idx])
    shares[m_idx] = r.rng.randint(0, free[m_idx])
    if sum(shares) == 0:
        shares[a_idx if free[a_idx] else m_idx] = 1 if max(free) else 0
    if sum(shares) == 0:
        await r.settle_alice()
        await r.check_outcome(r.worst_outcome())
        return
    if r.rng.random() < 0.5:
        opened = await r.call(r.ch_a.propose_sub_channel([shares]))
        if not isinstance(opened, Channel):
            raise AssertionError(f"Alice could not open a sub-channel: {opened!r}")
        sub_a, sub_m = opened, await _announced(r.mallory, opened.id)
    else:
        sub_m = await r.ch_m.propose_sub_channel([shares])
        sub_a = await _announced(r.alice, sub_m.id)
    r.record()
    subs = [sub_m.transaction]
    for _ in range(r.rng.randint(0, 4)):
        bal = sub_a.balances[0]
        if r.rng.random() < 0.5 and bal[a_idx] > 0:
            await r.call(sub_a.send(r.rng.randint(1, bal[a_idx])))
        elif bal[m_idx] > 0:
            with suppress(PerunError):
                await sub_m.send(r.rng.randint(1, bal[m_idx]))
        subs.append(sub_m.transaction)
    ending = r.rng.choice(["stale_sub", "silent", "cooperate"])
    r.res.detail = ending
    sub_floor = min(int(st.balances[0][a_idx]) for st in (sub_a.state, *sub_a.enforceable_states))
    floor = r.worst_outcome() + sub_floor
    if ending == "stale_sub" and r.ch_m.transaction is not None and subs[0] is not None:
        adj = r.backend.adjudicator(r.mallory.account)
        stale = {sub_m.id: SignedState.from_tx(sub_m.params, r.rng.choice(subs[:-1] or subs))}  # type: ignore[arg-type]
        with suppress(PerunError):
            await adj.register(AdjudicatorReq(r.ch_m.params, r.ch_m.transaction, m_idx), stale)
    elif ending == "silent":
        r.bus.drop_all(lambda e: e.sender == r.mallory.address)
    res = await r.with_ledger_time(r.call(sub_a.settle()))
    if sub_a.phase != Phase.WITHDRAWN:
        raise AssertionError(f"Alice's sub-channel not withdrawn ({sub_a.phase.name}): {res!r}")
    await r.settle_alice()
    await r.check_outcome(floor)


async def app_force(r: _Run) -> None:
    pay = r.backend.payment_app_id()
    if pay is None:  # a backend without the payment app: the plain dispute instead
        await stale_registration(r)
        return
    a, m = r.rng.randint(1, 40), r.rng.randint(1, 40)
    prop = LedgerChannelProposal(
        peer=r.mallory.address,
        allocation=Allocation((r.asset,), ((a, m),)),
        challenge_duration=CHALLENGE,
        app=pay,
    )
    app_a = await r.alice.client.propose_channel(prop)
    app_m = await _announced(r.mallory, app_a.id)
    r.deposit += a
    history = [app_m.transaction]
    for _ in range(r.rng.randint(0, 4)):
        if r.rng.random() < 0.5 and app_a.balances[0][0] > 0:
            await r.call(app_a.send(r.rng.randint(1, app_a.balances[0][0])))
        elif app_m.balances[0][1] > 0:
            with suppress(PerunError):
                await app_m.send(r.rng.randint(1, app_m.balances[0][1]))
        history.append(app_m.transaction)
    worst = min(int(st.balances[0][0]) for st in (app_a.state, *app_a.enforceable_states))
    floor = r.worst_outcome() + worst
    adj = r.backend.adjudicator(r.mallory.account)
    registered = r.rng.choice(history)
    assert registered is not None
    with suppress(PerunError):
        await adj.register(AdjudicatorReq(app_m.params, registered, 1))
    await app_a.wait_phase(*IN_DISPUTE, Phase.WITHDRAWN, timeout=10)
    # Alice's watcher refutes a stale registration; then the refutation window ends.
    newest = app_a.state.version
    await until(lambda: app_a.last_event is not None and app_a.last_event.version >= newest)
    await r.backend.advance_time(CHALLENGE + 1)
    ev = app_a.last_event
    if ev is not None and ev.version >= registered.state.version and app_a.machine.current:
        on_ledger = app_a.state  # what the ledger holds after Alice's watcher refuted
        cur = Transaction(on_ledger, app_a.machine.current.sigs)
        req = AdjudicatorReq(app_m.params, cur, 1)
        bal = on_ledger.balances[0]
        grab = on_ledger.replace(
            version=on_ledger.version + 1,
            allocation=on_ledger.allocation.with_balances(((0, bal[0] + bal[1]),)),
        )
        skip = on_ledger.replace(version=on_ledger.version + 3)
        bogus = [
            (grab, r.backend.sign_state(r.mallory.account, grab)),  # takes Alice's funds
            (skip, r.backend.sign_state(r.mallory.account, skip)),  # skips versions
            (grab, b"\x01" * 65),  # a garbage signature
        ]
        r.res.detail = f"registered v{registered.state.version}, ledger v{on_ledger.version}"
        for st, sig in r.rng.sample(bogus, k=r.rng.randint(1, len(bogus))):
            with suppress(PerunError):
                await adj.progress(req, st, sig)
        if r.rng.random() < 0.5 and bal[1] > 0:
            with suppress(PerunError):
                await app_m.force_update(lambda s: s.transfer(1, 0, 1))
    res = await r.with_ledger_time(r.call(app_a.settle()))
    if app_a.phase != Phase.WITHDRAWN:
        raise AssertionError(f"Alice's app channel not withdrawn ({app_a.phase.name}): {res!r}")
    await r.settle_alice()
    await r.check_outcome(floor)


async def _announced(party: Any, channel_id: bytes) -> Channel:
    """The channel ``channel_id`` as announced to ``party`` (skipping others)."""
    while True:
        ch: Channel = await party.next_channel()
        if ch.id == channel_id:
            return ch


async def _quiet(aw: Awaitable[Any]) -> None:
    with suppress(PerunError):
        await aw


SCENARIOS: dict[str, Scenario] = {
    "stale_registration": stale_registration,
    "silent_update": silent_update,
    "silent_settle": silent_settle,
    "hostile_messages": hostile_messages,
    "register_during_settle": register_during_settle,
    "concurrent": concurrent,
    "crash": crash,
    "sub_channel": sub_channel,
    "app_force": app_force,
}


def scenario_of(seed: int) -> str:
    """The scenario ``seed`` plays (what :func:`run_one` picks)."""
    return random.Random(seed).choice(sorted(SCENARIOS))


def seeds_of(scenario: str, start: int, count: int) -> list[int]:
    """The first ``count`` seeds from ``start`` on that play ``scenario``."""
    if scenario not in SCENARIOS:
        raise ValueError(f"no scenario {scenario!r}; there are {', '.join(sorted(SCENARIOS))}")
    out: list[int] = []
    seed = start
    while len(out) < count:
        if scenario_of(seed) == scenario:
            out.append(seed)
        seed += 1
    return out


async def run_one(backend: ChainBackend, asset: Any, seed: int) -> RunResult:
    """One seeded run (the seed picks the scenario and every choice in it)."""
    rng = random.Random(seed)
    name = rng.choice(sorted(SCENARIOS))  # as scenario_of(seed)
    res = RunResult(seed, name)
    r = _Run(backend, asset, rng, res)
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            await r.setup()
            await SCENARIOS[name](r)
        res.passed = not res.untyped and not res.funds_lost
        if res.untyped:
            res.detail = "; ".join(res.untyped) + f" [{res.detail}]"
    except TimeoutError:
        res.hang = True
        res.detail = "run did not finish in time"
    except AssertionError as e:
        res.detail = f"{e} [{res.detail}]"
    except Exception as e:  # noqa: BLE001 - the campaign counts untyped errors instead of stopping
        res.untyped.append(f"{type(e).__name__}: {e}")
        res.detail = f"{type(e).__name__}: {e} [{res.detail}]"
    finally:
        try:
            async with asyncio.timeout(10):
                await r.close()
        except Exception:  # noqa: BLE001 - the campaign counts untyped errors instead of stopping
            res.hang = res.hang or not res.passed
    return res


async def run_campaign(
    backend: ChainBackend, asset: Any, seeds: list[int], progress: bool = False
) -> Summary:
    """Run every seed on ``backend`` and count."""
    summary = Summary()
    for i, seed in enumerate(seeds):
        summary.add(await run_one(backend, asset, seed))
        if progress and (i + 1) % 50 == 0:
            print(json.dumps({"done": i + 1, **summary.as_dict()}), file=sys.stderr)
    return summary
