// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {App} from "./App.sol";
import {Channel} from "./Channel.sol";

/// @title TrivialApp
/// @notice An app that accepts every transition (for tests and force-execution demos).
contract TrivialApp is App {
    /// @inheritdoc App
    function validTransition(
        Channel.Params calldata,
        Channel.State calldata,
        Channel.State calldata,
        uint256
    ) external pure override {}
}
