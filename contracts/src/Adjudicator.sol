// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {AssetHolder} from "./AssetHolder.sol";
import {Channel} from "./Channel.sol";
import {Sig} from "./Sig.sol";

/// @title Adjudicator
/// @notice Resolves channel disputes on chain and pushes the final outcome of a channel to the
///         asset holders of this chain (ETHEREUM.md §6).
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
        require(channel.params.ledgerChannel, "not ledger");
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
        require(params.ledgerChannel, "not ledger");
        bytes32 id = Channel.id(params);
        require(state.channelID == id, "invalid params");
        Dispute memory d = _load(id);
        require(d.stateHash != 0, "not registered");
        require(d.stateHash == Channel.hash(state), "invalid channel state");
        require(d.phase != CONCLUDED, "channel already concluded");
        uint256 concludable = d.timeout;
        // An app channel that was never force-executed gets a second window for `progress`.
        if (d.phase == DISPUTE && d.hasApp) concludable += d.challengeDuration;
        require(block.timestamp >= concludable, "timeout not passed yet");

        d.phase = CONCLUDED;
        _storeMeta(id, d);
        emit ChannelUpdate(id, d.version, CONCLUDED, d.timeout);

        uint256[][] memory outcome = _copyBalances(state.outcome.balances);
        Channel.SubAlloc[] calldata locked = state.outcome.locked;
        if (locked.length != 0) _concludeSubs(locked, subStates, 0, outcome);
        _pushOutcome(id, params.participants, state.outcome.assets, outcome);
    }

    /// @notice Concludes a ledger channel at once with a final state signed by everyone
    ///         (overrides any running dispute) and pushes the outcome to the asset holders.
    function concludeFinal(
        Channel.Params calldata params,
        Channel.State calldata state,
        bytes[] calldata sigs
    ) external {
        require(params.ledgerChannel, "not ledger");
        require(state.isFinal, "state not final");
        require(state.outcome.locked.length == 0, "cannot have sub-channels");
        bytes32 id = Channel.id(params);
        require(state.channelID == id, "invalid params");
        bytes32 h = Channel.hash(state);
        _requireSigs(h, sigs, params.participants);
        Dispute memory d = _load(id);
        if (d.stateHash != 0) require(d.phase != CONCLUDED, "channel already concluded");

        uint64 now_ = uint64(block.timestamp);
        d.timeout = now_;
        d.challengeDuration = uint64(params.challengeDuration);
        d.version = state.version;
        d.hasApp = params.app != address(0);
        d.phase = CONCLUDED;
        d.stateHash = h;
        _store(id, d);
        emit ChannelUpdate(id, d.version, CONCLUDED, now_);

        Channel.Asset[] calldata assets = state.outcome.assets;
        uint256[][] calldata bals = state.outcome.balances;
        for (uint256 a; a < assets.length; ++a) {
            if (assets[a].chainID == block.chainid) {
                _setOutcome(assets[a].holder, id, params.participants, bals[a]);
            }
        }
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
        _registerSingle(ch);
        Channel.Allocation calldata outcome = ch.state.outcome;
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

    /// @dev Registers or refutes with one signed state (without its sub-channels).
    function _registerSingle(SignedState calldata ch) private {
        Channel.Params calldata params = ch.params;
        Channel.State calldata state = ch.state;
        bytes32 id = state.channelID;
        require(id == Channel.id(params), "invalid params");
        bytes32 h = Channel.hash(state);
        _requireSigs(h, ch.sigs, params.participants);
        if (params.virtualChannel) {
            require(params.app == address(0), "cannot have app");
            require(state.outcome.locked.length == 0, "cannot have locked funds");
        }

        Dispute memory d = _load(id);
        uint64 timeout = uint64(block.timestamp);
        if (d.stateHash != 0) {
            if (d.stateHash == h) return; // already registered: nothing to do
            require(state.version > d.version, "invalid version");
            require(d.phase == DISPUTE, "incorrect phase");
            require(block.timestamp < d.timeout, "refutation timeout passed");
            // A refutation keeps the window of the first registration.
            if (!state.isFinal) timeout = d.timeout;
        } else if (!state.isFinal) {
            timeout += uint64(params.challengeDuration);
        }
        d.timeout = timeout;
        d.challengeDuration = uint64(params.challengeDuration);
        d.version = state.version;
        d.hasApp = params.app != address(0);
        d.phase = DISPUTE;
        d.stateHash = h;
        _store(id, d);
        emit ChannelUpdate(id, d.version, DISPUTE, timeout);
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
            require(d.stateHash != 0, "not registered");
            require(d.stateHash == Channel.hash(sub), "invalid channel state");
            if (d.phase != CONCLUDED) {
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

    /// @dev Reverts unless `sigs[i]` is `participants[i]`'s signature on the state hash `h`.
    function _requireSigs(bytes32 h, bytes[] calldata sigs, address[] calldata participants)
        private
        view
    {
        require(sigs.length == participants.length, "signatures length mismatch");
        bytes32 digest = Sig.ethSignedDigest(h);
        for (uint256 i; i < sigs.length; ++i) {
            require(Sig.recover(digest, sigs[i]) == participants[i], "invalid signature");
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
