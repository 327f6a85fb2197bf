// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {AssetHolder} from "./AssetHolder.sol";

/// @title AssetHolderETH
/// @notice The asset holder of the chain's native currency.
contract AssetHolderETH is AssetHolder {
    constructor(address adjudicator_) AssetHolder(adjudicator_) {}

    function _takeDeposit(uint256 amount) internal override {
        require(msg.value == amount, "wrong amount of ETH for deposit");
    }

    function _pay(address receiver, uint256 amount) internal override {
        // All gas is forwarded (smart-contract wallets may need more than 2300): the holding
        // was debited before this call, so re-entering cannot withdraw twice.
        (bool ok,) = receiver.call{value: amount}("");
        require(ok, "ETH transfer failed");
    }
}
