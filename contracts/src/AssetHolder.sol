// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Channel} from "./Channel.sol";
import {Sig} from "./Sig.sol";

/// @title AssetHolder
/// @notice Holds the deposits of one asset for every channel and pays out the outcome the
///         adjudicator sets. Deposits are credited per funding ID
///         `keccak256(abi.encode(channelID, participant))`.
/// @dev Subclasses move the asset itself: `_takeDeposit` on `deposit`, `_pay` on `withdraw`.
abstract contract AssetHolder {
    /// @notice Signed by `participant` (EIP-191 over its ABI encoding) to release `amount` of
    ///         its holdings in `channelID` to `receiver`; anyone may submit it.
    struct WithdrawalAuth {
        bytes32 channelID;
        address participant;
        address receiver;
        uint256 amount;
    }

    /// @notice The only account allowed to call `setOutcome`.
    address public immutable adjudicator;

    /// @notice Funds held per funding ID (and per channel ID for direct channel deposits).
    mapping(bytes32 => uint256) public holdings;

    /// @notice Whether the outcome of a channel has been set.
    mapping(bytes32 => bool) public settled;

    event OutcomeSet(bytes32 indexed channelID);
    event Deposited(bytes32 indexed fundingID, uint256 amount);
    event Withdrawn(bytes32 indexed fundingID, uint256 amount, address receiver);

    constructor(address adjudicator_) {
        adjudicator = adjudicator_;
    }

    /// @notice Credits `amount` to `fundingID`. Anyone may deposit for anyone, at any time.
    function deposit(bytes32 fundingID, uint256 amount) external payable {
        holdings[fundingID] += amount;
        _takeDeposit(amount);
        emit Deposited(fundingID, amount);
    }

    /// @notice Pays `authorization.amount` of a settled channel to `authorization.receiver`.
    /// @param signature the participant's EIP-191 signature on `abi.encode(authorization)`.
    function withdraw(WithdrawalAuth calldata authorization, bytes calldata signature) external {
        bytes32 channelID = authorization.channelID;
        require(settled[channelID], "channel not settled");
        address participant = authorization.participant;
        bytes32 h;
        assembly ("memory-safe") {
            // The auth is static: its ABI encoding is its 128 bytes of (validated) calldata.
            let m := mload(0x40)
            calldatacopy(m, authorization, 0x80)
            h := keccak256(m, 0x80)
        }
        require(
            Sig.recover(Sig.ethSignedDigest(h), signature) == participant,
            "signature verification failed"
        );
        bytes32 fid = Channel.fundingID(channelID, participant);
        uint256 amount = authorization.amount;
        uint256 held = holdings[fid];
        require(held >= amount, "insufficient funds");
        // Debit before paying, so a re-entering receiver finds the funds already gone.
        unchecked {
            holdings[fid] = held - amount;
        }
        address receiver = authorization.receiver;
        _pay(receiver, amount);
        emit Withdrawn(fid, amount, receiver);
    }

    /// @notice Sets the outcome of a concluded channel (adjudicator only).
    /// @dev If the deposits cover the outcome, each participant's holding becomes its outcome
    ///      (a surplus is lost); otherwise every holding stays as deposited, so an under-funded
    ///      channel refunds its deposits.
    function setOutcome(bytes32 channelID, address[] calldata parts, uint256[] calldata newBals)
        external
    {
        require(msg.sender == adjudicator, "can only be called by the adjudicator");
        require(parts.length == newBals.length, "participants length should equal balances");
        require(!settled[channelID], "trying to set already settled channel");

        uint256 sumHeld = holdings[channelID];
        if (sumHeld != 0) holdings[channelID] = 0;
        uint256 sumOutcome;
        bytes32[] memory fids = new bytes32[](parts.length);
        for (uint256 i; i < parts.length; ++i) {
            bytes32 fid = Channel.fundingID(channelID, parts[i]);
            fids[i] = fid;
            sumHeld += holdings[fid];
            sumOutcome += newBals[i];
        }
        if (sumHeld >= sumOutcome) {
            for (uint256 i; i < parts.length; ++i) {
                holdings[fids[i]] = newBals[i];
            }
        }
        settled[channelID] = true;
        emit OutcomeSet(channelID);
    }

    /// @dev Takes `amount` of the asset from the depositor (or checks the ETH sent).
    function _takeDeposit(uint256 amount) internal virtual;

    /// @dev Sends `amount` of the asset to `receiver`.
    function _pay(address receiver, uint256 amount) internal virtual;
}
