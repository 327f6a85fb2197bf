"""Scripted games of the shipped apps for the app conformance suite
(:mod:`perun_core.testing.apps`): whole games, claims and refunds, with Mallory's attempts
(wrong turn, two cells, grabbed stakes, early refund, late claim, wrong preimage, changed
terms) in between, each marked with the verdict the ledger must give."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from perun_apps import htlc, tictactoe
from perun_apps.tictactoe import Board, move
from perun_core.channel.state import State
from perun_core.testing.apps import AppCase, ProgressStep
from perun_core.testing.ledger import CHALLENGE


def _board(state: State, turn: int, marks: dict[int, int], **changes: object) -> State:
    """``state`` one version on, with ``marks`` (cell -> mark) added to its board."""
    cells = list(Board.decode(state.data).cells)
    for cell, mark in marks.items():
        cells[cell] = mark
    return state.replace(
        version=state.version + 1, data=Board(turn, tuple(cells)).encode(), **changes
    )


def _grab(state: State, to: int) -> State:
    """``state`` with both stakes moved to participant ``to``."""
    return state.replace(
        allocation=state.allocation.with_balances(tictactoe.payout(state.allocation.balances, to))
    )


def _ok(label: str, actor: int, cell: int, wait: int = 0) -> ProgressStep:
    return ProgressStep(label, actor, lambda s: move(s, cell), True, wait)


def tictactoe_cases() -> list[AppCase]:
    """A won game full of cheating attempts, and a drawn game with a stalled player."""
    won = [
        ProgressStep("player 1 moves on player 0's turn", 1, lambda s: _board(s, 0, {0: 2}), False),
        ProgressStep("two cells at once", 0, lambda s: _board(s, 1, {0: 1, 1: 1}), False),
        ProgressStep("the opponent's mark", 0, lambda s: _board(s, 1, {0: 2}), False),
        ProgressStep("the turn is kept", 0, lambda s: _board(s, 0, {0: 1}), False),
        ProgressStep("no cell marked", 0, lambda s: _board(s, 1, {}), False),
        ProgressStep("a move that grabs the stakes", 0, lambda s: _grab(move(s, 0), 0), False),
        ProgressStep("a move that ends the game", 0, lambda s: move(s, 0).finalized(), False),
        _ok("player 0 marks cell 0", 0, 0),
        ProgressStep("player 0 moves twice", 0, lambda s: move(s, 4), False),
        ProgressStep("player 1 overwrites cell 0", 1, lambda s: _board(s, 0, {0: 2}), False),
        _ok("player 1 marks cell 3", 1, 3),
        _ok("player 0 marks cell 1", 0, 1),
        _ok("player 1 marks cell 4", 1, 4),
        ProgressStep(
            "a win without the pot",
            0,
            lambda s: _board(s, 1, {2: 1}, is_final=True),
            False,
        ),
        ProgressStep("a win that is not final", 0, lambda s: _grab(_board(s, 1, {2: 1}), 0), False),
        ProgressStep("the loser takes the pot", 0, lambda s: _grab(move(s, 2), 1), False),
        _ok("player 0 completes the top row", 0, 2),
    ]
    # Player 1 opens; player 0 stalls twice and each time the other forces its move.
    drawn = [
        _ok("player 1 marks cell 0", 1, 0),
        _ok("player 0 marks cell 1", 0, 1, wait=CHALLENGE // 2),
        _ok("player 1 marks cell 2", 1, 2),
        _ok("player 0 marks cell 4", 0, 4, wait=CHALLENGE - 5),
        _ok("player 1 marks cell 3", 1, 3),
        _ok("player 0 marks cell 5", 0, 5),
        _ok("player 1 marks cell 7", 1, 7),
        _ok("player 0 marks cell 6", 0, 6),
        ProgressStep(
            "a full board that is not final",
            1,
            lambda s: move(s, 8).replace(is_final=False),
            False,
        ),
        ProgressStep("a draw that pays player 1", 1, lambda s: _grab(move(s, 8), 1), False),
        _ok("player 1 fills the board: a draw", 1, 8),
    ]
    return [
        AppCase("player 0 wins", (10, 20), lambda _: tictactoe.initial_data(0), won, (30, 0)),
        AppCase("a draw", (10, 20), lambda _: tictactoe.initial_data(1), drawn, (10, 20)),
    ]


PREIMAGE = hashlib.sha256(b"perun-apps/htlc test preimage").digest()
"""The secret of the HTLC cases."""

AMOUNT = 20
PAYER, PAYEE = 0, 1


def _terms(deadline: int, amount: int = AMOUNT) -> bytes:
    lock = htlc.hash_lock(PREIMAGE)
    return htlc.lock_data(payer=PAYER, payee=PAYEE, amount=amount, lock=lock, deadline=deadline)


def _claimed_with(state: State, *, data: bytes, moved: int) -> State:
    """A final state with ``data`` in which ``moved`` went from the payer to the payee."""
    paid = state.allocation.transfer(PAYER, PAYEE, moved)
    return state.replace(version=state.version + 1, data=data, allocation=paid, is_final=True)


def _steps_of_a_claim() -> Sequence[ProgressStep]:
    wrong = bytes(32)

    def other_amount(s: State) -> State:
        terms = htlc.Htlc.decode(s.data)
        forged = htlc.Htlc(PAYER, PAYEE, 0, AMOUNT + 5, terms.lock, terms.deadline, PREIMAGE)
        return _claimed_with(s, data=forged.encode(), moved=AMOUNT + 5)

    return [
        ProgressStep(
            "a claim with a wrong preimage",
            PAYEE,
            lambda s: _claimed_with(s, data=s.data + wrong, moved=AMOUNT),
            False,
        ),
        ProgressStep("the payer refunds before the deadline", PAYER, htlc.refund, False),
        ProgressStep("a claim of a larger amount", PAYEE, other_amount, False),
        ProgressStep(
            "a claim moving more than the amount",
            PAYEE,
            lambda s: _claimed_with(s, data=s.data + PREIMAGE, moved=AMOUNT + 1),
            False,
        ),
        ProgressStep(
            "the payer submits the claim", PAYER, lambda s: htlc.claim(s, PREIMAGE), False
        ),
        ProgressStep(
            "a claim that is not final",
            PAYEE,
            lambda s: htlc.claim(s, PREIMAGE).replace(is_final=False),
            False,
        ),
        ProgressStep("the payee claims in time", PAYEE, lambda s: htlc.claim(s, PREIMAGE), True),
    ]


def htlc_cases() -> list[AppCase]:
    """A claim in time, a refund after the deadline, and a payee releasing the payer."""
    late = CHALLENGE + 20  # the first progress comes at CHALLENGE + 1: 19 s before it
    refund_steps = [
        ProgressStep("the payer refunds early", PAYER, htlc.refund, False),
        ProgressStep(
            "the payee claims after the deadline",
            PAYEE,
            lambda s: htlc.claim(s, PREIMAGE),
            False,
            wait=40,
        ),
        ProgressStep(
            "a refund that pays the payee",
            PAYER,
            lambda s: htlc.refund(s).replace(
                allocation=s.allocation.transfer(PAYER, PAYEE, AMOUNT)
            ),
            False,
        ),
        ProgressStep(
            "a refund that changes the terms",
            PAYER,
            lambda s: htlc.refund(s).replace(
                data=_terms(htlc.Htlc.decode(s.data).deadline, AMOUNT - 1)
            ),
            False,
        ),
        ProgressStep(
            "a refund that is not final",
            PAYER,
            lambda s: htlc.refund(s).replace(is_final=False),
            False,
        ),
        ProgressStep("the payer refunds after the deadline", PAYER, htlc.refund, True),
    ]
    release = [ProgressStep("the payee releases the payer", PAYEE, htlc.refund, True)]
    return [
        AppCase(
            "claim in time",
            (50, 5),
            lambda now: _terms(now + CHALLENGE + 100),
            _steps_of_a_claim(),
            (50 - AMOUNT, 5 + AMOUNT),
        ),
        AppCase(
            "refund after the deadline",
            (50, 5),
            lambda now: _terms(now + late),
            refund_steps,
            (50, 5),
        ),
        AppCase("the payee releases", (50, 5), lambda now: _terms(now + 10_000), release, (50, 5)),
    ]
