"""The contracts on a real anvil node: happy paths, every documented revert rule, the
outcome rules and the timing rules (exact boundaries, via block timestamps)."""

from __future__ import annotations

from typing import Any

import pytest
from eth_helpers import (
    ALICE,
    ALICE_KEY,
    BOB,
    BOB_KEY,
    CAROL,
    CAROL_KEY,
    ETH,
    Chain,
    D,
    checksum,
    events,
    make_params,
    make_state,
    signed,
    sigs_for,
)
from perun_eth.encoding import (
    SECP256K1_N,
    EthSignatureFormatError,
    channel_id,
    check_signature_format,
    funding_id,
    hash_state,
    keccak256,
    params_abi,
    sign_state,
    state_abi,
)

from perun_core.channel import Allocation, Asset, Params, State, SubAlloc
from perun_core.channel.types import Address

P = params_abi
S = state_abi
DISPUTE, FORCEEXEC, CONCLUDED = 0, 1, 2


def block_time(c: Chain, receipt: Any) -> int:
    return int(c.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def fails_at(c: Chain, fn: Any, timestamp: int, reason: str) -> None:
    """A transaction mined at exactly ``timestamp`` reverts with ``reason``."""
    c.next_tx_at(timestamp)
    receipt = c.send_failing(fn)
    assert block_time(c, receipt) == timestamp
    # The failed transaction's block is now the latest: replaying sees the same time.
    assert c.reason(fn) == reason


def succeeds_at(c: Chain, fn: Any, timestamp: int) -> Any:
    c.next_tx_at(timestamp)
    receipt = c.send(fn, gas=3_000_000)
    assert block_time(c, receipt) == timestamp
    return receipt


def channel_updates(c: Chain, receipt: Any) -> list[tuple[bytes, int, int, int]]:
    return [
        (bytes(e.args.channelID), e.args.version, e.args.phase, e.args.timeout)
        for e in events(c.adj.events.ChannelUpdate, receipt)
    ]


def conclude_final(c: Chain, params: Params, state: State, sigs: list[bytes] | None = None) -> Any:
    return c.adj.functions.concludeFinal(P(params), S(state), sigs or sigs_for(params, state))


def register_fn(c: Chain, params: Params, state: State, sigs: list[bytes] | None = None) -> Any:
    return c.adj.functions.register(signed(params, state, sigs), [])


# --- encodings on the node --------------------------------------------------------------------


def test_channel_id_and_hash_state_on_node_match_test_vector(chain: Chain) -> None:
    p = make_params(nonce=0xB0B0FACE)
    assert p.id.hex() == "763660f9c482e6e749e4f9c5d6c53c3b17d260ed88ce6b73cd2ef0e71e180a1c"
    s = make_state(p, [Asset(31337, b"\x11" * 20)], [[ETH, 2 * ETH]], version=5, final=True)
    assert bytes(chain.adj.functions.channelID(P(p)).call()) == p.id
    assert bytes(chain.adj.functions.hashState(S(s)).call()) == hash_state(s)
    assert hash_state(s).hex() == (
        "2967753697b4b018e94cdd0bfd7007b3dae8e993034cd006d76fcfe708dab491"
    )


def test_test_vector_signatures_are_accepted(chain: Chain) -> None:
    c = chain
    p = make_params(nonce=0xB0B0FACE)
    s = make_state(p, [Asset(31337, b"\x11" * 20)], [[ETH, 2 * ETH]], version=5, final=True)
    sigs = [
        bytes.fromhex(
            "159eaf9a6a41f948974795ad2f12a46632825e537c96a3e748d522454015ac12"
            "321d7beef7381df881241ff10ee305275e0a26af69dadef506c7c26c444fe5971b"
        ),
        bytes.fromhex(
            "6cb727b9cf7c0ea7a9f4474c5f032e78f1125b5b59dd11b17dad7e6306258723"
            "0ccf578e635733789c5c411153e549f238ce2a4a6e37c9156a5c5c934b76425b1b"
        ),
    ]
    assert sigs == sigs_for(p, s)
    # register: a final state is concludable at once.
    receipt = c.send(register_fn(c, p, s, sigs))
    t = block_time(c, receipt)
    assert channel_updates(c, receipt) == [(p.id, 5, DISPUTE, t)]
    # concludeFinal overrides the running dispute; 0x1111… becomes a real ETH holder.
    code = c.w3.eth.get_code(c.dep.asset_holder_eth)
    c.node.call("anvil_setCode", "0x" + "11" * 20, "0x" + bytes(code).hex())
    c.send(conclude_final(c, p, s, sigs))
    assert c.dispute(p)[4] == CONCLUDED
    holder = c.w3.eth.contract(address=checksum(b"\x11" * 20), abi=c.eth_holder.abi)
    assert holder.functions.settled(p.id).call() is True


def test_hash_state_on_node_matches_python_for_varied_shapes(chain: Chain) -> None:
    c = chain
    three = (ALICE, BOB, CAROL)
    p = make_params(nonce=2**256 - 1, participants=three, app=c.dep.trivial_app, ledger=False)
    assert bytes(c.adj.functions.channelID(P(p)).call()) == p.id
    assets = [c.eth_asset, c.erc20_asset, Asset(2**256 - 1, b"\xff" * 20)]
    subs = [
        SubAlloc(b"\x01" * 32, (1, 2, 3), (2, 0, 1)),
        SubAlloc(b"\x02" * 32, (0, 2**256 - 1, 7), (0,)),
    ]
    for data in (b"", b"\x01", b"x" * 31, b"y" * 32, b"z" * 33, bytes(range(256))):
        for locked in ((), subs[:1], subs):
            s = make_state(
                p,
                assets,
                [[1, 2, 3], [0, 0, 0], [2**256 - 1, 0, 5]],
                version=2**64 - 1,
                locked=locked,
                data=data,
            )
            assert bytes(c.adj.functions.hashState(S(s)).call()) == hash_state(s), (data, locked)
    empty = State(p.id, 0, Allocation((), ()), data=b"")
    assert bytes(c.adj.functions.hashState(S(empty)).call()) == hash_state(empty)


def test_channel_id_on_node_for_many_participants(chain: Chain) -> None:
    parts = tuple(Address(keccak256(bytes([i]))[:20]) for i in range(9))
    for n in (1, 2, 9):
        p = make_params(participants=parts[:n], nonce=n, virtual=True, ledger=False)
        assert bytes(chain.adj.functions.channelID(P(p)).call()) == channel_id(p)


# --- deposits ---------------------------------------------------------------------------------


def test_deposit_eth(chain: Chain) -> None:
    c = chain
    p = make_params()
    fid = funding_id(p.id, ALICE)
    receipt = c.send(c.eth_holder.functions.deposit(fid, ETH), value=ETH)
    ev = events(c.eth_holder.events.Deposited, receipt)
    assert [(bytes(e.args.fundingID), e.args.amount) for e in ev] == [(fid, ETH)]
    c.send(c.eth_holder.functions.deposit(fid, 2), value=2)
    assert c.holdings(c.eth_holder, p, ALICE) == ETH + 2
    assert c.w3.eth.get_balance(c.dep.asset_holder_eth) == ETH + 2
    wrong = c.eth_holder.functions.deposit(fid, ETH)
    assert c.reason(wrong, value=ETH - 1) == "wrong amount of ETH for deposit"
    assert c.reason(wrong, value=0) == "wrong amount of ETH for deposit"


def test_deposit_erc20(chain: Chain) -> None:
    c = chain
    p = make_params()
    fid = funding_id(p.id, BOB)
    holder = c.dep.asset_holder_erc20
    assert c.erc20_holder.functions.token().call() == c.dep.token
    assert c.erc20_holder.functions.adjudicator().call() == c.dep.adjudicator
    before = c.token.functions.balanceOf(c.sender).call()
    deposit = c.erc20_holder.functions.deposit(fid, 5 * ETH)
    assert c.reason(deposit) == "ERC20: insufficient allowance"
    c.send(c.token.functions.approve(holder, 5 * ETH))
    assert c.reason(deposit, value=1) == "message value must be 0 for token deposit"
    receipt = c.send(deposit)
    assert [e.args.amount for e in events(c.erc20_holder.events.Deposited, receipt)] == [5 * ETH]
    assert c.holdings(c.erc20_holder, p, BOB) == 5 * ETH
    assert c.token.functions.balanceOf(holder).call() == 5 * ETH
    assert c.token.functions.balanceOf(c.sender).call() == before - 5 * ETH
    assert c.token.functions.allowance(c.sender, holder).call() == 0
    assert c.reason(deposit) == "ERC20: insufficient allowance"


# --- happy paths ------------------------------------------------------------------------------


def test_conclude_final_and_withdraw_eth(chain: Chain) -> None:
    c = chain
    p = make_params()
    c.fund_eth(p, [ETH, 2 * ETH])
    final = make_state(p, [c.eth_asset], [[2 * ETH, ETH]], version=7, final=True)
    receipt = c.send(conclude_final(c, p, final))
    t = block_time(c, receipt)
    assert channel_updates(c, receipt) == [(p.id, 7, CONCLUDED, t)]
    assert [bytes(e.args.channelID) for e in events(c.eth_holder.events.OutcomeSet, receipt)] == [
        p.id
    ]
    assert c.dispute(p) == (t, D, 7, False, CONCLUDED, hash_state(final))
    assert c.eth_holder.functions.settled(p.id).call() is True
    assert c.holdings(c.eth_holder, p, ALICE) == 2 * ETH

    carol_before = c.eth_balance(CAROL)
    receipt = c.send(c.withdraw_fn(c.eth_holder, p, ALICE, ETH, receiver=CAROL))
    ev = events(c.eth_holder.events.Withdrawn, receipt)
    assert [(bytes(e.args.fundingID), e.args.amount, e.args.receiver) for e in ev] == [
        (funding_id(p.id, ALICE), ETH, checksum(CAROL))
    ]
    assert c.eth_balance(CAROL) == carol_before + ETH
    c.send(c.withdraw_fn(c.eth_holder, p, ALICE, ETH))  # partial withdrawals add up
    c.send(c.withdraw_fn(c.eth_holder, p, BOB, ETH))
    assert c.eth_balance(ALICE) == ETH and c.eth_balance(BOB) == ETH
    assert c.w3.eth.get_balance(c.dep.asset_holder_eth) == 0


def test_register_refute_conclude_withdraw(chain: Chain) -> None:
    c = chain
    p = make_params()
    c.fund_eth(p, [ETH, ETH])
    s1 = make_state(p, [c.eth_asset], [[ETH, ETH]], version=1)
    receipt = c.register(p, s1)
    t0 = block_time(c, receipt)
    assert channel_updates(c, receipt) == [(p.id, 1, DISPUTE, t0 + D)]
    assert c.dispute(p) == (t0 + D, D, 1, False, DISPUTE, hash_state(s1))
    # The same state again is a silent no-op.
    assert channel_updates(c, c.register(p, s1)) == []
    s2 = make_state(p, [c.eth_asset], [[ETH // 2, 3 * ETH // 2]], version=2)
    receipt = succeeds_at(c, register_fn(c, p, s2), t0 + D - 1)
    # A refutation keeps the timeout of the first registration.
    assert channel_updates(c, receipt) == [(p.id, 2, DISPUTE, t0 + D)]
    conclude = c.adj.functions.conclude(P(p), S(s2), [])
    receipt = succeeds_at(c, conclude, t0 + D)
    assert channel_updates(c, receipt) == [(p.id, 2, CONCLUDED, t0 + D)]
    assert c.holdings(c.eth_holder, p, BOB) == 3 * ETH // 2
    c.send(c.withdraw_fn(c.eth_holder, p, BOB, 3 * ETH // 2))
    assert c.eth_balance(BOB) == 3 * ETH // 2


def test_registered_final_state_concludes_immediately(chain: Chain) -> None:
    c = chain
    p = make_params()
    final = make_state(p, [c.eth_asset], [[0, 0]], version=3, final=True)
    receipt = c.register(p, final)
    t = block_time(c, receipt)
    assert channel_updates(c, receipt) == [(p.id, 3, DISPUTE, t)]
    succeeds_at(c, c.adj.functions.conclude(P(p), S(final), []), t + 1)
    assert c.dispute(p)[4] == CONCLUDED


def test_two_asset_channel_eth_and_erc20(chain: Chain) -> None:
    c = chain
    p = make_params()
    c.fund_eth(p, [ETH, 0])
    c.send(c.token.functions.approve(c.dep.asset_holder_erc20, 10 * ETH))
    c.send(c.erc20_holder.functions.deposit(funding_id(p.id, BOB), 10 * ETH))
    final = make_state(
        p, [c.eth_asset, c.erc20_asset], [[0, ETH], [4 * ETH, 6 * ETH]], version=9, final=True
    )
    receipt = c.send(conclude_final(c, p, final))
    assert len(events(c.eth_holder.events.OutcomeSet, receipt)) == 1
    assert len(events(c.erc20_holder.events.OutcomeSet, receipt)) == 1
    c.send(c.withdraw_fn(c.eth_holder, p, BOB, ETH))
    c.send(c.withdraw_fn(c.erc20_holder, p, ALICE, 4 * ETH))
    c.send(c.withdraw_fn(c.erc20_holder, p, BOB, 6 * ETH))
    assert c.eth_balance(BOB) == ETH
    assert c.token.functions.balanceOf(checksum(ALICE)).call() == 4 * ETH
    assert c.token.functions.balanceOf(checksum(BOB)).call() == 6 * ETH
    assert c.reason(c.withdraw_fn(c.erc20_holder, p, BOB, 1)) == "insufficient funds"


def test_other_chain_asset_is_skipped(chain: Chain) -> None:
    c = chain
    p = make_params()
    c.fund_eth(p, [ETH, ETH])
    other = Asset(c.chain_id + 1, bytes.fromhex(c.dep.asset_holder_eth[2:]))
    final = make_state(p, [other, c.eth_asset], [[5, 5], [ETH, ETH]], final=True)
    receipt = c.send(conclude_final(c, p, final))
    assert len(events(c.eth_holder.events.OutcomeSet, receipt)) == 1
    assert c.holdings(c.eth_holder, p, ALICE) == ETH


# --- signatures -------------------------------------------------------------------------------


def _malformed(sig: bytes) -> dict[str, bytes]:
    s = int.from_bytes(sig[32:64], "big")
    high_s = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes((55 - sig[64],))
    return {
        "ECDSA: invalid signature 'v' value": sig[:64] + bytes((sig[64] - 27,)),
        "ECDSA: invalid signature 's' value": high_s,
        "ECDSA: invalid signature length": sig[:64],
        "ECDSA: invalid signature": bytes(32) + sig[32:],
    }


def test_register_signature_rules(chain: Chain) -> None:
    c = chain
    p = make_params()
    s = make_state(p, [c.eth_asset], [[ETH, ETH]])
    a, b = sigs_for(p, s)
    assert c.reason(register_fn(c, p, s, [a])) == "signatures length mismatch"
    assert c.reason(register_fn(c, p, s, [a, b, b])) == "signatures length mismatch"
    assert c.reason(register_fn(c, p, s, [b, a])) == "invalid signature"  # wrong order
    assert c.reason(register_fn(c, p, s, [a, sign_state(CAROL_KEY, s)])) == "invalid signature"
    other = s.replace(version=2)
    assert c.reason(register_fn(c, p, s, [a, sign_state(BOB_KEY, other)])) == "invalid signature"
    for v in (0, 1):
        bad = b[:64] + bytes((v,))
        assert c.reason(register_fn(c, p, s, [a, bad])) == "ECDSA: invalid signature 'v' value"
    for reason, bad in _malformed(b).items():
        assert c.reason(register_fn(c, p, s, [a, bad])) == reason
        # The off-chain check refuses the same bytes with the same reason.
        with pytest.raises(EthSignatureFormatError) as e:
            check_signature_format(bad)
        assert e.value.reason == reason
    c.register(p, s)  # the correct signatures pass


def test_register_params_rules(chain: Chain) -> None:
    c = chain
    sub = make_params(ledger=False)
    s = make_state(sub, [c.eth_asset], [[ETH, ETH]])
    assert c.reason(register_fn(c, sub, s)) == "not ledger"
    p = make_params()
    wrong = make_state(make_params(nonce=99), [c.eth_asset], [[ETH, ETH]])
    assert c.reason(register_fn(c, p, wrong)) == "invalid params"


def test_refute_needs_a_higher_version(chain: Chain) -> None:
    c = chain
    p = make_params()
    c.register(p, make_state(p, [c.eth_asset], [[ETH, ETH]], version=5))
    for v in (4, 5):
        lower = make_state(p, [c.eth_asset], [[2 * ETH, 0]], version=v)
        assert c.reason(register_fn(c, p, lower)) == "invalid version"


def test_refute_after_timeout(chain: Chain) -> None:
    c = chain
    p = make_params()
    t0 = block_time(c, c.register(p, make_state(p, [c.eth_asset], [[ETH, ETH]], version=1)))
    newer = make_state(p, [c.eth_asset], [[0, 2 * ETH]], version=2)
    fails_at(c, register_fn(c, p, newer), t0 + D, "refutation timeout passed")
    assert c.dispute(p)[2] == 1


def test_conclude_before_timeout(chain: Chain) -> None:
    c = chain
    p = make_params()
    s = make_state(p, [c.eth_asset], [[ETH, ETH]], version=1)
    t0 = block_time(c, c.register(p, s))
    conclude = c.adj.functions.conclude(P(p), S(s), [])
    fails_at(c, conclude, t0 + D - 1, "timeout not passed yet")
    succeeds_at(c, conclude, t0 + D)


def test_conclude_rules(chain: Chain) -> None:
    c = chain
    p = make_params()
    s = make_state(p, [c.eth_asset], [[ETH, ETH]], version=1)
    assert c.reason(c.adj.functions.conclude(P(p), S(s), [])) == "not registered"
    sub = make_params(ledger=False)
    assert c.reason(c.adj.functions.conclude(P(sub), S(s), [])) == "not ledger"
    assert c.reason(c.adj.functions.conclude(P(make_params(nonce=9)), S(s), [])) == "invalid params"
    c.register(p, s)
    c.node.increase_time(D)
    other = s.replace(version=0)
    assert c.reason(c.adj.functions.conclude(P(p), S(other), [])) == "invalid channel state"
    c.send(c.adj.functions.conclude(P(p), S(s), []))
    assert c.reason(c.adj.functions.conclude(P(p), S(s), [])) == "channel already concluded"
    assert c.reason(register_fn(c, p, s.replace(version=2))) == "incorrect phase"


def test_conclude_final_rules(chain: Chain) -> None:
    c = chain
    p = make_params()
    final = make_state(p, [c.eth_asset], [[ETH, ETH]], version=3, final=True)
    sub = make_params(ledger=False)
    assert c.reason(conclude_final(c, sub, final)) == "not ledger"
    assert c.reason(conclude_final(c, p, final.replace(is_final=False))) == "state not final"
    locked = make_state(
        p, [c.eth_asset], [[0, 0]], final=True, locked=[SubAlloc(sub.id, (2 * ETH,), (0, 1))]
    )
    assert c.reason(conclude_final(c, p, locked)) == "cannot have sub-channels"
    assert c.reason(conclude_final(c, make_params(nonce=9), final)) == "invalid params"
    a, b = sigs_for(p, final)
    assert c.reason(conclude_final(c, p, final, [b, a])) == "invalid signature"
    assert c.reason(conclude_final(c, p, final, [a])) == "signatures length mismatch"
    # A running dispute, even of a higher version, is overridden by a final state.
    c.fund_eth(p, [ETH, ETH])
    c.register(p, make_state(p, [c.eth_asset], [[2 * ETH, 0]], version=10))
    receipt = c.send(conclude_final(c, p, final))
    assert channel_updates(c, receipt) == [(p.id, 3, CONCLUDED, block_time(c, receipt))]
    assert c.holdings(c.eth_holder, p, BOB) == ETH
    assert c.reason(conclude_final(c, p, final)) == "channel already concluded"


# --- withdrawals and outcomes -----------------------------------------------------------------


def test_withdraw_rules(chain: Chain) -> None:
    c = chain
    p = make_params()
    c.fund_eth(p, [ETH, ETH])
    w = c.withdraw_fn(c.eth_holder, p, ALICE, ETH)
    assert c.reason(w) == "channel not settled"
    c.send(conclude_final(c, p, make_state(p, [c.eth_asset], [[ETH, ETH]], final=True)))
    # Signed by Bob's key for Alice's funds.
    stolen = c.withdraw_fn(c.eth_holder, p, ALICE, ETH, receiver=BOB, key=BOB_KEY)
    assert c.reason(stolen) == "signature verification failed"
    too_much = c.withdraw_fn(c.eth_holder, p, ALICE, ETH + 1)
    assert c.reason(too_much) == "insufficient funds"
    auth = (p.id, checksum(ALICE), checksum(ALICE), ETH)
    good = c.withdraw_fn(c.eth_holder, p, ALICE, ETH).args[1]
    for reason, bad in _malformed(good).items():
        assert c.reason(c.eth_holder.functions.withdraw(auth, bad)) == reason
    c.send(w, sender=c.accounts[5])  # anyone may submit the authorization
    assert c.eth_balance(ALICE) == ETH
    assert c.reason(w) == "insufficient funds"  # double withdraw
    assert c.reason(c.eth_holder.functions.setOutcome(p.id, [], [])) == (
        "can only be called by the adjudicator"
    )


def test_set_outcome_only_by_adjudicator(chain: Chain) -> None:
    c = chain
    p = make_params()
    for holder in (c.eth_holder, c.erc20_holder):
        fn = holder.functions.setOutcome(p.id, [checksum(ALICE)], [1])
        assert c.reason(fn) == "can only be called by the adjudicator"


def test_underfunded_outcome_refunds_deposits(chain: Chain) -> None:
    c = chain
    p = make_params()
    c.fund_eth(p, [ETH, 0])  # Bob never funded
    final = make_state(p, [c.eth_asset], [[0, 2 * ETH]], final=True)
    c.send(conclude_final(c, p, final))
    assert c.holdings(c.eth_holder, p, ALICE) == ETH
    assert c.holdings(c.eth_holder, p, BOB) == 0
    assert c.reason(c.withdraw_fn(c.eth_holder, p, BOB, 1)) == "insufficient funds"
    c.send(c.withdraw_fn(c.eth_holder, p, ALICE, ETH))
    assert c.eth_balance(ALICE) == ETH
    # Short by a single wei is under-funded too; exactly funded applies the outcome.
    for nonce, deposits, expected in (
        (2, [ETH, ETH - 1], [ETH, ETH - 1]),
        (3, [ETH, ETH], [0, 2 * ETH]),
    ):
        q = make_params(nonce=nonce)
        c.fund_eth(q, deposits)
        c.send(conclude_final(c, q, make_state(q, [c.eth_asset], [[0, 2 * ETH]], final=True)))
        assert [c.holdings(c.eth_holder, q, x) for x in (ALICE, BOB)] == expected


def test_overfunded_outcome_and_channel_deposit(chain: Chain) -> None:
    c = chain
    p = make_params()
    c.fund_eth(p, [2 * ETH, 0])
    # A deposit to the channel ID itself counts towards the funds held.
    c.send(c.eth_holder.functions.deposit(p.id, ETH), value=ETH)
    final = make_state(p, [c.eth_asset], [[ETH, ETH]], final=True)
    c.send(conclude_final(c, p, final))
    assert c.eth_holder.functions.holdings(p.id).call() == 0
    assert c.holdings(c.eth_holder, p, ALICE) == ETH  # the surplus is lost
    assert c.holdings(c.eth_holder, p, BOB) == ETH
    # Deposits after settlement are credited and withdrawable.
    c.send(c.eth_holder.functions.deposit(funding_id(p.id, BOB), 5), value=5)
    c.send(c.withdraw_fn(c.eth_holder, p, BOB, ETH + 5))
    assert c.eth_balance(BOB) == ETH + 5


# --- apps -------------------------------------------------------------------------------------


def _app_channel(c: Chain, app: str) -> tuple[Params, State, int]:
    p = make_params(app=app)
    c.fund_eth(p, [ETH, ETH])
    s = make_state(p, [c.eth_asset], [[ETH, ETH]], version=1, data=b"\x01")
    t0 = block_time(c, c.register(p, s))
    return p, s, t0


def test_app_channel_gets_two_windows(chain: Chain) -> None:
    c = chain
    p, s, t0 = _app_channel(c, c.dep.trivial_app)
    assert c.dispute(p)[3] is True
    conclude = c.adj.functions.conclude(P(p), S(s), [])
    fails_at(c, conclude, t0 + 2 * D - 1, "timeout not passed yet")
    succeeds_at(c, conclude, t0 + 2 * D)


def test_progress_with_trivial_app(chain: Chain) -> None:
    c = chain
    p, s1, t0 = _app_channel(c, c.dep.trivial_app)
    s2 = make_state(p, [c.eth_asset], [[ETH // 2, 3 * ETH // 2]], version=2, data=b"\x02")

    def progress(old: State, new: State, actor: int, key: bytes) -> Any:
        return c.adj.functions.progress(P(p), S(old), S(new), actor, sign_state(key, new))

    fails_at(c, progress(s1, s2, 0, ALICE_KEY), t0 + D - 1, "timeout not passed")
    receipt = succeeds_at(c, progress(s1, s2, 0, ALICE_KEY), t0 + D)
    t1 = t0 + D
    assert channel_updates(c, receipt) == [(p.id, 2, FORCEEXEC, t1 + D)]
    assert c.dispute(p) == (t1 + D, D, 2, True, FORCEEXEC, hash_state(s2))
    assert c.reason(register_fn(c, p, s2.replace(version=3))) == "incorrect phase"
    s3 = make_state(p, [c.eth_asset], [[ETH, ETH]], version=3, data=b"\x03")
    conclude = c.adj.functions.conclude(P(p), S(s3), [])
    receipt = succeeds_at(c, progress(s2, s3, 1, BOB_KEY), t1 + D - 1)
    t2 = t1 + D - 1
    assert channel_updates(c, receipt) == [(p.id, 3, FORCEEXEC, t2 + D)]
    s4 = make_state(p, [c.eth_asset], [[0, 2 * ETH]], version=4)
    fails_at(c, progress(s3, s4, 0, ALICE_KEY), t2 + D, "timeout passed")
    # After force execution, one window (not two) until conclusion.
    succeeds_at(c, conclude, t2 + D + 1)
    assert c.holdings(c.eth_holder, p, ALICE) == ETH
    assert c.reason(progress(s3, s4, 0, ALICE_KEY)) == "invalid phase"


def test_progress_rules(chain: Chain) -> None:
    c = chain
    plain = make_params()
    s = make_state(plain, [c.eth_asset], [[ETH, ETH]], version=1)

    def progress(p: Params, old: State, new: State, actor: int, key: bytes = ALICE_KEY) -> Any:
        return c.adj.functions.progress(P(p), S(old), S(new), actor, sign_state(key, new))

    assert c.reason(progress(plain, s, s.replace(version=2), 0)) == "not registered"
    c.register(plain, s)
    c.node.increase_time(D)
    assert c.reason(progress(plain, s, s.replace(version=2), 0)) == "must have app"

    p, s1, _ = _app_channel(c, c.dep.trivial_app)
    c.node.increase_time(D)

    def new(
        version: int = 2, balances: tuple[tuple[int, ...], ...] = ((ETH, ETH),), **kw: Any
    ) -> State:
        return make_state(p, [c.eth_asset], balances, version=version, **kw)

    assert c.reason(progress(p, s1, new(), 2)) == "actorIdx out of range"
    other = make_params(app=c.dep.trivial_app, nonce=77)
    assert (
        c.reason(
            c.adj.functions.progress(P(other), S(s1), S(new()), 0, sign_state(ALICE_KEY, new()))
        )
        == "invalid params"
    )
    assert c.reason(progress(p, s1.replace(data=b"\x09"), new(), 0)) == "wrong old state"
    assert c.reason(progress(p, s1, new(), 0, BOB_KEY)) == "invalid signature"
    assert c.reason(progress(p, s1, new(version=3), 0)) == "version must increment by one"
    assert c.reason(progress(p, s1, new(balances=((ETH, ETH + 1),)), 0)) == (
        "sum of balances mismatch"
    )
    assert c.reason(progress(p, s1, new(balances=((ETH, ETH), (1, 1))), 0)) == (
        "balances length mismatch"
    )
    assert c.reason(progress(p, s1, new(balances=((2 * ETH,),)), 0)) == (
        "new balances length mismatch"
    )
    moved = make_state(p, [c.erc20_asset], [[ETH, ETH]], version=2)
    assert c.reason(progress(p, s1, moved, 0)) == "Asset: unequal holder"
    sub = SubAlloc(b"\x05" * 32, (1,), (0, 1))
    assert c.reason(progress(p, s1, new(locked=[sub]), 0)) == "SubAlloc[]: unequal length"


def test_progress_from_final_state_is_refused(chain: Chain) -> None:
    c = chain
    p = make_params(app=c.dep.trivial_app)
    final = make_state(p, [c.eth_asset], [[ETH, ETH]], version=1, final=True)
    c.register(p, final)
    c.node.increase_time(1)
    nxt = make_state(p, [c.eth_asset], [[ETH, ETH]], version=2)
    fn = c.adj.functions.progress(P(p), S(final), S(nxt), 0, sign_state(ALICE_KEY, nxt))
    assert c.reason(fn) == "cannot progress from final state"


def test_payment_app_rule(chain: Chain) -> None:
    c = chain
    p, s1, _ = _app_channel(c, c.dep.payment_app)
    c.node.increase_time(D)

    def progress(balances: list[int], actor: int, key: bytes, data: bytes = b"") -> Any:
        new = make_state(p, [c.eth_asset], [balances], version=2, data=data)
        return c.adj.functions.progress(P(p), S(s1), S(new), actor, sign_state(key, new))

    assert c.reason(progress([ETH + 1, ETH - 1], 0, ALICE_KEY)) == "actor balance increased"
    assert c.reason(progress([ETH - 1, ETH + 1], 1, BOB_KEY)) == "participant balance decreased"
    assert c.reason(progress([ETH - 1, ETH + 1], 0, ALICE_KEY, b"\x01")) == (
        "payment app carries no data"
    )
    c.send(progress([ETH - 1, ETH + 1], 0, ALICE_KEY))
    assert c.dispute(p)[4] == FORCEEXEC


# --- sub-channels -----------------------------------------------------------------------------


def _ledger_with_sub(
    c: Chain, *, virtual: bool = False, app: str | None = None
) -> tuple[Params, State, Params, State]:
    p = make_params()
    sub_p = make_params(nonce=7, ledger=False, virtual=virtual, app=app)
    sub = make_state(sub_p, [c.eth_asset], [[ETH // 2, 3 * ETH // 2]], version=4)
    led = make_state(
        p, [c.eth_asset], [[ETH, ETH]], version=2, locked=[SubAlloc(sub_p.id, (2 * ETH,), (1, 0))]
    )
    return p, led, sub_p, sub


def test_sub_channel_register_and_conclude(chain: Chain) -> None:
    c = chain
    p, led, sub_p, sub = _ledger_with_sub(c)
    c.fund_eth(p, [2 * ETH, 2 * ETH])
    receipt = c.register(p, led, [signed(sub_p, sub)])
    t0 = block_time(c, receipt)
    assert channel_updates(c, receipt) == [
        (p.id, 2, DISPUTE, t0 + D),
        (sub_p.id, 4, DISPUTE, t0 + D),
    ]
    c.node.increase_time(D)
    conclude = c.adj.functions.conclude(P(p), S(led), [S(sub)])
    assert c.reason(c.adj.functions.conclude(P(p), S(led), [])) == "subStates: too short"
    receipt = c.send(conclude)
    assert [(u[0], u[2]) for u in channel_updates(c, receipt)] == [(p.id, 2), (sub_p.id, 2)]
    # indexMap (1, 0): sub participant 0 pays into parent participant 1 and vice versa.
    assert c.holdings(c.eth_holder, p, ALICE) == ETH + 3 * ETH // 2
    assert c.holdings(c.eth_holder, p, BOB) == ETH + ETH // 2


def test_sub_channel_rules(chain: Chain) -> None:
    c = chain
    p, led, sub_p, sub = _ledger_with_sub(c)
    assert c.reason(c.adj.functions.register(signed(p, led), [])) == "subChannels: too short"
    wrong_id = make_params(nonce=8, ledger=False)
    other = make_state(wrong_id, [c.eth_asset], [[ETH, ETH]])
    assert c.reason(c.adj.functions.register(signed(p, led), [signed(wrong_id, other)])) == (
        "invalid sub-channel id"
    )
    short = make_state(sub_p, [c.eth_asset], [[ETH, ETH - 1]], version=4)
    assert c.reason(c.adj.functions.register(signed(p, led), [signed(sub_p, short)])) == (
        "uint256[]: unequal item"
    )
    two = make_state(sub_p, [c.eth_asset, c.erc20_asset], [[ETH, ETH], [0, 0]], version=4)
    assert c.reason(c.adj.functions.register(signed(p, led), [signed(sub_p, two)])) == (
        "Asset[]: unequal length"
    )
    c.register(p, led, [signed(sub_p, sub)])
    c.node.increase_time(D)
    fn = c.adj.functions.conclude(P(p), S(led), [S(other)])
    assert c.reason(fn) == "invalid subchannel id"


def test_virtual_sub_channel_rules(chain: Chain) -> None:
    c = chain
    p, led, sub_p, sub = _ledger_with_sub(c, virtual=True, app=c.dep.trivial_app)
    assert c.reason(c.adj.functions.register(signed(p, led), [signed(sub_p, sub)])) == (
        "cannot have app"
    )
    p, led, sub_p, sub = _ledger_with_sub(c, virtual=True)
    c.register(p, led, [signed(sub_p, sub)])
    assert c.dispute(sub_p)[2] == 4
