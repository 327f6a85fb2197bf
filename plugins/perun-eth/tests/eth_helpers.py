"""Helpers of the perun-eth contract tests: keys, channel builders and a transaction driver."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from eth_abi.abi import decode as abi_decode
from perun_eth.contracts import load_artifact
from perun_eth.encoding import (
    address_of,
    channel_id,
    keccak256,
    params_abi,
    sign_state,
    sign_withdrawal_auth,
    state_abi,
)
from perun_eth.testing import AnvilNode, Deployment
from web3 import Web3
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from perun_core.channel import Allocation, Asset, Params, State, SubAlloc
from perun_core.channel.types import Address

# Keys of the encoding test vector (docs/plugins/ethereum-contracts.md).
ALICE_KEY = keccak256(b"perun-acceptance/alice")
BOB_KEY = keccak256(b"perun-acceptance/bob")
CAROL_KEY = keccak256(b"perun-tests/carol")
ALICE = address_of(ALICE_KEY)
BOB = address_of(BOB_KEY)
CAROL = address_of(CAROL_KEY)
KEYS = {ALICE: ALICE_KEY, BOB: BOB_KEY, CAROL: CAROL_KEY}

ETH = 10**18
D = 60  # challenge duration used by the tests


def checksum(a: Address | bytes) -> str:
    """The checksummed hex form web3 wants."""
    raw = a.raw if isinstance(a, Address) else a
    return Web3.to_checksum_address(raw)


def make_params(
    *,
    nonce: int = 1,
    participants: Sequence[Address] = (ALICE, BOB),
    app: str | None = None,
    challenge_duration: int = D,
    ledger: bool = True,
    virtual: bool = False,
) -> Params:
    p = Params(
        challenge_duration=challenge_duration,
        participants=tuple(participants),
        nonce=nonce,
        app=bytes.fromhex(app[2:]) if app else None,
        ledger_channel=ledger,
        virtual_channel=virtual,
        backend="eth",
    )
    return replace(p, id=channel_id(p))


def make_state(
    params: Params,
    assets: Sequence[Asset],
    balances: Sequence[Sequence[int]],
    *,
    version: int = 1,
    final: bool = False,
    locked: Sequence[SubAlloc] = (),
    data: bytes = b"",
) -> State:
    return State(
        channel_id=params.id,
        version=version,
        allocation=Allocation(tuple(assets), tuple(tuple(r) for r in balances), tuple(locked)),
        app=params.app,
        data=data,
        is_final=final,
    )


def sigs_for(params: Params, state: State) -> list[bytes]:
    return [sign_state(KEYS[p], state) for p in params.participants]


def signed(params: Params, state: State, sigs: Sequence[bytes] | None = None) -> tuple[Any, ...]:
    """The ABI value of ``Adjudicator.SignedState``."""
    return (
        params_abi(params),
        state_abi(state),
        list(sigs if sigs is not None else sigs_for(params, state)),
    )


def events(event: Any, receipt: Any) -> list[Any]:
    """The decoded ``event`` logs that ``event``'s contract emitted in ``receipt``."""
    ev = event()
    return [e for e in ev.process_receipt(receipt, errors=DISCARD) if e.address == ev.address]


def revert_reason(err: ContractLogicError) -> str:
    """The revert string (``Error(string)``) or ``panic 0x..`` of a failed call."""
    data = err.data
    if isinstance(data, str) and data.startswith("0x"):
        raw = bytes.fromhex(data[2:])
        if raw[:4] == bytes.fromhex("08c379a0"):
            return str(abi_decode(["string"], raw[4:])[0])
        if raw[:4] == bytes.fromhex("4e487b71"):
            return f"panic 0x{abi_decode(['uint256'], raw[4:])[0]:02x}"
        if not raw:
            return ""
    return str(err.message or err)


