"""The eth backend beyond the shared suites: two assets, typed revert errors, mined failures,
fee-bump replacement, nonce resynchronisation, event reconstruction, sub-channels, and an
unreachable node. Everything runs on the module's own anvil."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from perun_eth import EthBackend, EthNode, Receipt, TxOptions
from perun_eth import bindings as b
from perun_eth.chain import checksum
from perun_eth.encoding import sign_withdrawal_auth
from perun_eth.errors import (
    AlreadyConcludedError,
    ContractRevertError,
    DepositError,
    NodeConnectionError,
    StaleStateError,
    TimeoutNotElapsedError,
    error_for_revert,
)
from perun_eth.testing import AnvilNode, Deployment, dev_backend_config, free_port

from perun_core import errors as E
from perun_core.channel.allocation import Allocation, SubAlloc
from perun_core.channel.params import make_params
from perun_core.channel.state import SignedState, State, Transaction
from perun_core.client import LedgerChannelProposal
from perun_core.interfaces.adjudicator import AdjudicatorReq, ConcludedEvent, RegisteredEvent
from perun_core.testing.adjudicator import core_error_type
from perun_core.testing.ledger import FUNDS, LedgerChannel, next_event
from perun_core.testing.parties import PartyFactory
from perun_core.wire.local_bus import LocalBus

D = 60


@pytest.fixture
async def backend(module_anvil: AnvilNode, module_deployment: Deployment) -> AsyncIterator[Any]:
    b_ = EthBackend.from_config(dev_backend_config(module_anvil, module_deployment))
    receipts: list[Receipt] = []
    b_.on_receipt = receipts.append
    b_.receipts = receipts  # type: ignore[attr-defined]
    yield b_
    await b_.close()


@pytest.fixture
def token(backend: EthBackend, module_deployment: Deployment) -> Any:
    return backend.asset(module_deployment.asset_holder_erc20)


@pytest.fixture
def eth(backend: EthBackend, module_deployment: Deployment) -> Any:
    return backend.asset(module_deployment.asset_holder_eth)


@pytest.fixture
def automine(module_anvil: AnvilNode) -> Any:
    """Switch anvil's automine off inside a test (it is switched back on afterwards)."""
    yield lambda on: module_anvil.call("evm_setAutomine", on)
    module_anvil.call("evm_setAutomine", True)


async def test_a_two_asset_eth_and_erc20_channel_end_to_end(
    backend: Any, eth: Any, token: Any
) -> None:
    assert backend.default_assets() == [eth, token]
    factory = PartyFactory(backend, LocalBus())
    try:
        alice, bob = await factory.make("alice"), await factory.make("bob")
        before_eth = [await backend.balance_of(p.account.address, eth) for p in (alice, bob)]
        backend.receipts.clear()
        prop = LedgerChannelProposal(
            peer=bob.address,
            allocation=Allocation((eth, token), ((300, 100), (50, 70))),
            challenge_duration=D,
        )
        ch_a = await alice.client.propose_channel(prop)
        ch_b = await bob.next_channel()
        deposits = [r.operation for r in backend.receipts]
        # ERC-20: approve + deposit per party; ETH: one deposit per party.
        assert sorted(deposits) == [
            "approve",
            "approve",
            "deposit",
            "deposit",
            "deposit",
            "deposit",
        ]
        for _ in range(5):
            await ch_a.send(10)  # asset 0 (ETH)
        await ch_b.send(20, asset=1)
        await ch_a.settle()
        await ch_b.settle()
        fees: dict[str, int] = {}
        for r in backend.receipts:
            fees[r.sender] = fees.get(r.sender, 0) + r.fee
        assert await backend.balance_of(alice.account.address, token) == FUNDS + 20
        assert await backend.balance_of(bob.account.address, token) == FUNDS - 20
        # ETH moved by exactly the payments; everything else is gas.
        for p, start, delta in ((alice, before_eth[0], -50), (bob, before_eth[1], 50)):
            fee = fees.get(p.account.checksum_address, 0)
            assert fee > 0
            assert await backend.balance_of(p.account.address, eth) == start + delta - fee
    finally:
        await factory.close()


