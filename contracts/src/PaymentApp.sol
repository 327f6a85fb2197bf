// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {App} from "./App.sol";
import {Channel} from "./Channel.sol";

/// @title PaymentApp
/// @notice The payment rule on chain: per asset, the actor's balance does not increase and no
///         other participant's balance decreases. Its address is the payment AppID of a
///         deployment; the off-chain `PaymentApp` applies the same rule.
contract PaymentApp is App {
    /// @inheritdoc App
    function validTransition(
        Channel.Params calldata params,
        Channel.State calldata from,
        Channel.State calldata to,
        uint256 actorIdx
    ) external pure override {
        require(to.appData.length == 0, "payment app carries no data");
        uint256 n = params.participants.length;
        uint256[][] calldata oldRows = from.outcome.balances;
        uint256[][] calldata newRows = to.outcome.balances;
        require(oldRows.length == newRows.length, "balances length mismatch");
        for (uint256 a; a < newRows.length; ++a) {
            uint256[] calldata o = oldRows[a];
            uint256[] calldata b = newRows[a];
            require(o.length == n && b.length == n, "balances length mismatch");
            for (uint256 p; p < n; ++p) {
                if (p == actorIdx) {
                    require(b[p] <= o[p], "actor balance increased");
                } else {
                    require(b[p] >= o[p], "participant balance decreased");
                }
            }
        }
    }
}
