// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title Sig
/// @notice EIP-191 signatures over 32-byte hashes, in the strict form that perun-py accepts:
///         65 bytes `r ‖ s ‖ v`, `v` in {27, 28}, `s` in the lower half of the curve order.
/// @dev The revert strings equal those of OpenZeppelin 4.x `ECDSA.recover`, which other Perun
///      deployments use, so clients map refusals the same way whatever contracts they talk to.
library Sig {
    /// @dev secp256k1n / 2: the largest `s` of a canonical (non-malleable) signature.
    uint256 private constant HALF_N =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @notice keccak256("\x19Ethereum Signed Message:\n32" ‖ hash).
    function ethSignedDigest(bytes32 hash) internal pure returns (bytes32 digest) {
        assembly ("memory-safe") {
            // The 28-byte prefix is left-aligned in word 0; the hash follows it directly.
            mstore(0x00, "\x19Ethereum Signed Message:\n32")
            mstore(0x1c, hash)
            digest := keccak256(0x00, 0x3c)
        }
    }

    /// @notice The address whose key made `sig` over `digest`; reverts on malformed signatures.
    function recover(bytes32 digest, bytes calldata sig) internal view returns (address signer) {
        require(sig.length == 65, "ECDSA: invalid signature length");
        bytes32 r;
        uint256 s;
        uint256 v;
        assembly ("memory-safe") {
            r := calldataload(sig.offset)
            s := calldataload(add(sig.offset, 0x20))
            v := byte(0, calldataload(add(sig.offset, 0x40)))
        }
        require(s <= HALF_N, "ECDSA: invalid signature 's' value");
        require(v == 27 || v == 28, "ECDSA: invalid signature 'v' value");
        assembly ("memory-safe") {
            // ecrecover precompile; on failure it returns no data, so clear the output word.
            let m := mload(0x40)
            mstore(m, digest)
            mstore(add(m, 0x20), v)
            mstore(add(m, 0x40), r)
            mstore(add(m, 0x60), s)
            mstore(0x00, 0)
            pop(staticcall(gas(), 0x01, m, 0x80, 0x00, 0x20))
            signer := mload(0x00)
        }
        require(signer != address(0), "ECDSA: invalid signature");
    }
}