async def test_reverts_become_typed_errors_before_anything_is_sent(
    backend: Any, token: Any, eth: Any
) -> None:
    ch = await LedgerChannel.create(backend, token)
    await ch.fund((10, 20))
    adj = backend.adjudicator(ch.a)
    v2 = ch.signed(ch.state(2, (5, 25)))
    await adj.register(ch.req(v2))
    sent = len(backend.receipts)
    with pytest.raises(StaleStateError) as stale:
        await adj.register(ch.req(ch.signed(ch.state(1, (15, 15)))))
    assert stale.value.reason == "invalid version" and not stale.value.mined
    with pytest.raises(TimeoutNotElapsedError):
        await adj.withdraw(ch.req(v2))
    await backend.advance_time(D + 1)
    with pytest.raises(E.StateMismatchError, match="invalid channel state"):
        await adj.withdraw(ch.req(ch.signed(ch.state(3, (5, 25)))))  # not the registered one
    assert len(backend.receipts) == sent  # refused in the pre-flight: no gas spent
    # A wrong ETH amount for a deposit.
    node: EthNode = backend.node
    data = b.deposit_data(bytes(32), 5)
    with pytest.raises(DepositError, match="wrong amount of ETH"):
        await node.transact(ch.a, checksum(eth.holder), data, value=4, operation="deposit")


async def test_a_channel_concluded_with_another_state_still_pays_out(
    backend: Any, token: Any
) -> None:
    ch = await LedgerChannel.create(backend, token)
    await ch.fund((10, 20))
    final = ch.signed(ch.state(5, (25, 5), final=True))
    await backend.adjudicator(ch.a).withdraw(ch.req(final, 0))
    other = ch.signed(ch.state(4, (0, 30), final=True))
    sent = len(backend.receipts)
    await backend.adjudicator(ch.b).withdraw(ch.req(other, 1))
    assert await ch.balances() == (FUNDS + 15, FUNDS - 15)  # the concluded outcome
    assert [r.operation for r in backend.receipts[sent:]] == ["withdraw"]  # no conclusion


async def test_ledger_refusals_are_the_core_leaves(backend: Any, token: Any) -> None:
    """Refusals the Adjudicator never provokes itself, sent as raw transactions."""
    ch = await LedgerChannel.create(backend, token)
    await ch.fund((10, 20))
    node: EthNode = backend.node
    adj = backend.chain.adjudicator_hex
    holder = checksum(token.holder)

    async def refused(to: str, data: bytes, operation: str, error: type) -> None:
        with pytest.raises(error) as ei:
            await node.transact(ch.a, to, data, operation=operation)
        assert isinstance(ei.value, ContractRevertError) and not ei.value.mined

    fid = backend.funding_id(ch.params.id, ch.a.address)
    auth = sign_withdrawal_auth(ch.a.private_key, ch.params.id, ch.a.address, ch.a.address, 10)
    withdraw = b.withdraw_data(ch.params.id, ch.a.address, ch.a.address, 10, auth)
    await refused(holder, withdraw, "withdraw", E.NotSettledError)
    nonfinal = ch.signed(ch.state(1, (10, 20)))
    sigs = [s for s in nonfinal.sigs if s is not None]
    await refused(
        adj,
        b.conclude_final_data(ch.params, nonfinal.state, sigs),
        "concludeFinal",
        E.NotFinalError,
    )
    final = ch.signed(ch.state(2, (5, 25), final=True))
    fsigs = [s for s in final.sigs if s is not None]
    await refused(
        adj,
        b.conclude_final_data(ch.params, final.state, fsigs[:1]),
        "concludeFinal",
        E.SignatureRefusedError,
    )
    other = ch.state(2, (5, 25), final=True).replace(channel_id=bytes(32))
    await refused(
        adj,
        b.conclude_final_data(ch.params, other, fsigs),
        "concludeFinal",
        E.ParamsMismatchError,
    )
    await node.transact(
        ch.a, adj, b.conclude_final_data(ch.params, final.state, fsigs), operation="concludeFinal"
    )
    await refused(
        adj,
        b.conclude_final_data(ch.params, final.state, fsigs),
        "concludeFinal",
        E.AlreadyConcludedError,
    )
    await refused(
        holder,
        b.withdraw_data(
            ch.params.id,
            ch.a.address,
            ch.a.address,
            6,
            sign_withdrawal_auth(ch.a.private_key, ch.params.id, ch.a.address, ch.a.address, 6),
        ),
        "withdraw",
        E.InsufficientHoldingsError,
    )
    assert await backend.chain.holdings(token.holder, fid) == 5  # nothing moved


