"""The off-chain rules of tic-tac-toe: encoding, the move helper, every refusal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from perun_apps.tictactoe import Board, TicTacToeApp, initial_data, move
from rules_helpers import params, state

from perun_core.errors import AppTransitionError, InvalidAppDataError

APP = TicTacToeApp(b"\xaa" * 20)
P = params()


def start(first: int = 0) -> object:
    return state(P, initial_data(first), (10, 20), (3, 4))


def play(cells: list[int], first: int = 0):  # type: ignore[no-untyped-def]
    s = state(P, initial_data(first), (10, 20), (3, 4))
    for c in cells:
        nxt = move(s, c)
        APP.valid_transition(P, s, nxt, Board.decode(s.data).turn)
        s = nxt
    return s


def refused(frm, to, actor: int, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AppTransitionError, match=match):
        APP.valid_transition(P, frm, to, actor)
    # On chain the rule is the same (no clock in tic-tac-toe).
    with pytest.raises(AppTransitionError, match=match):
        APP.valid_progress(P, frm, to, actor, 10**9)


def with_board(s, turn: int, cells: dict[int, int], **kw: object):  # type: ignore[no-untyped-def]
    b = list(Board.decode(s.data).cells)
    for i, m in cells.items():
        b[i] = m
    return s.replace(version=s.version + 1, data=Board(turn, tuple(b)).encode(), **kw)


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"", "10 bytes"),
        (bytes(11), "10 bytes"),
        (bytes([2]) + bytes(9), "turn"),
        (bytes([0, 3]) + bytes(8), "cell value 3"),
    ],
)
def test_malformed_data_is_a_typed_error(data: bytes, what: str) -> None:
    with pytest.raises(InvalidAppDataError, match=what):
        APP.decode_data(data)
    with pytest.raises(InvalidAppDataError):
        initial_data(2)


@given(st.integers(0, 1), st.lists(st.integers(0, 2), min_size=9, max_size=9))
def test_the_encoding_is_canonical(turn: int, cells: list[int]) -> None:
    b = Board(turn, tuple(cells))
    assert Board.decode(b.encode()) == b and len(b.encode()) == 10


def test_a_won_game_pays_the_winner_both_stakes_of_every_asset() -> None:
    end = play([0, 3, 1, 4, 2])
    assert end.is_final and end.balances == ((30, 0), (7, 0))
    assert Board.decode(end.data).winner() == 0
    end1 = play([0, 3, 1, 4, 8, 5], first=0)
    assert end1.is_final and end1.balances == ((0, 30), (0, 7))


def test_a_draw_is_final_and_keeps_the_stakes() -> None:
    end = play([0, 1, 2, 4, 3, 5, 7, 6, 8], first=1)
    assert end.is_final and end.balances == ((10, 20), (3, 4))
    assert Board.decode(end.data).winner() is None


def test_init_wants_two_players_and_an_empty_board() -> None:
    APP.valid_init(P, start())
    with pytest.raises(AppTransitionError, match="two players"):
        APP.valid_init(params(3), state(params(3), initial_data(0), (1, 2, 3)))
    with pytest.raises(AppTransitionError, match="empty board"):
        APP.valid_init(P, state(P, bytes([0, 1]) + bytes(8), (1, 2)))


def test_every_kind_of_bad_move_is_refused() -> None:
    s0 = start()
    refused(s0, move(s0, 0), 1, "turn")  # participant 1 on participant 0's turn
    refused(s0, with_board(s0, 1, {0: 1, 1: 1}), 0, "exactly one cell")
    refused(s0, with_board(s0, 1, {}), 0, "exactly one cell")
    refused(s0, with_board(s0, 1, {0: 2}), 0, "data")  # the opponent's mark
    refused(s0, with_board(s0, 0, {0: 1}), 0, "data")  # the turn not passed
    grab = move(s0, 0)
    grab = grab.replace(allocation=grab.allocation.transfer(1, 0, 5))
    refused(s0, grab, 0, "balances")
    refused(s0, move(s0, 0).finalized(), 0, "not final")
    refused(s0, s0.replace(version=2, data=b"\x01" * 3), 0, "10 bytes")
    s1 = move(s0, 0)
    refused(s1, with_board(s1, 0, {0: 2}), 1, "taken")  # overwrite
    near = play([0, 3, 1, 4])
    win = move(near, 2)
    refused(near, win.replace(is_final=False), 0, "must be final")
    refused(near, win.replace(allocation=near.allocation), 0, "balances")
    won = play([0, 3, 1, 4, 2])
    refused(won.replace(is_final=False), with_board(won, 0, {5: 2}), 1, "over")
    p3 = params(3)
    s3 = state(p3, initial_data(0), (1, 2, 3))
    with pytest.raises(AppTransitionError, match="two players"):
        APP.valid_transition(p3, s3, move(s3, 0), 0)


def test_the_move_helper_refuses_what_the_rules_refuse() -> None:
    s1 = move(start(), 4)
    with pytest.raises(AppTransitionError, match="taken"):
        move(s1, 4)
    with pytest.raises(AppTransitionError, match="not on the board"):
        move(s1, 9)
    with pytest.raises(AppTransitionError, match="over"):
        move(play([0, 3, 1, 4, 2]), 8)


@given(st.lists(st.integers(0, 8), min_size=1, max_size=30), st.integers(0, 1))
def test_random_games_follow_the_rules_and_conserve_the_stakes(
    moves: list[int], first: int
) -> None:
    s = start(first)
    for cell in moves:
        board = Board.decode(s.data)
        if board.over():
            assert s.is_final
            break
        if board.cells[cell]:
            continue
        nxt = move(s, cell)
        APP.valid_transition(P, s, nxt, board.turn)
        with pytest.raises(AppTransitionError):
            APP.valid_transition(P, s, nxt, 1 - board.turn)
        assert [sum(r) for r in nxt.balances] == [30, 7]
        assert nxt.is_final == Board.decode(nxt.data).over()
        s = nxt
