// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {AssetHolder} from "./AssetHolder.sol";

/// @title AssetHolderERC20
/// @notice The asset holder of one ERC-20 token; deposits need a prior `approve`.
contract AssetHolderERC20 is AssetHolder {
    /// @notice The token this holder keeps.
    address public immutable token;

    constructor(address adjudicator_, address token_) AssetHolder(adjudicator_) {
        token = token_;
    }

    function _takeDeposit(uint256 amount) internal override {
        require(msg.value == 0, "message value must be 0 for token deposit");
        // transferFrom(address,address,uint256)
        _callToken(abi.encodeWithSelector(0x23b872dd, msg.sender, address(this), amount), "transferFrom failed");
    }

    function _pay(address receiver, uint256 amount) internal override {
        // transfer(address,uint256)
        _callToken(abi.encodeWithSelector(0xa9059cbb, receiver, amount), "transfer failed");
    }

    /// @dev Calls the token; bubbles up its revert and refuses a `false` result. Tokens that
    ///      return nothing are accepted (they revert on failure instead).
    function _callToken(bytes memory data, string memory failure) private {
        address t = token;
        (bool ok, bytes memory ret) = t.call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        if (ret.length == 0) {
            require(t.code.length != 0, failure);
        } else {
            require(ret.length >= 32 && abi.decode(ret, (bool)), failure);
        }
    }
}
