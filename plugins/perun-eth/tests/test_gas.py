"""Gas per operation on anvil, compared with the reference contracts.

Gas is deterministic for a given transaction, so the comparison is asserted: every operation
must use no more gas than the reference, and those of ``AT_TARGET`` at most ``TARGET_RATIO``
times it (issue 8). The figures are printed in the terminal summary.
"""

from __future__ import annotations

from eth_helpers import (
    ALICE,
    ALICE_KEY,
    BOB,
    BOB_KEY,
    ETH,
    Chain,
    make_params,
    make_state,
    signed,
    sigs_for,
)
from gas_reference import AT_TARGET, RATIO_OF, REFERENCE, TARGET_RATIO
from perun_eth.encoding import funding_id, params_abi, sign_state, state_abi
from perun_eth.testing import deploy_contracts

from perun_core.channel import Asset, SubAlloc


def test_gas_per_operation(chain: Chain) -> None:
    c = chain
    gas = c.gas
    acc = c.accounts
    # Withdrawals pay receivers that hold nothing yet (the new-account/new-balance cost is
    # included), which is what the reference figures imply.
    dep = deploy_contracts(c.w3, acc[0], token_holders=acc[:2])
    for name in ("Adjudicator", "AssetHolderETH", "TrivialApp", "PerunToken", "AssetHolderERC20"):
        gas[f"deploy {name}"] = dep.deploy_gas[name]

    # --- ledger channel, concludeFinal, withdraw (ETH) ---------------------------------
    p = make_params(nonce=1)
    c.send(
        c.eth_holder.functions.deposit(funding_id(p.id, ALICE), ETH),
        value=ETH,
        gas_name="deposit ETH (fresh)",
    )
    c.fund_eth(p, [0, 2 * ETH])
    final = make_state(p, [c.eth_asset], [[2 * ETH, ETH]], version=3, final=True)
    c.send(
        c.adj.functions.concludeFinal(params_abi(p), state_abi(final), sigs_for(p, final)),
        gas_name="concludeFinal 1 asset",
    )
    c.send(c.withdraw_fn(c.eth_holder, p, ALICE, 2 * ETH), gas_name="withdraw ETH")

    # --- ERC-20: approve, deposits, two-asset concludeFinal, withdraw -----------------
    p2 = make_params(nonce=2)
    holder = c.dep.asset_holder_erc20
    # A funder approves exactly the amount of each deposit.
    c.send(c.token.functions.approve(holder, ETH), gas_name="approve")
    c.send(
        c.erc20_holder.functions.deposit(funding_id(p2.id, ALICE), ETH),
        gas_name="deposit ERC20 (holder 0->x)",
    )
    c.send(c.token.functions.approve(holder, 2 * ETH))
    c.send(
        c.erc20_holder.functions.deposit(funding_id(p2.id, BOB), 2 * ETH),
        gas_name="deposit ERC20 (holder x->y)",
    )
    c.fund_eth(p2, [ETH, ETH])
    final2 = make_state(
        p2, [c.eth_asset, c.erc20_asset], [[ETH, ETH], [2 * ETH, ETH]], version=1, final=True
    )
    c.send(
        c.adj.functions.concludeFinal(params_abi(p2), state_abi(final2), sigs_for(p2, final2)),
        gas_name="concludeFinal 2 assets",
    )
    c.send(
        c.withdraw_fn(c.erc20_holder, p2, BOB, ETH),
        gas_name="withdraw ERC20 (holder keeps tokens)",
    )
    # The last withdrawal empties the holder's token balance (a second storage refund), as in
    # the reference measurement.
    c.send(c.withdraw_fn(c.erc20_holder, p2, ALICE, 2 * ETH), gas_name="withdraw ERC20")

    # --- asset of another chain: no setOutcome --------------------------------------------
    p3 = make_params(nonce=3)
    other = Asset(1, bytes.fromhex("22" * 20))
    final3 = make_state(p3, [other], [[ETH, ETH]], final=True)
    c.send(
        c.adj.functions.concludeFinal(params_abi(p3), state_abi(final3), sigs_for(p3, final3)),
        gas_name="concludeFinal other chain",
    )

    # --- dispute without app: register, no-op, refute, conclude -----------------------------
    p4 = make_params(nonce=4)
    c.fund_eth(p4, [ETH, ETH])
    s1 = make_state(p4, [c.eth_asset], [[ETH, ETH]], version=1)
    c.register(p4, s1, gas_name="register no app")
    c.register(p4, s1, gas_name="register identical (no-op)")
    s2 = make_state(p4, [c.eth_asset], [[ETH // 2, 3 * ETH // 2]], version=2)
    c.register(p4, s2, gas_name="refute")
    c.node.increase_time(p4.challenge_duration)
    c.send(c.adj.functions.conclude(params_abi(p4), state_abi(s2), []), gas_name="conclude no app")

    # --- app channel: register, progress twice, conclude ----------------------------------
    p5 = make_params(nonce=5, app=c.dep.trivial_app)
    c.fund_eth(p5, [ETH, ETH])
    a1 = make_state(p5, [c.eth_asset], [[ETH, ETH]], version=1, data=b"\x01")
    c.register(p5, a1, gas_name="register app")
    c.node.increase_time(p5.challenge_duration)
    a2 = make_state(p5, [c.eth_asset], [[ETH // 2, 3 * ETH // 2]], version=2, data=b"\x02")
    c.send(
        c.adj.functions.progress(
            params_abi(p5), state_abi(a1), state_abi(a2), 0, sign_state(ALICE_KEY, a2)
        ),
        gas_name="progress (first)",
    )
    a3 = make_state(p5, [c.eth_asset], [[ETH, ETH]], version=3, data=b"\x03")
    c.send(
        c.adj.functions.progress(
            params_abi(p5), state_abi(a2), state_abi(a3), 1, sign_state(BOB_KEY, a3)
        ),
        gas_name="progress (again)",
    )
    c.node.increase_time(p5.challenge_duration)
    c.send(
        c.adj.functions.conclude(params_abi(p5), state_abi(a3), []),
        gas_name="conclude app after progress",
    )

    # --- ledger channel with one sub-channel ----------------------------------------------
    p6 = make_params(nonce=6)
    sub_p = make_params(nonce=7, ledger=False)
    c.fund_eth(p6, [2 * ETH, 2 * ETH])
    sub = make_state(sub_p, [c.eth_asset], [[ETH, ETH]], version=4)
    led = make_state(
        p6,
        [c.eth_asset],
        [[ETH, ETH]],
        version=2,
        locked=[SubAlloc(sub_p.id, (2 * ETH,), (0, 1))],
    )
    c.register(p6, led, [signed(sub_p, sub)], gas_name="register ledger + 1 sub")
    c.node.increase_time(p6.challenge_duration)
    c.send(
        c.adj.functions.conclude(params_abi(p6), state_abi(led), [state_abi(sub)]),
        gas_name="conclude ledger + 1 sub",
    )

    worse = {k: (v, REFERENCE[k]) for k, v in gas.items() if v > REFERENCE.get(k, v)}
    assert not worse, f"more gas than the reference contracts: {worse}"
    missed = {
        k: f"{gas[k] / REFERENCE[k]:.3f}x"
        for k in AT_TARGET
        if gas[k] > RATIO_OF.get(k, TARGET_RATIO) * REFERENCE[k]
    }
    assert not missed, f"above their target ratio of the reference: {missed}"