def test_every_revert_string_of_the_contracts_has_its_leaf() -> None:
    """Each ``require`` string of our contracts maps to a core leaf, except the checks that
    only a bug in the contracts or a broken deployment can trip."""
    sources = Path(__file__).resolve().parents[3] / "contracts" / "src"
    reasons = set()
    for sol in sources.glob("*.sol"):
        reasons |= set(re.findall(r'(?:require\([^;]*?|revert\()"([^"]+)"', sol.read_text()))
    assert len(reasons) > 40, reasons  # the scan found the contracts
    internal = {
        "can only be called by the adjudicator",
        "participants length should equal balances",
        "app has no code",
        "asset holder has no code",
        "ERC20: approve to the zero address",
        "ERC20: decreased allowance below zero",
        "ERC20: mint to the zero address",
        "ERC20: transfer to the zero address",
        "actor balance increased",  # the payment app's rules: InvalidProgressError in progress
        "participant balance decreased",
        "payment app carries no data",
    }
    unmapped = []
    for reason in sorted(reasons - internal):
        err = error_for_revert(reason, operation="register")
        if core_error_type(err) in (E.ChainError,):
            unmapped.append(reason)
    assert unmapped == []
    for reason in (
        "actor balance increased",
        "participant balance decreased",
        "uint256[]: unequal item",
    ):
        assert (
            core_error_type(error_for_revert(reason, operation="progress"))
            is E.InvalidProgressError
        )
    assert core_error_type(error_for_revert("uint256[]: unequal item", operation="register")) is (
        E.SubChannelMismatchError
    )
    assert type(error_for_revert("panic 0x11", operation="progress")) is ContractRevertError
    assert type(error_for_revert("app has no code", operation="conclude")) is ContractRevertError


async def test_a_mined_failure_carries_its_replayed_reason(
    backend: Any, token: Any, automine: Any
) -> None:
    ch = await LedgerChannel.create(backend, token)
    await ch.fund((10, 20))
    final = ch.signed(ch.state(1, (10, 20), final=True))
    sigs = [s for s in final.sigs if s is not None]
    data = b.conclude_final_data(ch.params, final.state, sigs)
    node: EthNode = backend.node
    adj = backend.chain.adjudicator_hex
    automine(False)
    # Both pass the estimate (nothing concluded yet); one block runs both.
    first = asyncio.create_task(node.transact(ch.a, adj, data, operation="concludeFinal"))
    second = asyncio.create_task(node.transact(ch.b, adj, data, operation="concludeFinal"))
    async with asyncio.timeout(10):  # until both are in the pool
        while sum(len(v) for v in (await node.request("txpool_content"))["pending"].values()) < 2:  # noqa: ASYNC110 - the node's tx pool has no notifications: poll it
            await asyncio.sleep(0.01)
    await node.request("evm_mine")
    results = await asyncio.gather(first, second, return_exceptions=True)
    # Whichever the block ran second failed on chain, with the reason replayed.
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], AlreadyConcludedError), results
    assert failed[0].mined and failed[0].tx is not None
    assert failed[0].reason == "channel already concluded"


async def test_a_transaction_not_mined_in_time_is_replaced_with_higher_fees(
    module_anvil: AnvilNode, module_deployment: Deployment, automine: Any
) -> None:
    cfg = dev_backend_config(module_anvil, module_deployment, tx_timeout=0.3, priority_fee=10**9)
    backend = EthBackend.from_config(cfg)
    try:
        acct = backend.wallet().new_account()
        await backend.faucet(acct.address, backend.default_assets()[0], 10**18)
        node = backend.node
        automine(False)
        to = checksum(bytes.fromhex("22" * 20))
        sending = asyncio.create_task(node.transact(acct, to, b"", value=1, operation="pay"))
        async with asyncio.timeout(10):
            while await _pending_tip(node, acct) <= 10**9:  # noqa: ASYNC110 - the node's tx pool has no notifications: poll it
                await asyncio.sleep(0.05)
        await node.request("evm_mine")
        receipt = await asyncio.wait_for(sending, 10)
        tx = await node.transaction(receipt.tx_hash)
        assert int(tx["nonce"]) == 0 and int(tx["maxPriorityFeePerGas"]) > 10**9
        assert await node.balance(to) == 1  # paid exactly once
    finally:
        await backend.close()