@dataclass
class Chain:
    """A deployed chain for one test: contracts, senders, time control and gas records."""

    node: AnvilNode
    w3: Any  # web3.Web3 (its strict address types do not fit test code)
    dep: Deployment
    gas: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c = self.w3.eth.contract
        self.adj = c(address=self.dep.adjudicator, abi=list(load_artifact("Adjudicator").abi))
        self.eth_holder = c(
            address=self.dep.asset_holder_eth, abi=list(load_artifact("AssetHolderETH").abi)
        )
        self.erc20_holder = c(
            address=self.dep.asset_holder_erc20, abi=list(load_artifact("AssetHolderERC20").abi)
        )
        self.token = c(address=self.dep.token, abi=list(load_artifact("PerunToken").abi))
        self.accounts: list[str] = list(self.w3.eth.accounts)
        self.sender = self.accounts[0]
        self.chain_id = self.dep.chain_id
        self.eth_asset = Asset(self.chain_id, bytes.fromhex(self.dep.asset_holder_eth[2:]))
        self.erc20_asset = Asset(self.chain_id, bytes.fromhex(self.dep.asset_holder_erc20[2:]))

    # --- transactions -------------------------------------------------------------------

    def send(
        self,
        fn: Any,
        *,
        sender: str | None = None,
        value: int = 0,
        gas: int | None = None,
        gas_name: str | None = None,
    ) -> Any:
        """Send ``fn`` and return its receipt (asserting success); record its gas.

        ``gas`` skips the estimate (which runs at the latest block's time, not the next).
        """
        tx: dict[str, Any] = {"from": sender or self.sender, "value": value}
        if gas is not None:
            tx["gas"] = gas
        tx_hash = fn.transact(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1, f"transaction reverted: {tx_hash.hex()}"
        if gas_name is not None:
            self.gas[gas_name] = int(receipt["gasUsed"])
        return receipt

    def reason(self, fn: Any, *, sender: str | None = None, value: int = 0) -> str:
        """The revert reason of calling ``fn`` now (AssertionError if it succeeds)."""
        try:
            fn.call({"from": sender or self.sender, "value": value})
        except ContractLogicError as e:
            return revert_reason(e)
        raise AssertionError("call did not revert")

    def send_failing(self, fn: Any, *, sender: str | None = None, value: int = 0) -> Any:
        """Mine ``fn`` without a gas estimate and return the (failed) receipt."""
        tx_hash = fn.transact({"from": sender or self.sender, "value": value, "gas": 3_000_000})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 0, "transaction unexpectedly succeeded"
        return receipt

    # --- time ----------------------------------------------------------------------------

    def now(self) -> int:
        return self.node.latest_timestamp()

    def mine_at(self, timestamp: int) -> None:
        """Mine an empty block at exactly ``timestamp`` (later calls see this time)."""
        self.node.set_next_timestamp(timestamp)
        self.node.call("evm_mine")

    def next_tx_at(self, timestamp: int) -> None:
        """The next transaction is mined at exactly ``timestamp``."""
        self.node.set_next_timestamp(timestamp)

    # --- channel operations --------------------------------------------------------------

    def register(
        self, params: Params, state: State, subs: Sequence[tuple[Any, ...]] = (), **kw: Any
    ) -> Any:
        return self.send(self.adj.functions.register(signed(params, state), list(subs)), **kw)

    def dispute(self, params: Params) -> tuple[int, int, int, bool, int, bytes]:
        d = self.adj.functions.disputes(params.id).call()
        return (d[0], d[1], d[2], d[3], d[4], bytes(d[5]))

    def fund_eth(self, params: Params, amounts: Sequence[int], **kw: Any) -> None:
        from perun_eth.encoding import funding_id

        for p, amount in zip(params.participants, amounts, strict=True):
            if amount:
                self.send(
                    self.eth_holder.functions.deposit(funding_id(params.id, p), amount),
                    value=amount,
                    **kw,
                )

    def withdraw_fn(
        self,
        holder: Any,
        params: Params,
        participant: Address,
        amount: int,
        *,
        receiver: Address | None = None,
        key: bytes | None = None,
    ) -> Any:
        receiver = receiver or participant
        sig = sign_withdrawal_auth(
            key or KEYS[participant], params.id, participant, receiver, amount
        )
        auth = (params.id, checksum(participant), checksum(receiver), amount)
        return holder.functions.withdraw(auth, sig)

    def eth_balance(self, a: Address) -> int:
        return int(self.w3.eth.get_balance(checksum(a)))

    def holdings(self, holder: Any, params: Params, p: Address) -> int:
        from perun_eth.encoding import funding_id

        return int(holder.functions.holdings(funding_id(params.id, p)).call())


@contextmanager
def snapshot(node: AnvilNode) -> Iterator[None]:
    sid = node.snapshot()
    try:
        yield
    finally:
        node.revert(sid)


GasSink = Callable[[str, int], None]
