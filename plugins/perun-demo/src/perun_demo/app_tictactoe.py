"""``perun demo --app tictactoe [--dispute]``: a game of tic-tac-toe for a stake each, in a
sub-channel of Alice's and Bob's payment channel.

Alice (X, participant 0) opens the game with a tenth of her deposit at stake, Bob (O) puts
up the same; every move is one off-chain update of the sub-channel. The winning move is a
final state that pays the winner both stakes; the sub-channel then settles into the payment
channel. With ``--dispute`` Bob, about to lose, stops answering: Alice registers the tree,
waits out the refutation window and forces her winning move on the ledger.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from perun_apps import tictactoe as ttt

from perun_core.channel.phase import Phase
from perun_core.errors import PeerRejectedError, RequestTimedOutError
from perun_demo.app_run import CHALLENGE

if TYPE_CHECKING:
    from perun_core.channel.state import State
    from perun_core.client import Channel
    from perun_demo.app_run import Stage

GAME: Final = (4, 1, 0, 2, 8)
"""The cells marked in turn, Alice first: she wins on the diagonal 0-4-8."""

NAMES: Final = ("Alice", "Bob")
MARKS: Final = ("·", "X", "O")


def board_lines(state: State) -> list[str]:
    """The board of a tic-tac-toe state as three rows of marks (X Alice, O Bob)."""
    cells = ttt.Board.decode(state.data).cells
    return ["  " + " ".join(MARKS[c] for c in cells[r * 3 : r * 3 + 3]) for r in range(3)]


async def _open_game(stage: Stage) -> tuple[Channel, Channel, int]:
    """Alice opens the game sub-channel with a stake each; returns both views and the stake."""
    stake = stage.ch_a.state.balances[0][0] // 10
    sub_a = await stage.ch_a.propose_sub_channel(
        [[stake, stake]], app=stage.alice.app_id("tictactoe"), data=ttt.initial_data(first=0)
    )
    sub_b = await stage.bobs_view(sub_a)
    stage.console.print(
        f"tic-tac-toe sub-channel [green]0x{sub_a.id.hex()[:16]}…[/] funded from the payment "
        f"channel: a stake of {stake} each (payment channel now locks {2 * stake})"
    )
    return sub_a, sub_b, stake


async def _move(stage: Stage, mover: Channel, cell: int) -> None:
    await mover.update(lambda s: ttt.move(s, cell))
    stage.updates += 1
    stage.console.print(f"  {NAMES[mover.idx]} marks cell {cell} (v{mover.state.version})")


def _record_outcome(stage: Stage, final: State, stake: int) -> None:
    """What the game's final state moves from Alice to Bob, and the board."""
    board = ttt.Board.decode(final.data)
    winner = board.winner()
    for line in board_lines(final):
        stage.console.print(line)
    if winner is None:
        stage.console.print("a draw: the stakes stay where they are")
        return
    stage.expected_to_bob += stake if winner == 1 else -stake
    stage.console.print(
        f"[bold]{NAMES[winner]} wins[/]: the final state pays {NAMES[winner]} the pot of "
        f"{2 * stake} ({final.balances[0][0]} / {final.balances[0][1]})"
    )


async def play(stage: Stage) -> None:
    """A full game by off-chain updates; the final state settles into the payment channel."""
    sub_a, sub_b, stake = await _open_game(stage)
    for i, cell in enumerate(GAME):
        await _move(stage, sub_a if i % 2 == 0 else sub_b, cell)
    _record_outcome(stage, sub_a.state, stake)
    await _settle_game(stage, sub_a, sub_b)


async def _settle_game(stage: Stage, sub_a: Channel, sub_b: Channel) -> None:
    await asyncio.gather(sub_a.settle(), sub_b.settle())
    bal = stage.ch_a.state.balances[0]
    stage.console.print(
        f"game sub-channel settled into the payment channel: Alice {bal[0]}, Bob {bal[1]}"
    )


async def dispute(stage: Stage) -> None:
    """Bob stalls before Alice's winning move; she forces it on the ledger."""
    console = stage.console
    sub_a, sub_b, stake = await _open_game(stage)
    *opening, winning = GAME
    for i, cell in enumerate(opening):
        await _move(stage, sub_a if i % 2 == 0 else sub_b, cell)
    for line in board_lines(sub_a.state):
        console.print(line)
    stage.stalled.add("Bob")
    console.print(f"[red]Bob sees he is losing and stops answering[/]; Alice marks cell {winning}")
    try:
        await sub_a.update(lambda s: ttt.move(s, winning))
    except (PeerRejectedError, RequestTimedOutError) as e:
        console.print(f"  Alice's move is not signed: {e}")
    await sub_a.register()
    console.print(
        f"Alice registers the tree: the payment channel with the game at v{sub_a.state.version}"
    )
    await stage.advance(CHALLENGE + 1, "the refutation window is over")
    forced = await sub_a.force_update(lambda s: ttt.move(s, winning))
    stage.updates += 1
    console.print(
        f"[green]Alice forces her move on the ledger[/] (progress, signed by her alone): "
        f"v{forced.version}, final: {forced.is_final}"
    )
    await sub_b.wait_phase(Phase.PROGRESSED, Phase.WITHDRAWING, Phase.WITHDRAWN, timeout=10)
    console.print(f"Bob's client adopted the forced state v{sub_b.state.version}")
    _record_outcome(stage, forced, stake)
    stage.stalled.discard("Bob")
    console.print("the conclusion of the payment channel pays the forced game state")