async def _pending_tip(node: EthNode, acct: Any) -> int:
    """The priority fee of ``acct``'s transaction in the pool (0: none)."""
    content = await node.request("txpool_content")
    pending = {k.lower(): v for k, v in content["pending"].items()}
    for tx in (pending.get(acct.checksum_address.lower()) or {}).values():
        return int(tx["maxPriorityFeePerGas"], 16)
    return 0


async def test_a_stale_nonce_is_resynchronised(backend: Any, token: Any) -> None:
    acct = backend.wallet().new_account()
    await backend.faucet(acct.address, token, 10)
    node: EthNode = backend.node
    to = checksum(bytes.fromhex("33" * 20))
    await node.transact(acct, to, b"", value=1, operation="pay")
    # Another process (here: another node object) sends from the same key meanwhile.
    other = EthNode(node.url, TxOptions(poll_interval=0.02))
    try:
        await other.transact(acct, to, b"", value=1, operation="pay")
    finally:
        await other.close()
    r = await node.transact(acct, to, b"", value=1, operation="pay")  # nonce too low → resync
    assert int((await node.transaction(r.tx_hash))["nonce"]) == 2
    assert await node.balance(to) >= 3


async def test_events_carry_the_state_from_calldata_including_sub_channels(
    backend: Any, token: Any
) -> None:
    ch = await LedgerChannel.create(backend, token)
    await ch.fund((10, 20))
    # A sub-channel between the same participants locks 4 + 6 of the parent's funds.
    sub_params = make_params(
        backend,
        challenge_duration=D,
        participants=(ch.a.address, ch.b.address),
        nonce=ch.params.nonce + 1,
        ledger_channel=False,
    )
    sub_state = State(
        channel_id=sub_params.id, version=3, allocation=Allocation((token,), ((4, 6),))
    )
    sub_sigs = tuple(backend.sign_state(a, sub_state) for a in ch.accounts)
    parent = State(
        channel_id=ch.params.id,
        version=2,
        allocation=Allocation((token,), ((6, 14),), (SubAlloc(sub_params.id, (10,), (0, 1)),)),
    )
    tx = Transaction(parent, tuple(backend.sign_state(a, parent) for a in ch.accounts))
    subs = {sub_params.id: SignedState(sub_params, sub_state, sub_sigs)}
    adj = backend.adjudicator(ch.a)
    watch_sub = await adj.subscribe(sub_params)
    try:
        await adj.register(AdjudicatorReq(ch.params, tx, 0), subs)
        ev = await next_event(watch_sub)
        assert isinstance(ev, RegisteredEvent) and ev.state == sub_state
        # A late subscriber of the parent first gets the registration, state included.
        late = await backend.adjudicator(ch.b).subscribe(ch.params)
        try:
            first = await next_event(late)
            assert isinstance(first, RegisteredEvent) and first.state == parent
            await backend.advance_time(D + 1)
            await adj.withdraw(AdjudicatorReq(ch.params, tx, 0), subs)
            await backend.adjudicator(ch.b).withdraw(AdjudicatorReq(ch.params, tx, 1), subs)
            concluded = await next_event(late)
            assert isinstance(concluded, ConcludedEvent) and concluded.version == 2
        finally:
            await late.close()
        # The sub-channel's outcome was added to the parent's: 6+4 and 14+6.
        assert await ch.balances() == (FUNDS - 10 + 10, FUNDS - 20 + 20)
    finally:
        await watch_sub.close()


async def test_an_unreachable_node_gives_a_typed_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(NodeConnectionError, match="cannot reach"):
        EthBackend.from_config({"rpc": url, "adjudicator": "0x" + "11" * 20})
    node = EthNode(url, TxOptions(rpc_retries=2, rpc_backoff=0.01))
    try:
        with pytest.raises(NodeConnectionError, match="unreachable"):
            await node.block_number()
    finally:
        await node.close()


