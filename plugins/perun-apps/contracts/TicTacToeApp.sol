// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {App} from "perun/App.sol";
import {Channel} from "perun/Channel.sol";

/// @title TicTacToeApp
/// @notice Tic-tac-toe for the stakes of a two-party channel; the same rules as the Python
///         `perun_apps.tictactoe.TicTacToeApp`.
/// @dev appData: byte 0 = whose turn (participant 0 or 1), bytes 1..9 = the cells row by row
///      (0 empty, 1 participant 0's mark, 2 participant 1's). A move sets one empty cell to
///      the mover's mark and passes the turn; a win pays the winner both stakes and a win or
///      a full board is final; otherwise the balances stay and the state is not final.
contract TicTacToeApp is App {
    uint256 private constant DATA_LEN = 10;

    /// @inheritdoc App
    function validTransition(
        Channel.Params calldata params,
        Channel.State calldata from,
        Channel.State calldata to,
        uint256 actorIdx
    ) external pure override {
        require(params.participants.length == 2, "two players");
        bytes calldata f = from.appData;
        bytes calldata t = to.appData;
        require(f.length == DATA_LEN && t.length == DATA_LEN, "bad data length");
        // actorIdx < 2 (checked by the adjudicator), so this also checks from's turn byte.
        require(uint8(f[0]) == actorIdx, "not your turn");
        require(uint8(t[0]) == 1 - actorIdx, "turn must pass");
        require(_winner(f) == 0, "game over");
        uint256 mark = actorIdx + 1;
        uint256 changed; // the changed cell's byte index (1..9); 0: none yet
        bool full = true;
        for (uint256 i = 1; i <= 9; ++i) {
            uint256 a = uint8(f[i]);
            uint256 b = uint8(t[i]);
            // Unchanged cells equal from's, so this validates both boards.
            require(b <= 2, "bad cell");
            if (a != b) {
                require(changed == 0, "one cell per move");
                require(a == 0 && b == mark, "cell taken or wrong mark");
                changed = i;
            }
            if (b == 0) full = false;
        }
        require(changed != 0, "no move");
        uint256 w = _winner(t);
        uint256[][] calldata o = from.outcome.balances;
        uint256[][] calldata n = to.outcome.balances;
        if (w != 0) {
            require(to.isFinal, "a win is final");
            // The adjudicator checked that each asset's total is preserved, so the loser's
            // zero means the winner holds both stakes.
            uint256 loser = 2 - w;
            for (uint256 a; a < n.length; ++a) {
                require(n[a][loser] == 0, "winner takes the pot");
            }
        } else {
            require(to.isFinal == full, full ? "a full board is final" : "game not over");
            for (uint256 a; a < n.length; ++a) {
                require(n[a][0] == o[a][0] && n[a][1] == o[a][1], "balances changed");
            }
        }
    }

    /// @dev 1 or 2 if that participant's mark (index + 1) fills a line, else 0.
    function _winner(bytes calldata d) private pure returns (uint256) {
        // The eight lines as cell triples (0-based), 4 bits per cell, 12 bits per line.
        uint256 lines = 0x246_048_258_147_036_678_345_012;
        for (uint256 k; k < 8; ++k) {
            uint256 line = lines >> (12 * k);
            uint256 m = uint8(d[1 + ((line >> 8) & 0xf)]);
            if (m != 0 && m == uint8(d[1 + ((line >> 4) & 0xf)]) && m == uint8(d[1 + (line & 0xf)])) {
                return m;
            }
        }
        return 0;
    }
}
