// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {App} from "perun/App.sol";
import {Channel} from "perun/Channel.sol";

/// @title HTLCApp
/// @notice A hash-time-locked conditional payment; the same on-chain rules as the Python
///         `perun_apps.htlc.HtlcApp.valid_progress`.
/// @dev appData (big-endian): payer u8, payee u8, asset u8, amount u256, lock bytes32
///      (SHA-256 of the preimage), deadline u64 (75 bytes, pending), then the 32-byte preimage
///      (107 bytes, claimed). From a pending state: a claim (payee only, preimage opens the
///      lock, block.timestamp <= deadline, amount moves payer -> payee) or a refund (payee at
///      any time, anybody after the deadline; balances unchanged); both final, the terms kept.
contract HTLCApp is App {
    uint256 private constant TERMS_LEN = 75;
    uint256 private constant CLAIMED_LEN = 107;

    /// @inheritdoc App
    function validTransition(
        Channel.Params calldata params,
        Channel.State calldata from,
        Channel.State calldata to,
        uint256 actorIdx
    ) external view override {
        bytes calldata f = from.appData;
        bytes calldata t = to.appData;
        require(f.length == TERMS_LEN, "not pending");
        require(t.length == TERMS_LEN || t.length == CLAIMED_LEN, "bad data length");
        require(keccak256(f) == keccak256(t[:TERMS_LEN]), "terms changed");
        uint256 payer = uint8(f[0]);
        uint256 payee = uint8(f[1]);
        uint256 asset = uint8(f[2]);
        uint256 amount = uint256(bytes32(f[3:35]));
        uint256 deadline = uint64(bytes8(f[67:75]));
        uint256 parts = params.participants.length;
        require(payer < parts && payee < parts && payer != payee, "bad parties");
        uint256[][] calldata o = from.outcome.balances;
        uint256[][] calldata n = to.outcome.balances;
        require(asset < o.length, "bad asset");
        require(to.isFinal, "must be final");
        bool claimed = t.length == CLAIMED_LEN;
        if (claimed) {
            require(actorIdx == payee, "only the payee claims");
            require(block.timestamp <= deadline, "too late to claim");
            require(sha256(t[TERMS_LEN:]) == bytes32(f[35:67]), "wrong preimage");
            require(o[asset][payer] >= amount, "payer balance below amount");
        } else {
            require(actorIdx == payee || block.timestamp > deadline, "refund before deadline");
        }
        for (uint256 a; a < n.length; ++a) {
            for (uint256 p; p < parts; ++p) {
                uint256 want = o[a][p];
                if (claimed && a == asset) {
                    if (p == payer) want -= amount;
                    else if (p == payee) want += amount;
                }
                require(n[a][p] == want, "balances");
            }
        }
    }
}
