"""The app conformance suite: an app's on-chain rule, run by a ledger's ``progress``, agrees
with its Python rule (:meth:`~perun_core.channel.app.App.valid_progress`).

An app author describes games on the app as :class:`AppCase`\\ s: the data of a registered
state and a script of progress attempts (:class:`ProgressStep`), hostile ones among them,
each saying whether the ledger must accept it. The suite registers a channel with the case's
state on a real ledger, waits out the refutation window, and plays the script through the
adjudicator: every attempt the script calls valid must be accepted (a
:class:`~perun_core.interfaces.ProgressedEvent` follows), every other refused with
:class:`~perun_core.errors.InvalidProgressError`; the Python rule must agree with the script
on each. A second test mutates the script's states (data bytes, balances moved between the
participants, the final flag, the actor) and requires the ledger's verdict to equal the Python
rule's on every mutant.

Use it by subclassing :class:`AppConformance` in a test module and providing the fixtures:

``backend``, ``asset``
    as for :class:`~perun_core.testing.adjudicator.AdjudicatorConformance`.
``app_definition``
    the :class:`~perun_core.channel.app.AppDefinition` under test.
``app_cases``
    a list of :class:`AppCase`.
``app_id``
    the AppID under which the backend's ledger runs the app. The default asks
    ``backend.app_id(app_definition.name)``; override it to install an app the backend does
    not know yet (register its rules on a sim ledger, deploy its contract on Ethereum).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest

from perun_core.channel.app import App, AppDefinition
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Asset
from perun_core.errors import AppTransitionError, InvalidProgressError
from perun_core.interfaces.adjudicator import ProgressedEvent, RegisteredEvent
from perun_core.interfaces.chain import ChainBackend
from perun_core.testing.adjudicator import refused
from perun_core.testing.ledger import CHALLENGE, FUNDS, LedgerChannel, next_event, require

_NEEDS = ("apps", "faucet", "balances", "time_travel")

#: How many mutants of each scripted state the agreement test tries (fixed seed).
MUTANTS_PER_STEP = 6


@dataclass(frozen=True)
class ProgressStep:
    """One progress attempt of a script.

    Attributes:
        label: what the attempt is (shown when it fails).
        actor: the participant index that signs and submits it.
        make: builds the proposed state from the state on chain (with version + 1).
        valid: whether the ledger must accept it.
        wait: ledger seconds to let pass before the attempt.
    """

    label: str
    actor: int
    make: Callable[[State], State]
    valid: bool
    wait: int = 0


@dataclass(frozen=True)
class AppCase:
    """A game on the app, from a registered state to its end.

    Attributes:
        name: the case's name.
        balances: the two participants' deposits (the registered state's balances).
        data: the registered state's app data, given the ledger time at registration
            (deadlines are relative to it; the first progress comes ``CHALLENGE + 1``
            seconds after registration).
        steps: the progress attempts, in order.
        payout: what each participant withdraws in the end.
    """

    name: str
    balances: tuple[int, int]
    data: Callable[[int], bytes]
    steps: Sequence[ProgressStep]
    payout: tuple[int, int]


def python_verdict(
    rules: App, ch: LedgerChannel, frm: State, to: State, actor: int, now: int
) -> str | None:
    """``None`` if the Python rule accepts ``frm -> to`` at ``now``, else its reason."""
    try:
        rules.valid_progress(ch.params, frm, to, actor, now)
    except AppTransitionError as e:
        return str(e)
    return None


def mutants(state: State, rng: random.Random) -> list[tuple[str, State]]:
    """Variants of a proposed state that keep the generic rules (version, totals, assets) but
    may break the app's: a flipped data byte, data cut or extended, a unit moved between the
    two participants, the final flag toggled."""
    out: list[tuple[str, State]] = []
    if state.data:
        i = rng.randrange(len(state.data))
        flipped = bytearray(state.data)
        flipped[i] ^= 1 << rng.randrange(8)
        out.append((f"data byte {i} flipped", state.replace(data=bytes(flipped))))
        out.append(("data cut", state.replace(data=state.data[:-1])))
    out.append(("data extended", state.replace(data=state.data + b"\x00")))
    out.append(("final flag toggled", state.replace(is_final=not state.is_final)))
    row = state.allocation.balances[0]
    for frm, to in ((0, 1), (1, 0)):
        if row[frm] > 0:
            moved = state.replace(allocation=state.allocation.transfer(frm, to, 1))
            out.append((f"one unit from {frm} to {to}", moved))
    rng.shuffle(out)
    return out[:MUTANTS_PER_STEP]


class AppConformance:
    """An app's on-chain rule on a ledger agrees with its Python rule."""

    @pytest.fixture
    def app_id(self, backend: ChainBackend, app_definition: AppDefinition) -> bytes:
        """The AppID the backend's ledger runs the app under (override to install it)."""
        aid = backend.app_id(app_definition.name)
        if aid is None:
            pytest.fail(f"the {backend.name} backend has no app {app_definition.name!r}")
        return aid

    async def _registered(
        self, backend: ChainBackend, asset: Asset, app_id: bytes, case: AppCase
    ) -> tuple[LedgerChannel, Transaction]:
        """A funded channel of the app with the case's state registered and the refutation
        window over."""
        ch = await LedgerChannel.create(backend, asset, app=app_id)
        await ch.fund(case.balances)
        now = await backend.ledger_time()
        registered = ch.signed(ch.state(1, case.balances).replace(data=case.data(now)))
        sub = await backend.adjudicator(ch.b).subscribe(ch.params)
        try:
            await backend.adjudicator(ch.a).register(ch.req(registered, 0))
            assert isinstance(await next_event(sub), RegisteredEvent)
        finally:
            await sub.close()
        await backend.advance_time(CHALLENGE + 1)
        return ch, registered

    async def test_scripted_games_progress_on_chain_as_the_rules_say(
        self,
        backend: ChainBackend,
        asset: Asset,
        app_definition: AppDefinition,
        app_cases: Sequence[AppCase],
        app_id: bytes,
    ) -> None:
        require(backend, *_NEEDS)
        rules = app_definition.rules(app_id)
        assert app_cases, "give at least one case"
        for case in app_cases:
            ch, current = await self._registered(backend, asset, app_id, case)
            sub = await backend.adjudicator(ch.b).subscribe(ch.params)
            try:
                assert isinstance(await next_event(sub), RegisteredEvent)  # the latest so far
                for step in case.steps:
                    if step.wait:
                        await backend.advance_time(step.wait)
                    where = f"{case.name}: {step.label}"
                    frm = current.state
                    nxt = step.make(frm)
                    now = await backend.ledger_time()
                    verdict = python_verdict(rules, ch, frm, nxt, step.actor, now)
                    assert (verdict is None) == step.valid, f"{where}: Python rule says {verdict}"
                    acct = ch.accounts[step.actor]
                    op = backend.adjudicator(acct).progress(
                        ch.req(current, step.actor), nxt, backend.sign_state(acct, nxt)
                    )
                    if not step.valid:
                        await refused(op, InvalidProgressError)
                        continue
                    await op
                    ev = await next_event(sub)
                    assert isinstance(ev, ProgressedEvent), where
                    assert (ev.version, ev.actor_idx) == (nxt.version, step.actor), where
                    current = ch.signed(nxt, by=(step.actor,))
            finally:
                await sub.close()
            if not current.state.is_final:
                await backend.advance_time(CHALLENGE + 1)
            before = await ch.balances()
            await backend.adjudicator(ch.a).withdraw(ch.req(current, 0))
            await backend.adjudicator(ch.b).withdraw(ch.req(current, 1))
            after = await ch.balances()
            assert (after[0] - before[0], after[1] - before[1]) == case.payout, case.name
            assert sum(case.payout) == sum(case.balances), case.name
            assert after[0] + after[1] == 2 * FUNDS, case.name

    async def test_the_ledger_and_the_python_rule_agree_on_mutated_moves(
        self,
        backend: ChainBackend,
        asset: Asset,
        app_definition: AppDefinition,
        app_cases: Sequence[AppCase],
        app_id: bytes,
    ) -> None:
        require(backend, *_NEEDS)
        rules = app_definition.rules(app_id)
        rng = random.Random(0x5EED)
        refusals = 0
        for case in app_cases:
            ch, current = await self._registered(backend, asset, app_id, case)
            for step in case.steps:
                if step.wait:
                    await backend.advance_time(step.wait)
                if not step.valid:
                    continue
                frm = current.state
                scripted = step.make(frm)
                candidates = [("as scripted", scripted), *mutants(scripted, rng)]
                for label, nxt in candidates:
                    for actor in (step.actor, 1 - step.actor):
                        if nxt is scripted and actor == step.actor:
                            continue  # played below, once the mutants are refused
                        now = await backend.ledger_time()
                        if python_verdict(rules, ch, frm, nxt, actor, now) is None:
                            # Accepting it would end the script; the scripted test covers
                            # the ledger accepting what the rule accepts.
                            continue
                        acct = ch.accounts[actor]
                        sig = backend.sign_state(acct, nxt)
                        where = f"{case.name}/{step.label}/{label}/actor {actor}"
                        op = backend.adjudicator(acct).progress(ch.req(current, actor), nxt, sig)
                        with _context(where):
                            await refused(op, InvalidProgressError)
                        refusals += 1
                now = await backend.ledger_time()
                assert python_verdict(rules, ch, frm, scripted, step.actor, now) is None
                acct = ch.accounts[step.actor]
                await backend.adjudicator(acct).progress(
                    ch.req(current, step.actor), scripted, backend.sign_state(acct, scripted)
                )
                current = ch.signed(scripted, by=(step.actor,))
        assert refusals > 0


@contextlib.contextmanager
def _context(where: str) -> Iterator[None]:
    """Name the attempt in an assertion that fails inside."""
    try:
        yield
    except AssertionError as e:
        raise AssertionError(f"{where}: {e}") from e
