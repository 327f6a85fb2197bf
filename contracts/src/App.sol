// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Channel} from "./Channel.sol";

/// @title App
/// @notice The on-chain rule of a channel app, used by `Adjudicator.progress`.
interface App {
    /// @notice Reverts (with a reason) unless `actorIdx` may move the channel from `from` to `to`.
    ///         `view`, so an app with deadlines may read `block.timestamp`; the adjudicator
    ///         calls it with `staticcall`, like a `pure` function (the ABI is the same).
    /// @dev The adjudicator has already checked the version step, asset preservation, the
    ///      locked funds and the actor's signature; the app only decides its own rule.
    function validTransition(
        Channel.Params calldata params,
        Channel.State calldata from,
        Channel.State calldata to,
        uint256 actorIdx
    ) external view;
}
