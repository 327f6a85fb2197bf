"""The ``eth`` chain backend: encodings, wallet, funder and adjudicator on one Ethereum chain."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Self

from perun_core.channel.params import Params
from perun_core.channel.state import State
from perun_core.channel.types import Address, Asset
from perun_core.errors import ChainError, InvalidStateError, NotSupportedError
from perun_core.interfaces import Account, ChainBackend
from perun_core.interfaces.chain import TransactionHook
from perun_eth import bindings as b
from perun_eth import encoding
from perun_eth.adjudicator import DEFAULT_SECONDARY_GRACE, EthAdjudicator
from perun_eth.chain import ERC20, ETH, EthChain, HolderInfo, checksum, parse_hex_address
from perun_eth.config_check import RpcReader, check_chain, run_blocking
from perun_eth.deploy import DeploymentRecord
from perun_eth.errors import EthConfigError, NodeConnectionError, UnsupportedParamsError
from perun_eth.events import LogPoller
from perun_eth.funder import EthFunder
from perun_eth.node import EthNode, ReceiptHook, TxOptions
from perun_eth.wallet import EthAccount, EthWallet

GAS_RESERVE = 10**19
"""Wei the dev faucet keeps in an account for gas (10 ETH)."""

_TX_OPTION_KEYS = {
    "confirmations": int,
    "gas_multiplier": float,
    "poll_interval": float,
    "tx_timeout": float,
    "max_replacements": int,
    "rpc_retries": int,
    "rpc_timeout": float,
    "priority_fee": int,
}


def fetch_chain_id(url: str, timeout: float = 10.0) -> int:
    """``eth_chainId`` of the node at ``url`` (synchronous, for configuration time).

    Raises:
        NodeConnectionError: the node cannot be reached or answered garbage.
    """
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(json.loads(resp.read())["result"], 16)
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError) as e:
        raise NodeConnectionError(
            f"cannot reach an Ethereum node at {url} ({e})", operation="eth_chainId"
        ) from e


class EthBackend(ChainBackend):
    """Ethereum: the Perun contracts on one chain, driven through one node.

    Build it with :meth:`from_config`. Several clients of a process can share one backend
    (one node connection and one nonce manager per sender); each gets its own
    ``funder(account)`` and ``adjudicator(account)``.

    The test-ledger capabilities (``faucet``, ``time_travel``) work on a development node
    (anvil) only; on other nodes they raise :class:`~perun_core.errors.NotSupportedError`.

    Args:
        chain: the deployment the backend drives.
        wallet: the wallet (default: empty).
        payment_app: address of the payment app contract, if deployed.
        apps: plugin apps by name: the address of each app's deployed contract (its AppID
            here; see :meth:`app_id`).
        secondary_grace: seconds a secondary settler waits for the peer's conclusion.
        faucet_account: an unlocked node account holding test tokens (dev faucet).
        on_receipt: called with every confirmed transaction of the backend's components.
    """

    name: ClassVar[str] = "eth"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"apps", "sub_channels", "balances", "faucet", "time_travel"}
    )

    def __init__(
        self,
        chain: EthChain,
        *,
        wallet: EthWallet | None = None,
        payment_app: bytes | None = None,
        apps: Mapping[str, bytes] | None = None,
        secondary_grace: float = DEFAULT_SECONDARY_GRACE,
        faucet_account: str | None = None,
        receiver: Address | None = None,
        on_receipt: ReceiptHook | None = None,
    ) -> None:
        self.chain = chain
        self._wallet = wallet if wallet is not None else EthWallet()
        self._payment_app = payment_app
        self._apps: dict[str, bytes] = dict(apps or {})
        self.secondary_grace = secondary_grace
        self._faucet_account = faucet_account
        self._faucet_lock = asyncio.Lock()
        self.receiver = receiver
        self.on_receipt = on_receipt
        self._peer_config: dict[str, Any] | None = None

    @property
    def node(self) -> EthNode:
        """The node connection."""
        return self.chain.node

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        """Build a backend from a configuration mapping.

        Keys:
            ``rpc`` (required): the node's HTTP(S) JSON-RPC URL.
            ``deployment``: a deployment record file written by ``perun eth deploy``
            (provides the keys below; explicit keys win).
            ``adjudicator``: the adjudicator address (required without ``deployment``).
            ``assets``: asset holders, each an address (kind detected through ``token()``)
            or ``{"holder": ..., "token": ...}``; the first is the default asset.
            ``payment_app``: the payment app's address (enables payment-app channels).
            ``apps``: a table of plugin apps' contract addresses by app name
            (``apps = {tictactoe = "0x…", htlc = "0x…"}``; ``perun eth deploy`` deploys
            every installed app and records them).
            ``chain_id``: the chain ID (the node must serve it; asked from the node when
            omitted). Assets given as ``{"holder": ..., "token": ..., "decimals": n}`` also
            check the token's ``decimals()``.
            ``from_block``: the first block to scan for events (the deployment block).
            ``keys``: private keys (hex) to put in the wallet; ``seeds``: strings whose
            keccak256 is a key; ``keystores``: ``[{"path": ..., "password": ...}]``.
            ``confirmations``, ``gas_multiplier``, ``poll_interval``, ``tx_timeout``,
            ``max_replacements``, ``rpc_retries``, ``rpc_timeout``, ``priority_fee``:
            transaction options (:class:`~perun_eth.node.TxOptions`).
            ``secondary_grace``: seconds; ``receiver``: where withdrawals go;
            ``faucet_account``: an unlocked dev-node account holding test tokens.
            ``strict``: the contracts must be our artifacts (not just behave as them).

        Before it returns, the configuration is checked against the node
        (:mod:`perun_eth.config_check`: the chain ID, the contracts and how they are wired,
        the tokens), so a backend that exists can never deposit on the wrong terms.

        Raises:
            EthConfigError: a key is missing or malformed.
            EthChainConfigError: the configuration contradicts the chain (a
                :class:`~perun_core.errors.ChainConfigError`).
            NodeConnectionError: the node cannot be reached.
            DeploymentError: the deployment file cannot be read.
        """
        cfg: dict[str, Any] = {}
        if config.get("deployment") is not None:
            cfg.update(DeploymentRecord.load(str(config["deployment"])).config())
        cfg.update({k: v for k, v in config.items() if v is not None})
        rpc = cfg.get("rpc")
        if not isinstance(rpc, str) or not rpc.startswith(("http://", "https://")):
            raise EthConfigError("eth config: 'rpc' must be an http(s):// JSON-RPC URL")
        if "adjudicator" not in cfg:
            raise EthConfigError("eth config: give 'adjudicator' (or a 'deployment' file)")
        try:
            opts = TxOptions(**{k: t(cfg[k]) for k, t in _TX_OPTION_KEYS.items() if k in cfg})
            adjudicator = parse_hex_address(str(cfg["adjudicator"]), "adjudicator")
            holders = [_holder(entry) for entry in cfg.get("assets", ())]
            decimals = {
                h.token: int(entry["decimals"])
                for h, entry in zip(holders, cfg.get("assets", ()), strict=True)
                if isinstance(entry, Mapping) and entry.get("decimals") is not None and h.token
            }
            chain_id_cfg = int(cfg["chain_id"]) if "chain_id" in cfg else None
            payment = cfg.get("payment_app")
            payment_app = parse_hex_address(str(payment), "payment_app") if payment else None
            apps = _apps_table(cfg.get("apps"))
            receiver = (
                Address(parse_hex_address(str(cfg["receiver"]), "receiver"))
                if cfg.get("receiver")
                else None
            )
        except (TypeError, ValueError) as e:
            raise EthConfigError(f"eth config: {e}") from e
        reader = RpcReader(rpc, timeout=min(opts.rpc_timeout, 10.0))
        chain_id, holders = run_blocking(
            lambda: check_chain(
                reader,
                chain_id=chain_id_cfg,
                adjudicator=adjudicator,
                holders=holders,
                decimals=decimals,
                apps=_app_checks(payment_app, apps),
                strict=bool(cfg.get("strict", False)),
            )
        )
        node = EthNode(rpc, opts)
        chain = EthChain(
            node,
            adjudicator,
            holders,
            chain_id=chain_id,
            from_block=int(cfg.get("from_block", 0)),
        )
        wallet = EthWallet()
        try:
            for key in cfg.get("keys", ()):
                wallet.add_key(key)
            for seed in cfg.get("seeds", ()):
                wallet.add_seed(seed)
        except ValueError as e:
            raise EthConfigError(f"eth config: {e}") from e
        for ks in cfg.get("keystores", ()):
            wallet.load_keystore(ks["path"], ks["password"])
        backend = cls(
            chain,
            wallet=wallet,
            payment_app=payment_app,
            apps=apps,
            secondary_grace=float(cfg.get("secondary_grace", DEFAULT_SECONDARY_GRACE)),
            faucet_account=cfg.get("faucet_account"),
            receiver=receiver,
        )
        backend._peer_config = {
            k: v for k, v in cfg.items() if k not in ("keys", "seeds", "keystores", "receiver")
        }
        backend._peer_config["chain_id"] = chain_id
        return backend

    def peer_config(self) -> Mapping[str, Any]:
        """The configuration this backend was built from, without keys and receiver: the
        same node, contracts and options for a backend in another process.

        Raises:
            NotSupportedError: the backend was not built by :meth:`from_config`.
        """
        if self._peer_config is None:
            raise NotSupportedError("this eth backend was not built from a configuration")
        return dict(self._peer_config)

    async def verify(self, *, strict: bool = False) -> None:
        """Check the chain this backend drives against the node, as :meth:`from_config` does
        (for a backend built directly from an :class:`EthChain`).

        Raises:
            EthChainConfigError: the chain ID, the contracts or the tokens do not fit.
        """
        await check_chain(
            self.node,
            chain_id=self.chain.chain_id,
            adjudicator=self.chain.adjudicator,
            holders=self.chain.holders,
            apps=_app_checks(self._payment_app, self._apps),
            strict=strict,
        )

    @classmethod
    def demo_ledger(
        cls, on_transaction: TransactionHook | None = None
    ) -> AbstractAsyncContextManager[Self]:
        """A fresh anvil on a free 127.0.0.1 port with the contracts deployed, and a backend
        on it whose first asset is the PerunToken (``perun demo --backend eth``); anvil is
        stopped by its PID on exit. See :func:`perun_eth.demo.demo_ledger`."""
        from perun_eth.demo import demo_ledger  # noqa: PLC0415 - import cycle: demo.py imports this module

        return demo_ledger(cls, on_transaction)

    # --- components ---------------------------------------------------------------------------

    def wallet(self) -> EthWallet:
        """The wallet shared by every client of this backend."""
        return self._wallet

    @staticmethod
    def _eth_account(account: Account) -> EthAccount:
        if not isinstance(account, EthAccount):
            raise TypeError(
                f"the eth backend sends transactions with EthAccount keys, not {type(account)}"
            )
        return account

    def funder(self, account: Account) -> EthFunder:
        """A funder depositing from (and paying gas with) ``account``."""
        return EthFunder(self.chain, self._eth_account(account), on_receipt=self.on_receipt)

    def adjudicator(self, account: Account) -> EthAdjudicator:
        """An adjudicator sending transactions and signing withdrawals as ``account``."""
        return EthAdjudicator(
            self.chain,
            self._eth_account(account),
            receiver=self.receiver,
            secondary_grace=self.secondary_grace,
            on_receipt=self.on_receipt,
        )

    # --- cryptography and encodings -----------------------------------------------------------

    def channel_id(self, params: Params) -> bytes:
        """``keccak256(abi.encode(params))`` (= ``Adjudicator.channelID``)."""
        return encoding.channel_id(params)

    def check_aux(self, aux: bytes) -> None:
        """Refuse non-empty ``aux``: the contracts' ``Params`` has no place for it."""
        if aux:
            raise UnsupportedParamsError(
                "the Ethereum backend cannot bind params.aux into the channel ID; leave it empty"
            )

    def encode_state(self, state: State) -> bytes:
        """``abi.encode(state)``: what the contracts hash and signatures cover."""
        return encoding.encode_state(state)

    def hash_state(self, state: State) -> bytes:
        """``keccak256(abi.encode(state))`` (= ``Adjudicator.hashState``)."""
        return encoding.hash_state(state)

    def funding_id(self, channel_id: bytes, participant: Address) -> bytes:
        """Where ``participant``'s deposits for a channel are held."""
        return encoding.funding_id(channel_id, participant)

    def sign_state(self, account: Account, state: State) -> bytes:
        """EIP-191 signature over ``hash_state(state)`` (65 bytes, ``v`` ∈ {27, 28})."""
        if isinstance(account, EthAccount):
            return account.sign_digest(encoding.signed_digest(state))
        return account.sign(encoding.encode_state(state))

    def verify_state(self, address: Address, state: State, sig: bytes) -> bool:
        """Whether ``sig`` is ``address``'s signature on ``state``.

        Raises:
            MalformedSignatureError: not a canonical 65-byte Ethereum signature.
        """
        return encoding.verify_state(address, state, sig)

    def verify_signature(self, address: Address, message: bytes, sig: bytes) -> bool:
        """Whether ``sig`` is ``address``'s EIP-191 signature over ``keccak256(message)``.

        Raises:
            MalformedSignatureError: not a canonical 65-byte Ethereum signature.
        """
        digest = encoding.eip191_digest(encoding.keccak256(message))
        return encoding.recover_digest(digest, sig) == address

    def parse_address(self, text: str) -> Address:
        """Parse a 20-byte hex address (``0x`` optional, any case).

        Raises:
            InvalidStateError: not 40 hex digits.
        """
        try:
            return Address(parse_hex_address(text))
        except ValueError as e:
            raise InvalidStateError(str(e), rule="address") from e

    def payment_app_id(self) -> bytes | None:
        """The payment app contract's address, if configured."""
        return self._payment_app

    def app_id(self, name: str) -> bytes | None:
        """The address of app ``name``'s contract (the ``apps`` configuration; ``"payment"``
        is the payment app), or ``None`` if it is not deployed/configured."""
        if name == "payment":
            return self._payment_app
        return self._apps.get(name)

    def default_assets(self) -> list[Asset]:
        """The configured asset holders on this chain (ETH first in a standard deployment)."""
        return [self.chain.asset(h.holder) for h in self.chain.holders]

    def asset(self, holder: str | bytes) -> Asset:
        """The asset of the holder contract at ``holder`` on this chain."""
        raw = parse_hex_address(holder) if isinstance(holder, str) else holder
        return self.chain.asset(raw)

    # --- ledger queries and the dev-node capabilities -----------------------------------------

    async def balance_of(self, address: Address, asset: Asset) -> int:
        """ETH (ETH holder) or token (ERC-20 holder) balance of ``address`` in wei."""
        if not self.chain.is_ours(asset):
            raise NotSupportedError(f"asset of chain {asset.ledger_id}, not {self.chain.chain_id}")
        return await self.chain.balance_of(address.raw, asset)

    async def _require_dev(self, what: str) -> None:
        if not await self.node.is_dev_node():
            raise NotSupportedError(f"{what} works on a development node (anvil) only")

    async def faucet(self, address: Address, asset: Asset, amount: int) -> None:
        """Give ``address`` ``amount`` of ``asset`` (anvil only).

        ETH is minted (``anvil_setBalance``); tokens are sent from the faucet account (an
        unlocked node account that holds them; default: the node's first account). The
        account is also topped up with ETH for gas.

        Raises:
            NotSupportedError: not a development node.
            ChainError: the faucet account holds too few tokens.
        """
        await self._require_dev("the faucet")
        node = self.node
        who = checksum(address)
        async with self._faucet_lock:
            info = await self.chain.holder_info(asset.holder)
            if info.kind == ETH:
                await node.request("anvil_setBalance", who, hex(await node.balance(who) + amount))
                return
            if await node.balance(who) < GAS_RESERVE // 10:
                have = await node.balance(who)
                await node.request("anvil_setBalance", who, hex(have + GAS_RESERVE))
            assert info.token is not None
            source = self._faucet_account or (await node.request("eth_accounts"))[0]
            tx = await node.request(
                "eth_sendTransaction",
                {
                    "from": source,
                    "to": checksum(info.token),
                    "data": "0x" + b.transfer_data(address.raw, amount).hex(),
                },
            )
            receipt = None
            while receipt is None:
                receipt = await node.request("eth_getTransactionReceipt", tx)
                if receipt is None:
                    await asyncio.sleep(node.options.poll_interval)
            if int(receipt["status"], 16) != 1:
                raise ChainError(
                    f"faucet account {source} could not send {amount} tokens",
                    tx=tx,
                    operation="faucet",
                )

    async def advance_time(self, seconds: int) -> None:
        """Move block time forward by ``seconds`` and mine a block (anvil only)."""
        await self._require_dev("moving time")
        await self.node.request("evm_increaseTime", hex(seconds))
        await self.node.request("evm_mine")

    async def ledger_time(self) -> int:
        """The latest block's timestamp."""
        return await self.node.timestamp()

    async def close(self) -> None:
        """Stop event polling and close the node connection."""
        if isinstance(self.chain.log_poller, LogPoller):
            await self.chain.log_poller.close()
        await self.node.close()


def _apps_table(table: Any) -> dict[str, bytes]:
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        raise TypeError(f"'apps' is a table of app name -> contract address, not {table!r}")
    return {str(name): parse_hex_address(str(addr), f"app {name}") for name, addr in table.items()}


def _app_checks(payment_app: bytes | None, apps: Mapping[str, bytes]) -> dict[str, bytes | None]:
    """The app contracts :func:`~perun_eth.config_check.check_chain` requires code at."""
    return {"payment app": payment_app, **{f"app {name!r}": a for name, a in apps.items()}}


def _holder(entry: Any) -> HolderInfo:
    if isinstance(entry, str):
        # Kind unknown: detected through token() on first use; register without a kind.
        return HolderInfo(parse_hex_address(entry, "asset holder"), "", None)
    if isinstance(entry, Mapping):
        holder = parse_hex_address(str(entry["holder"]), "asset holder")
        token = entry.get("token")
        if token:
            return HolderInfo(holder, ERC20, parse_hex_address(str(token), "token"))
        return HolderInfo(holder, ETH)
    raise TypeError(f"an asset is an address or {{'holder': ..., 'token': ...}}, not {entry!r}")
