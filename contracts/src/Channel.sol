// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title Channel
/// @notice The ABI types of perun-py's Ethereum backend and their canonical hashes.
/// @dev Field order and types fix the ABI encodings that participants sign (see docs/plugins/ethereum-contracts.md);
///      changing anything here breaks compatibility with every other Perun deployment.
library Channel {
    struct Params {
        uint256 challengeDuration;
        uint256 nonce;
        address[] participants;
        address app;
        bool ledgerChannel;
        bool virtualChannel;
    }

    struct State {
        bytes32 channelID;
        uint64 version;
        Allocation outcome;
        bytes appData;
        bool isFinal;
    }

    struct Allocation {
        Asset[] assets;
        // balances[asset][participant]
        uint256[][] balances;
        SubAlloc[] locked;
    }

    struct Asset {
        uint256 chainID;
        address holder;
    }

    struct SubAlloc {
        bytes32 ID;
        uint256[] balances;
        uint16[] indexMap;
    }

    /// @notice keccak256(abi.encode(params)): the channel ID.
    /// @dev Re-encodes the calldata struct in assembly (Solidity's generic encoder for nested
    ///      calldata structs costs several thousand gas more). The values read are exactly the
    ///      ones Solidity's accessors read; words that are not clean addresses/bools revert.
    function id(Params calldata params) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let m := mload(0x40)
            let p := params
            let app := calldataload(add(p, 0x60))
            let ledger := calldataload(add(p, 0x80))
            let virt := calldataload(add(p, 0xa0))
            if or(shr(160, app), or(gt(ledger, 1), gt(virt, 1))) { revert(0, 0) }
            let parts := add(p, calldataload(add(p, 0x40)))
            let n := calldataload(parts)
            if gt(add(add(parts, 0x20), mul(n, 0x20)), calldatasize()) { revert(0, 0) }
            mstore(m, 0x20)
            mstore(add(m, 0x20), calldataload(p))
            mstore(add(m, 0x40), calldataload(add(p, 0x20)))
            mstore(add(m, 0x60), 0xc0)
            mstore(add(m, 0x80), app)
            mstore(add(m, 0xa0), ledger)
            mstore(add(m, 0xc0), virt)
            mstore(add(m, 0xe0), n)
            let out := add(m, 0x100)
            calldatacopy(out, add(parts, 0x20), mul(n, 0x20))
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                if shr(160, mload(add(out, mul(i, 0x20)))) { revert(0, 0) }
            }
            h := keccak256(m, add(0x100, mul(n, 0x20)))
        }
    }

    /// @notice keccak256(abi.encode(state)) (not the signed EIP-191 digest).
    /// @dev Re-encodes the calldata struct in assembly, like `id`: the output is the canonical
    ///      encoding of the values Solidity's accessors read (dirty words revert).
    function hash(State calldata state) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            // Copies the dynamic array of 32-byte words at calldata `src` (length word first)
            // to memory `dst`; returns the end in memory.
            function copyWords(src, dst) -> end {
                let n := calldataload(src)
                let size := add(0x20, mul(n, 0x20))
                if gt(add(src, size), calldatasize()) { revert(0, 0) }
                calldatacopy(dst, src, size)
                end := add(dst, size)
            }
            // Checks that every word of the array copied to `dst` is below 2**bits.
            function checkClean(dst, bits) {
                let n := mload(dst)
                for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                    if shr(bits, mload(add(dst, mul(add(i, 1), 0x20)))) { revert(0, 0) }
                }
            }
            // Encodes a uint256[][] (offsets, then each row) from calldata `src` to `dst`.
            function encodeBalances(src, dst) -> end {
                let n := calldataload(src)
                if gt(add(add(src, 0x20), mul(n, 0x20)), calldatasize()) { revert(0, 0) }
                mstore(dst, n)
                let heads := add(dst, 0x20)
                let cur := add(heads, mul(n, 0x20))
                for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                    mstore(add(heads, mul(i, 0x20)), sub(cur, heads))
                    cur := copyWords(add(add(src, 0x20), calldataload(add(add(src, 0x20), mul(i, 0x20)))), cur)
                }
                end := cur
            }
            // Encodes a SubAlloc[] from calldata `src` to `dst` (index maps must fit uint16).
            function encodeLocked(src, dst) -> end {
                let n := calldataload(src)
                if gt(add(add(src, 0x20), mul(n, 0x20)), calldatasize()) { revert(0, 0) }
                mstore(dst, n)
                let heads := add(dst, 0x20)
                let cur := add(heads, mul(n, 0x20))
                for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                    mstore(add(heads, mul(i, 0x20)), sub(cur, heads))
                    let sub_ := add(add(src, 0x20), calldataload(add(add(src, 0x20), mul(i, 0x20))))
                    mstore(cur, calldataload(sub_))
                    mstore(add(cur, 0x20), 0x60)
                    let bals := add(cur, 0x60)
                    let idx := copyWords(add(sub_, calldataload(add(sub_, 0x20))), bals)
                    mstore(add(cur, 0x40), sub(idx, cur))
                    cur := copyWords(add(sub_, calldataload(add(sub_, 0x40))), idx)
                    checkClean(idx, 16)
                }
                end := cur
            }

            let m := mload(0x40)
            let s := state
            let version := calldataload(add(s, 0x20))
            let isFinal := calldataload(add(s, 0x80))
            if or(shr(64, version), gt(isFinal, 1)) { revert(0, 0) }
            mstore(m, 0x20)
            let t := add(m, 0x20)
            mstore(t, calldataload(s))
            mstore(add(t, 0x20), version)
            mstore(add(t, 0x40), 0xa0)
            mstore(add(t, 0x80), isFinal)

            // outcome: (Asset[] assets, uint256[][] balances, SubAlloc[] locked)
            let a := add(s, calldataload(add(s, 0x40)))
            let o := add(t, 0xa0)
            let cur := add(o, 0x60)
            mstore(o, 0x60)
            {
                let assets := add(a, calldataload(a))
                let n := calldataload(assets)
                let size := add(0x20, mul(n, 0x40))
                if gt(add(assets, size), calldatasize()) { revert(0, 0) }
                calldatacopy(cur, assets, size)
                for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                    if shr(160, mload(add(cur, add(0x40, mul(i, 0x40))))) { revert(0, 0) }
                }
                cur := add(cur, size)
            }
            mstore(add(o, 0x20), sub(cur, o))
            cur := encodeBalances(add(a, calldataload(add(a, 0x20))), cur)
            mstore(add(o, 0x40), sub(cur, o))
            cur := encodeLocked(add(a, calldataload(add(a, 0x40))), cur)

            // appData: length, bytes, zero padding to a word boundary
            mstore(add(t, 0x60), sub(cur, t))
            let d := add(s, calldataload(add(s, 0x60)))
            let len := calldataload(d)
            if gt(add(add(d, 0x20), len), calldatasize()) { revert(0, 0) }
            mstore(cur, len)
            let padded := and(add(len, 31), not(31))
            mstore(add(cur, padded), 0) // the last word: its padding must be zero
            calldatacopy(add(cur, 0x20), add(d, 0x20), len)
            cur := add(add(cur, 0x20), padded)
            h := keccak256(m, sub(cur, m))
        }
    }

    /// @notice Where `participant`'s deposits for `channelID` are held.
    function fundingID(bytes32 channelID, address participant) internal pure returns (bytes32 fid) {
        // keccak256(abi.encode(channelID, participant)) computed in scratch space, which
        // saves the memory allocation of abi.encode.
        assembly ("memory-safe") {
            mstore(0x00, channelID)
            mstore(0x20, participant)
            fid := keccak256(0x00, 0x40)
        }
    }

    /// @notice Reverts unless both asset arrays are equal.
    function requireEqualAssets(Asset[] calldata a, Asset[] calldata b) internal pure {
        require(a.length == b.length, "Asset[]: unequal length");
        for (uint256 i; i < a.length; ++i) {
            requireEqualAsset(a[i], b[i]);
        }
    }

    /// @notice Reverts unless both assets are equal.
    function requireEqualAsset(Asset calldata a, Asset calldata b) internal pure {
        require(a.chainID == b.chainID, "Asset: unequal chainID");
        require(a.holder == b.holder, "Asset: unequal holder");
    }

    /// @notice Reverts unless both sub-allocation arrays are equal.
    function requireEqualSubAllocs(SubAlloc[] calldata a, SubAlloc[] calldata b) internal pure {
        require(a.length == b.length, "SubAlloc[]: unequal length");
        for (uint256 i; i < a.length; ++i) {
            require(a[i].ID == b[i].ID, "SubAlloc: unequal ID");
            requireEqualUints(a[i].balances, b[i].balances);
            requireEqualUint16s(a[i].indexMap, b[i].indexMap);
        }
    }

    /// @notice Reverts unless both arrays are equal.
    function requireEqualUints(uint256[] calldata a, uint256[] memory b) internal pure {
        require(a.length == b.length, "uint256[]: unequal length");
        for (uint256 i; i < a.length; ++i) {
            require(a[i] == b[i], "uint256[]: unequal item");
        }
    }

    /// @notice Reverts unless both arrays are equal.
    function requireEqualUint16s(uint16[] calldata a, uint16[] calldata b) internal pure {
        require(a.length == b.length, "uint16[]: unequal length");
        for (uint256 i; i < a.length; ++i) {
            require(a[i] == b[i], "uint16[]: unequal item");
        }
    }
}
