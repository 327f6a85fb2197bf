// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {AssetHolder} from "./AssetHolder.sol";
import {Channel} from "./Channel.sol";
import {Sig} from "./Sig.sol";

/// @title Adjudicator
/// @notice Resolves channel disputes on chain and pushes the final outcome of a channel to the
///         asset holders of this chain (see docs/plugins/ethereum-contracts.md).
/// @dev A dispute goes DISPUTE (refutable until `timeout`) → FORCEEXEC (app channels only,
///      each `progress` restarts the window) → CONCLUDED. Every change emits `ChannelUpdate`.
contract Adjudicator {
    /// @notice A state with its params and one signature per participant (in their order).
    struct SignedState {
        Channel.Params params;
        Channel.State state;
        bytes[] sigs;
    }

    /// @notice The on-chain record of a channel; `stateHash == 0` means "not registered".
    struct Dispute {
        uint64 timeout;
        uint64 challengeDuration;
        uint64 version;
        bool hasApp;
        uint8 phase;
        bytes32 stateHash;
    }

    uint8 internal constant DISPUTE = 0;
    uint8 internal constant FORCEEXEC = 1;
    uint8 internal constant CONCLUDED = 2;

    /// @notice The dispute record of every channel ID.
    mapping(bytes32 => Dispute) public disputes;

    /// @notice Emitted whenever the dispute record of `channelID` changes.
    event ChannelUpdate(bytes32 indexed channelID, uint64 version, uint8 phase, uint64 timeout);

    // ---------------------------------------------------------------- external interface

    /// @notice Registers a ledger channel's state and the states of its sub-channels, or
    ///         refutes a registered state with a newer one.
    /// @param channel the ledger channel's signed state.
    /// @param subChannels the signed states of every channel in `channel.state.outcome.locked`,
    ///        recursively, in depth-first pre-order.
    function register(SignedState calldata channel, SignedState[] calldata subChannels) external {
        uint256 ledger;
        assembly ("memory-safe") {
            ledger := calldataload(add(add(channel, calldataload(channel)), 0x80))
        }
        require(_bool(ledger), "not ledger");
        _registerTree(channel, subChannels, 0);
    }

    /// @notice Advances an app channel after its refutation window by one app transition
    ///         signed by the actor alone (force execution).
    function progress(
        Channel.Params calldata params,
        Channel.State calldata stateOld,
        Channel.State calldata state,
        uint256 actorIdx,
        bytes calldata sig
    ) external {
        bytes32 id = state.channelID;
        Dispute memory d = _load(id);
        require(d.stateHash != 0, "not registered");
        if (d.phase == DISPUTE) {
            require(block.timestamp >= d.timeout, "timeout not passed");
        } else if (d.phase == FORCEEXEC) {
            require(block.timestamp < d.timeout, "timeout passed");
        } else {
            revert("invalid phase");
        }
        require(params.app != address(0), "must have app");
        require(actorIdx < params.participants.length, "actorIdx out of range");
        require(Channel.id(params) == id, "invalid params");
        require(d.stateHash == Channel.hash(stateOld), "wrong old state");
        bytes32 h = Channel.hash(state);
        require(
            Sig.recover(Sig.ethSignedDigest(h), sig) == params.participants[actorIdx],
            "invalid signature"
        );
        _requireValidTransition(params, stateOld, state, actorIdx);

        uint64 timeout = uint64(block.timestamp);
        if (!state.isFinal) timeout += d.challengeDuration;
        d.timeout = timeout;
        d.version = state.version;
        d.phase = FORCEEXEC;
        d.stateHash = h;
        _store(id, d);
        emit ChannelUpdate(id, d.version, FORCEEXEC, timeout);
    }

    /// @notice Concludes a registered ledger channel (and its sub-channels) after its timeout
    ///         and pushes the outcome to the asset holders.
    /// @param subStates the registered states of every sub-channel, in depth-first pre-order.
    function conclude(
        Channel.Params calldata params,
        Channel.State calldata state,
        Channel.State[] calldata subStates
    ) external {
        require(_bool(_word(params, 0x80)), "not ledger");
        bytes32 id = Channel.id(params);
        require(bytes32(_word(state, 0)) == id, "invalid params");
        uint256 slot = _slot(id);
        (uint256 meta, bytes32 old) = _loadRecord(slot);
        require(old != 0, "not registered");
        require(old == Channel.hash(state), "invalid channel state");
        uint256 phase = uint8(meta >> 200);
        require(phase != CONCLUDED, "channel already concluded");
        uint256 timeout = uint64(meta);
        uint256 concludable = timeout;
        // An app channel that was never force-executed gets a second window for `progress`.
        if (phase == DISPUTE && uint8(meta >> 192) != 0) concludable += uint64(meta >> 64);
        require(block.timestamp >= concludable, "timeout not passed yet");

        _storeMeta(slot, (meta & ~(uint256(0xff) << 200)) | (uint256(CONCLUDED) << 200));
        emit ChannelUpdate(id, uint64(meta >> 128), CONCLUDED, uint64(timeout));

        Channel.SubAlloc[] calldata locked = state.outcome.locked;
        if (locked.length == 0) {
            // No sub-channels: the outcome rows go to the asset holders straight from calldata.
            _pushRows(id, params, state, false);
            return;
        }
        uint256[][] memory outcome = _copyBalances(state.outcome.balances);
        _concludeSubs(locked, subStates, 0, outcome);
        _pushOutcome(id, params.participants, state.outcome.assets, outcome);
    }

    /// @notice Concludes a ledger channel at once with a final state signed by everyone
    ///         (overrides any running dispute) and pushes the outcome to the asset holders.
    function concludeFinal(
        Channel.Params calldata params,
        Channel.State calldata state,
        bytes[] calldata sigs
    ) external {
        require(_bool(_word(params, 0x80)), "not ledger");
        require(_bool(_word(state, 0x80)), "state not final");
        require(_lockedLength(state) == 0, "cannot have sub-channels");
        bytes32 id = Channel.id(params);
        require(bytes32(_word(state, 0)) == id, "invalid params");
        bytes32 h = Channel.hash(state);
        uint256 sigsPtr;
        assembly ("memory-safe") {
            sigsPtr := sub(sigs.offset, 0x20)
        }
        _requireSigs(h, sigsPtr, params);
        uint256 slot = _slot(id);
        (uint256 meta, bytes32 old) = _loadRecord(slot);
        if (old != 0) require(uint8(meta >> 200) != CONCLUDED, "channel already concluded");

        uint64 now_ = uint64(block.timestamp);
        uint64 version = uint64(_word(state, 0x20));
        _storeMeta(slot, _meta(now_, _word(params, 0), version, _word(params, 0x60), CONCLUDED));
        assembly ("memory-safe") {
            sstore(add(slot, 1), h)
        }
        emit ChannelUpdate(id, version, CONCLUDED, now_);
        _pushRows(id, params, state, true);
    }

    /// @notice The channel ID of `params`: keccak256(abi.encode(params)).
    function channelID(Channel.Params calldata params) external pure returns (bytes32) {
        return Channel.id(params);
    }

    /// @notice keccak256(abi.encode(state)): the hash stored in `disputes` (not the signed digest).
    function hashState(Channel.State calldata state) external pure returns (bytes32) {
        return Channel.hash(state);
    }

    // ---------------------------------------------------------------- registration

    /// @dev Registers `ch`, then its sub-channels from `subs[next..]`; returns the next index.
    function _registerTree(
        SignedState calldata ch,
        SignedState[] calldata subs,
        uint256 next
    ) private returns (uint256) {
        Channel.Allocation calldata outcome = _registerSingle(ch).outcome;
        Channel.SubAlloc[] calldata locked = outcome.locked;
        if (locked.length == 0) return next;
        require(locked.length <= subs.length, "subChannels: too short");
        for (uint256 s; s < locked.length; ++s) {
            SignedState calldata sub = subs[next++];
            require(locked[s].ID == sub.state.channelID, "invalid sub-channel id");
            next = _registerTree(sub, subs, next);
            Channel.requireEqualAssets(outcome.assets, sub.state.outcome.assets);
            Channel.requireEqualUints(locked[s].balances, _total(sub.state.outcome));
        }
        return next;
    }

    /// @dev Registers or refutes with one signed state (without its sub-channels); returns
    ///      the state.
    function _registerSingle(SignedState calldata ch) private returns (Channel.State calldata state) {
        Channel.Params calldata params;
        uint256 sigsPtr;
        assembly ("memory-safe") {
            params := add(ch, calldataload(ch))
            state := add(ch, calldataload(add(ch, 0x20)))
            sigsPtr := add(ch, calldataload(add(ch, 0x40)))
        }
        bytes32 id = bytes32(_word(state, 0));
        require(id == Channel.id(params), "invalid params");
        bytes32 h = Channel.hash(state);
        _requireSigs(h, sigsPtr, params);
        // Channel.id and Channel.hash have checked that these words are clean.
        uint256 app = _word(params, 0x60);
        if (_word(params, 0xa0) != 0) {
            require(app == 0, "cannot have app");
            require(_lockedLength(state) == 0, "cannot have locked funds");
        }

        uint256 slot = _slot(id);
        (uint256 meta, bytes32 old) = _loadRecord(slot);
        uint64 version = uint64(_word(state, 0x20));
        bool isFinal = _word(state, 0x80) != 0;
        uint256 cd = _word(params, 0);
        uint64 timeout = uint64(block.timestamp);
        if (old != 0) {
            if (old == h) return state; // already registered: nothing to do
            require(version > uint64(meta >> 128), "invalid version");
            require(uint8(meta >> 200) == DISPUTE, "incorrect phase");
            require(block.timestamp < uint64(meta), "refutation timeout passed");
            // A refutation keeps the window of the first registration.
            if (!isFinal) timeout = uint64(meta);
        } else if (!isFinal) {
            timeout += uint64(cd);
        }
        _storeMeta(slot, _meta(timeout, cd, version, app, DISPUTE));
        assembly ("memory-safe") {
            sstore(add(slot, 1), h)
        }
        emit ChannelUpdate(id, version, DISPUTE, timeout);
    }

    /// @dev Per asset: the free balances plus the funds locked in sub-channels.
    function _total(Channel.Allocation calldata alloc) private pure returns (uint256[] memory sums) {
        uint256 numAssets = alloc.assets.length;
        Channel.SubAlloc[] calldata locked = alloc.locked;
        sums = new uint256[](numAssets);
        for (uint256 a; a < numAssets; ++a) {
            uint256[] calldata row = alloc.balances[a];
            uint256 t;
            for (uint256 p; p < row.length; ++p) t += row[p];
            for (uint256 s; s < locked.length; ++s) t += locked[s].balances[a];
            sums[a] = t;
        }
    }

    // ---------------------------------------------------------------- conclusion

    /// @dev Concludes the sub-channels of `locked` with `subStates[next..]` and adds their
    ///      outcomes into the parent's `outcome`; returns the next index.
    function _concludeSubs(
        Channel.SubAlloc[] calldata locked,
        Channel.State[] calldata subStates,
        uint256 next,
        uint256[][] memory outcome
    ) private returns (uint256) {
        for (uint256 s; s < locked.length; ++s) {
            require(next < subStates.length, "subStates: too short");
            Channel.State calldata sub = subStates[next++];
            bytes32 id = sub.channelID;
            require(locked[s].ID == id, "invalid subchannel id");
            Dispute memory d = _load(id);
            // A sub-channel is registered with the state that locks it (a tree is always
            // registered whole), so an unregistered one cannot match: Channel.hash is never 0.
            require(d.stateHash == Channel.hash(sub), "invalid channel state");
            if (d.phase != CONCLUDED) {
                // An app sub-channel keeps its force-execution window: the tree concludes
                // only once it could conclude on its own.
                if (d.hasApp) {
                    uint256 extra = d.phase == DISPUTE ? d.challengeDuration : 0;
                    require(block.timestamp >= d.timeout + extra, "timeout not passed yet");
                }
                d.phase = CONCLUDED;
                _storeMeta(id, d);
                emit ChannelUpdate(id, d.version, CONCLUDED, d.timeout);
            }
            uint256[][] memory subOutcome = _copyBalances(sub.outcome.balances);
            if (sub.outcome.locked.length != 0) {
                next = _concludeSubs(sub.outcome.locked, subStates, next, subOutcome);
            }
            uint16[] calldata indexMap = locked[s].indexMap;
            for (uint256 a; a < subOutcome.length; ++a) {
                uint256[] memory from = subOutcome[a];
                uint256[] memory to = outcome[a];
                for (uint256 j; j < indexMap.length; ++j) to[indexMap[j]] += from[j];
            }
        }
        return next;
    }

    /// @dev Hands every asset of this chain its outcome row.
    function _pushOutcome(
        bytes32 id,
        address[] calldata participants,
        Channel.Asset[] calldata assets,
        uint256[][] memory outcome
    ) private {
        for (uint256 a; a < assets.length; ++a) {
            if (assets[a].chainID == block.chainid) {
                AssetHolder(assets[a].holder).setOutcome(id, participants, outcome[a]);
            }
        }
    }

    /// @dev `AssetHolder(holder).setOutcome(id, participants, bals)` with both arrays copied
    ///      straight from calldata (the generic encoder re-validates every element).
    function _setOutcome(
        address holder,
        bytes32 id,
        address[] calldata participants,
        uint256[] calldata bals
    ) private {
        require(holder.code.length != 0, "asset holder has no code");
        assembly ("memory-safe") {
            let m := mload(0x40)
            let n := participants.length
            let k := bals.length
            mstore(m, shl(224, 0xfc79a66d)) // setOutcome(bytes32,address[],uint256[])
            mstore(add(m, 0x04), id)
            mstore(add(m, 0x24), 0x60)
            mstore(add(m, 0x44), add(0x80, mul(n, 0x20)))
            mstore(add(m, 0x64), n)
            calldatacopy(add(m, 0x84), participants.offset, mul(n, 0x20))
            let b := add(add(m, 0x84), mul(n, 0x20))
            mstore(b, k)
            calldatacopy(add(b, 0x20), bals.offset, mul(k, 0x20))
            if iszero(call(gas(), holder, 0, m, sub(add(add(b, 0x20), mul(k, 0x20)), m), 0, 0)) {
                returndatacopy(m, 0, returndatasize())
                revert(m, returndatasize())
            }
        }
    }

    function _copyBalances(uint256[][] calldata rows) private pure returns (uint256[][] memory) {
        return rows;
    }

    // ---------------------------------------------------------------- checks

    /// @dev Reverts unless the `bytes[]` at calldata `sigsPtr` (length word first) holds
    ///      `participants[i]`'s signature on the state hash `h` at every index `i`.
    ///      `Channel.id(params)` must have run before (it bounds and cleans the participants).
    function _requireSigs(bytes32 h, uint256 sigsPtr, Channel.Params calldata params) private view {
        uint256 n;
        uint256 parts;
        uint256 numParts;
        assembly ("memory-safe") {
            n := calldataload(sigsPtr)
            let ps := add(params, calldataload(add(params, 0x40)))
            numParts := calldataload(ps)
            parts := add(ps, 0x20)
        }
        require(n == numParts, "signatures length mismatch");
        bytes32 digest = Sig.ethSignedDigest(h);
        for (uint256 i; i < n; ) {
            bytes calldata sig;
            address signer;
            assembly ("memory-safe") {
                let heads := add(sigsPtr, 0x20)
                let p := add(heads, calldataload(add(heads, shl(5, i))))
                let len := calldataload(p)
                // The bounds Solidity's decoder enforces on a `bytes` element.
                if or(gt(len, 0xffffffffffffffff), gt(add(add(p, 0x20), len), calldatasize())) {
                    revert(0, 0)
                }
                sig.offset := add(p, 0x20)
                sig.length := len
                signer := calldataload(add(parts, shl(5, i)))
            }
            require(Sig.recover(digest, sig) == signer, "invalid signature");
            unchecked {
                ++i;
            }
        }
    }

    /// @dev The generic checks of a force-executed transition, then the app's own rule.
    function _requireValidTransition(
        Channel.Params calldata params,
        Channel.State calldata from,
        Channel.State calldata to,
        uint256
    ) private view {
        require(to.version == from.version + 1, "version must increment by one");
        require(!from.isFinal, "cannot progress from final state");
        Channel.Allocation calldata fa = from.outcome;
        Channel.Allocation calldata ta = to.outcome;
        require(fa.balances.length == ta.balances.length, "balances length mismatch");
        require(fa.assets.length == ta.assets.length, "assets length mismatch");
        for (uint256 a; a < ta.assets.length; ++a) {
            Channel.requireEqualAsset(fa.assets[a], ta.assets[a]);
        }
        Channel.requireEqualSubAllocs(fa.locked, ta.locked);
        uint256 n = params.participants.length;
        for (uint256 a; a < ta.balances.length; ++a) {
            uint256[] calldata o = fa.balances[a];
            uint256[] calldata b = ta.balances[a];
            require(o.length == n, "old balances length mismatch");
            require(b.length == n, "new balances length mismatch");
            uint256 sumOld;
            uint256 sumNew;
            for (uint256 p; p < n; ++p) {
                sumOld += o[p];
                sumNew += b[p];
            }
            require(sumOld == sumNew, "sum of balances mismatch");
        }
        _callApp(params.app);
    }

    /// @dev Calls `App(app).validTransition(params, stateOld, state, actorIdx)` with the
    ///      arguments of the running `progress` call. `validTransition(P,S,S,uint256)` has the
    ///      head of `progress(P,S,S,uint256,bytes)` minus the trailing `sig` offset (which the
    ///      app's decoder ignores), so forwarding the argument bytes unchanged passes exactly
    ///      the values this call decoded, without re-encoding three structs. The app's revert
    ///      bubbles up.
    function _callApp(address app) private view {
        require(app.code.length != 0, "app has no code");
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, shl(224, 0x6d7eba0d)) // validTransition selector
            let size := sub(calldatasize(), 4)
            calldatacopy(add(m, 4), 4, size)
            if iszero(staticcall(gas(), app, m, add(size, 4), 0, 0)) {
                returndatacopy(m, 0, returndatasize())
                revert(m, returndatasize())
            }
        }
    }

    // ---------------------------------------------------------------- calldata and storage

    /// @dev Hands every asset of this chain its row of `state.outcome.balances`, copied
    ///      straight from calldata. `named` picks the refusal of a holder without code: the
    ///      reason string (concludeFinal) or an empty revert (conclude, like a Solidity call).
    function _pushRows(bytes32 id, Channel.Params calldata params, Channel.State calldata state, bool named)
        private
    {
        address[] calldata participants = params.participants;
        Channel.Allocation calldata outcome = state.outcome;
        uint256 assets;
        uint256 numAssets;
        uint256 rows;
        uint256 numRows;
        assembly ("memory-safe") {
            // Channel.hash has bounded both arrays and checked that the holders are clean.
            assets := add(outcome, calldataload(outcome))
            numAssets := calldataload(assets)
            rows := add(outcome, calldataload(add(outcome, 0x20)))
            numRows := calldataload(rows)
        }
        for (uint256 a; a < numAssets; ) {
            uint256 chainId;
            address holder;
            assembly ("memory-safe") {
                let asset := add(add(assets, 0x20), shl(6, a))
                chainId := calldataload(asset)
                holder := calldataload(add(asset, 0x20))
            }
            if (chainId == block.chainid) {
                if (a >= numRows) _panic(0x32);
                uint256[] calldata row;
                assembly ("memory-safe") {
                    let heads := add(rows, 0x20)
                    let r := add(heads, calldataload(add(heads, shl(5, a))))
                    row.offset := add(r, 0x20)
                    row.length := calldataload(r)
                }
                if (named) require(holder.code.length != 0, "asset holder has no code");
                else if (holder.code.length == 0) revert();
                _setOutcome(holder, id, participants, row);
            }
            unchecked {
                ++a;
            }
        }
    }

    /// @dev The word at `offset` of the calldata struct at `ptr`.
    function _word(Channel.Params calldata ptr, uint256 offset) private pure returns (uint256 w) {
        assembly ("memory-safe") {
            w := calldataload(add(ptr, offset))
        }
    }

    /// @dev The word at `offset` of the calldata struct at `ptr`.
    function _word(Channel.State calldata ptr, uint256 offset) private pure returns (uint256 w) {
        assembly ("memory-safe") {
            w := calldataload(add(ptr, offset))
        }
    }

    /// @dev A bool word as Solidity's decoder reads it (dirty words revert).
    function _bool(uint256 w) private pure returns (bool b) {
        if (w > 1) revert();
        b = w != 0;
    }

    /// @dev `state.outcome.locked.length`.
    function _lockedLength(Channel.State calldata state) private pure returns (uint256 n) {
        assembly ("memory-safe") {
            let o := add(state, calldataload(add(state, 0x40)))
            n := calldataload(add(o, calldataload(add(o, 0x40))))
        }
    }

    /// @dev Reverts with Solidity's `Panic(code)`.
    function _panic(uint256 code) private pure {
        assembly ("memory-safe") {
            mstore(0x00, shl(224, 0x4e487b71))
            mstore(0x04, code)
            revert(0x00, 0x24)
        }
    }

    /// @dev The first storage slot of `disputes[id]`.
    function _slot(bytes32 id) private view returns (uint256 slot) {
        Dispute storage s = disputes[id];
        assembly ("memory-safe") {
            slot := s.slot
        }
    }

    /// @dev The first slot of a dispute, packed in Solidity's order (challengeDuration is
    ///      truncated to 64 bits like `uint64(params.challengeDuration)`).
    function _meta(uint64 timeout, uint256 cd, uint64 version, uint256 app, uint8 phase)
        private
        pure
        returns (uint256)
    {
        return uint256(timeout) | (uint256(uint64(cd)) << 64) | (uint256(version) << 128)
            | (app != 0 ? uint256(1) << 192 : 0) | (uint256(phase) << 200);
    }

    // ---------------------------------------------------------------- storage

    /// @dev Reads both slots of a dispute with exactly two SLOADs.
    function _load(bytes32 id) private view returns (Dispute memory d) {
        Dispute storage s = disputes[id];
        uint256 meta;
        bytes32 h;
        assembly ("memory-safe") {
            meta := sload(s.slot)
            h := sload(add(s.slot, 1))
        }
        d.timeout = uint64(meta);
        d.challengeDuration = uint64(meta >> 64);
        d.version = uint64(meta >> 128);
        d.hasApp = uint8(meta >> 192) != 0;
        d.phase = uint8(meta >> 200);
        d.stateHash = h;
    }

    /// @dev Writes both slots of a dispute.
    function _store(bytes32 id, Dispute memory d) private {
        _storeMeta(id, d);
        bytes32 h = d.stateHash;
        Dispute storage s = disputes[id];
        assembly ("memory-safe") {
            sstore(add(s.slot, 1), h)
        }
    }

    /// @dev Writes the packed first slot of the dispute at `slot`.
    /// @dev A dispute's two slots as they are stored: the packed first slot and the state hash
    ///      (zero: nothing registered).
    function _loadRecord(uint256 slot) private view returns (uint256 meta, bytes32 stateHash) {
        assembly ("memory-safe") {
            meta := sload(slot)
            stateHash := sload(add(slot, 1))
        }
    }

    function _storeMeta(uint256 slot, uint256 meta) private {
        assembly ("memory-safe") {
            sstore(slot, meta)
        }
    }

    /// @dev Writes the first slot (everything but the state hash), in Solidity's packing order.
    function _storeMeta(bytes32 id, Dispute memory d) private {
        uint256 meta = uint256(d.timeout) | (uint256(d.challengeDuration) << 64)
            | (uint256(d.version) << 128) | (d.hasApp ? uint256(1) << 192 : 0)
            | (uint256(d.phase) << 200);
        Dispute storage s = disputes[id];
        assembly ("memory-safe") {
            sstore(s.slot, meta)
        }
    }
}
