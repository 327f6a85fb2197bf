"""Tic-tac-toe between the two participants of a channel, for their stakes.

The stakes are the channel's balances: whoever wins takes both stakes (per asset), a draw
leaves the balances as they are. Every move is one channel update by the player whose turn
it is; a stalled opponent does not stop the game: the player on turn registers the channel
and forces the move on chain (``progress``), and the other may force the answer in turn.

App data (10 bytes, canonical)::

    byte 0      whose turn it is: participant 0 or 1
    bytes 1..9  the cells, row by row: 0 empty, 1 participant 0's mark, 2 participant 1's

A move sets exactly one empty cell to the mover's mark and passes the turn. A move that wins
or fills the board must produce a final state paying out the stakes; every other state is
not final and keeps the balances. The contract ``TicTacToeApp`` applies the same rules.

Usage::

    state = client_state_with(data=tictactoe.initial_data(first=0))
    nxt = tictactoe.move(state, 4)   # the player on turn marks the centre
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from perun_apps._rules import decoded, load_artifact, refuse, require_same_outcome
from perun_core.channel.app import App, AppDefinition
from perun_core.channel.params import Params
from perun_core.channel.state import State
from perun_core.errors import InvalidAppDataError

NAME: Final = "tictactoe"
DATA_LEN: Final = 10
CELLS: Final = 9
EMPTY: Final = 0

#: The eight lines of three cells that win.
LINES: Final = (
    (0, 1, 2),
    (3, 4, 5),
    (6, 7, 8),
    (0, 3, 6),
    (1, 4, 7),
    (2, 5, 8),
    (0, 4, 8),
    (2, 4, 6),
)


def mark_of(player: int) -> int:
    """The mark participant ``player`` (0 or 1) puts in a cell."""
    return player + 1


@dataclass(frozen=True, slots=True)
class Board:
    """The decoded app data.

    Attributes:
        turn: the participant to move next (0 or 1).
        cells: nine cells, row by row (0 empty, 1 or 2 the mark of participant 0 or 1).
    """

    turn: int
    cells: tuple[int, ...] = (EMPTY,) * CELLS

    def encode(self) -> bytes:
        """The canonical 10 bytes."""
        return bytes((self.turn, *self.cells))

    @classmethod
    def decode(cls, data: bytes) -> Board:
        """Parse app data.

        Raises:
            InvalidAppDataError: not 10 bytes, a turn other than 0/1, a cell other than 0/1/2.
        """
        if len(data) != DATA_LEN:
            raise InvalidAppDataError(f"tic-tac-toe data is {DATA_LEN} bytes, not {len(data)}")
        if data[0] > 1:
            raise InvalidAppDataError(f"tic-tac-toe turn must be 0 or 1, not {data[0]}")
        cells = tuple(data[1:])
        bad = [c for c in cells if c > 2]
        if bad:
            raise InvalidAppDataError(f"tic-tac-toe cell value {bad[0]} is not 0, 1 or 2")
        return cls(data[0], cells)

    def winner(self) -> int | None:
        """The participant with three marks in a line, if any."""
        for a, b, c in LINES:
            mark = self.cells[a]
            if mark != EMPTY and mark == self.cells[b] == self.cells[c]:
                return mark - 1
        return None

    def full(self) -> bool:
        """Whether no cell is empty."""
        return EMPTY not in self.cells

    def over(self) -> bool:
        """Whether the game has ended (a winner or a full board)."""
        return self.winner() is not None or self.full()


def initial_data(first: int = 0) -> bytes:
    """The data of a new game: an empty board, participant ``first`` to move."""
    if first not in (0, 1):
        raise InvalidAppDataError(f"the first player is participant 0 or 1, not {first}")
    return Board(first).encode()


def payout(balances: Sequence[Sequence[int]], winner: int) -> tuple[tuple[int, ...], ...]:
    """The balances after ``winner`` took both stakes of every asset."""
    return tuple(tuple(sum(row) if p == winner else 0 for p in range(len(row))) for row in balances)


def move(state: State, cell: int) -> State:
    """The state after the player on turn marks ``cell`` (0..8, row by row).

    The version is incremented; a winning move pays the winner both stakes, a winning or
    board-filling move makes the state final.

    Raises:
        AppTransitionError: the game is over, or ``cell`` is out of range or taken.
        InvalidAppDataError: ``state`` carries no tic-tac-toe data.
    """
    board = Board.decode(state.data)
    if board.over():
        refuse(NAME, "the game is over", state)
    if not 0 <= cell < CELLS:
        refuse(NAME, f"cell {cell} is not on the board (0..8)", state)
    if board.cells[cell] != EMPTY:
        refuse(NAME, f"cell {cell} is taken", state)
    cells = list(board.cells)
    cells[cell] = mark_of(board.turn)
    after = Board(1 - board.turn, tuple(cells))
    winner = after.winner()
    allocation = state.allocation
    if winner is not None:
        allocation = allocation.with_balances(payout(allocation.balances, winner))
    return state.replace(
        version=state.version + 1,
        data=after.encode(),
        allocation=allocation,
        is_final=after.over(),
    )


class TicTacToeApp(App):
    """The off-chain rules of tic-tac-toe (the same as the ``TicTacToeApp`` contract's)."""

    def __init__(self, app_id: bytes) -> None:
        self.app_id = app_id

    def decode_data(self, data: bytes) -> Board:
        """The :class:`Board` of ``data`` (:class:`InvalidAppDataError` if malformed)."""
        return Board.decode(data)

    def valid_init(self, params: Params, state: State) -> None:
        """A game starts between two participants on an empty board."""
        if params.num_parts != 2:
            refuse(NAME, f"a game has two players, not {params.num_parts}", state)
        if any(Board.decode(state.data).cells):
            refuse(NAME, "a game starts on an empty board", state)

    def valid_transition(self, params: Params, frm: State, to: State, actor_idx: int) -> None:
        """One move of the player on turn (see the module docs)."""
        if params.num_parts != 2:
            refuse(NAME, f"a game has two players, not {params.num_parts}", to)
        before = decoded(NAME, Board.decode, frm)
        after = decoded(NAME, Board.decode, to)
        if actor_idx != before.turn:
            refuse(NAME, f"it is participant {before.turn}'s turn, not {actor_idx}'s", to)
        changed = [i for i in range(CELLS) if before.cells[i] != after.cells[i]]
        if len(changed) != 1:
            refuse(NAME, f"a move changes exactly one cell, not {len(changed)}", to)
        require_same_outcome(NAME, move(frm, changed[0]), to)


DEFINITION: Final = AppDefinition(
    name=NAME,
    rules=TicTacToeApp,
    on_chain={"eth": load_artifact("TicTacToeApp")},
    summary="tic-tac-toe for the two participants' stakes",
)
"""The ``tictactoe`` app as ``perun-apps`` registers it."""