async def test_a_receipt_counts_once_it_has_enough_confirmations(
    module_anvil: AnvilNode, module_deployment: Deployment
) -> None:
    cfg = dev_backend_config(module_anvil, module_deployment, confirmations=3)
    backend = EthBackend.from_config(cfg)
    try:
        acct = backend.wallet().new_account()
        await backend.faucet(acct.address, backend.default_assets()[0], 10**18)
        node = backend.node
        to = checksum(bytes.fromhex("44" * 20))
        sending = asyncio.create_task(node.transact(acct, to, b"", value=1, operation="pay"))
        async with asyncio.timeout(10):
            while await node.balance(to) == 0:  # noqa: ASYNC110 - the node's balances have no notifications: poll them
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert not sending.done()  # ... but only one block deep
        await node.request("evm_mine")
        await asyncio.sleep(0.2)
        assert not sending.done()
        await node.request("evm_mine")
        receipt = await asyncio.wait_for(sending, 10)
        assert await node.block_number() - receipt.block_number + 1 >= 3
    finally:
        await backend.close()


async def test_one_log_poller_serves_every_subscription_and_catches_up_late_joiners(
    backend: Any, token: Any
) -> None:
    from perun_eth.events import EthSubscription, LogPoller

    ch1 = await LedgerChannel.create(backend, token)
    ch2 = await LedgerChannel.create(backend, token)
    sub1 = await backend.adjudicator(ch1.a).subscribe(ch1.params)
    sub2 = await backend.adjudicator(ch2.b).subscribe(ch2.params)
    poller = backend.chain.log_poller
    assert isinstance(poller, LogPoller) and poller.subscriptions == 2
    try:
        await backend.adjudicator(ch2.a).register(ch2.req(ch2.signed(ch2.state(1, (0, 0)))))
        ev = await next_event(sub2)
        assert isinstance(ev, RegisteredEvent) and ev.channel_id == ch2.params.id
        with pytest.raises(TimeoutError):  # nothing for the other channel
            await asyncio.wait_for(sub1.next(), 0.3)
        # A subscription joining at an older block than the poller's position gets the
        # events it missed from a catch-up query.
        late = EthSubscription(backend.chain, ch2.params.id)
        await poller.join(late, start=backend.chain.from_block)
        caught = await next_event(late)
        assert isinstance(caught, RegisteredEvent) and caught.version == 1
        await late.close()
    finally:
        await sub1.close()
        await sub2.close()
    assert poller.subscriptions == 0


async def test_one_channel_events_stream_watches_many_channels_on_the_poller(
    backend: Any, token: Any
) -> None:
    from perun_eth.events import EthChannelEvents, LogPoller

    ch1 = await LedgerChannel.create(backend, token)
    ch2 = await LedgerChannel.create(backend, token)
    stream = backend.adjudicator(ch1.a).channel_events()
    assert isinstance(stream, EthChannelEvents)
    try:
        stream.add(ch1.params)
        stream.add(ch2.params)
        poller = backend.chain.log_poller
        async with asyncio.timeout(10):
            while not (isinstance(poller, LogPoller) and poller.subscriptions == 2):
                await asyncio.sleep(0.01)
                poller = backend.chain.log_poller
        await backend.adjudicator(ch2.a).register(ch2.req(ch2.signed(ch2.state(3, (0, 0)))))
        cid, ev = await asyncio.wait_for(stream.next(), 10) or (b"", None)
        assert cid == ch2.params.id and isinstance(ev, RegisteredEvent) and ev.version == 3
        stream.remove(ch2.params.id)
        assert poller.subscriptions == 1
    finally:
        await stream.close()
    assert await stream.next() is None
    assert poller.subscriptions == 0


async def test_cancelled_requests_do_not_wedge_the_node(module_anvil: AnvilNode) -> None:
    """Callers give up on requests all the time (timeouts, closing clients). web3's provider
    takes a process-wide lock per request in a worker thread; a request cancelled while
    waiting for it used to leave the lock taken, and every later request hung."""
    node = EthNode(module_anvil.url, TxOptions(poll_interval=0.02))
    try:
        for rnd in range(30):
            tasks = [asyncio.ensure_future(node.block_number()) for _ in range(12)]
            for _ in range(rnd % 4):
                await asyncio.sleep(0)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # Still answering (the bound only keeps a wedged node from hanging the suite).
        head = await asyncio.wait_for(node.block_number(), 20)
        assert head == int(await asyncio.wait_for(node.request("eth_blockNumber"), 20), 16)
    finally:
        await node.close()
