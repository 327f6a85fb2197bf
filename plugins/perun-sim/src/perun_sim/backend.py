"""The sim chain backend: addresses, IDs, signatures and the ledger components in one object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

from perun_core.channel.app import AppRegistry
from perun_core.channel.params import Params
from perun_core.channel.state import State
from perun_core.channel.types import Address, Asset
from perun_core.errors import InvalidStateError, NotSupportedError
from perun_core.interfaces import Account, ChainBackend
from perun_sim import encoding
from perun_sim.adjudicator import DEFAULT_SECONDARY_GRACE, SimAdjudicator
from perun_sim.api import LedgerAPI, LocalLedger
from perun_sim.clock import SimClock
from perun_sim.crypto import ADDRESS_LEN, sha3, verify_digest
from perun_sim.funder import SimFunder
from perun_sim.ledger import DEFAULT_LEDGER_ID, SimLedger
from perun_sim.wallet import SimAccount, SimWallet

NATIVE_SYMBOL = b"ETH"
TOKEN_SYMBOL = b"PRN"
_DIGEST_MEMO = 4096
"""States whose digest a backend remembers (see :meth:`SimBackend._digest`)."""


class SimBackend(ChainBackend):
    """The ``sim`` backend: an ideal ledger with real secp256k1 signatures.

    Several clients of one process share one backend (and so one ledger and one wallet);
    each gets its own ``funder(account)`` and ``adjudicator(account)``. Clients in several
    processes share a ledger served by :mod:`perun_sim.server`: give each process a backend
    on a :class:`~perun_sim.remote.RemoteLedger` (``from_config({"url": ...})``).

    Args:
        ledger: the ledger to use: a :class:`SimLedger` in this process (default: a new one
            with a realtime clock) or any :class:`LedgerAPI`, e.g. a served ledger.
        wallet: the wallet (default: an empty :class:`SimWallet`).
        secondary_grace: real seconds a secondary settler waits for its peer's conclusion.
    """

    name: ClassVar[str] = "sim"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"apps", "sub_channels", "virtual_channels", "balances", "faucet", "time_travel"}
    )

    def __init__(
        self,
        ledger: SimLedger | LedgerAPI | None = None,
        *,
        wallet: SimWallet | None = None,
        secondary_grace: float = DEFAULT_SECONDARY_GRACE,
    ) -> None:
        if ledger is None:
            ledger = SimLedger()
        self._ledger: SimLedger | None = ledger if isinstance(ledger, SimLedger) else None
        self.api: LedgerAPI = LocalLedger(ledger) if isinstance(ledger, SimLedger) else ledger
        self._wallet = wallet if wallet is not None else SimWallet()
        self.secondary_grace = secondary_grace
        self._digests: dict[int, tuple[State, bytes]] = {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        """Build a backend from a configuration mapping.

        Keys (all optional): ``url`` (``tcp://HOST:PORT`` or ``unix:///path`` of a ledger
        served by :mod:`perun_sim.server`; then ``clock``, ``start``, ``latency`` and
        ``apps`` belong to the server and are refused here, and ``ledger_id`` must match
        the server's), ``connect_timeout`` (seconds, with ``url``), ``ledger`` (an
        existing :class:`SimLedger` to share; the ledger keys below are then ignored),
        ``ledger_id`` (int, default 1337), ``clock``
        (``"manual"`` | ``"realtime"`` | a :class:`SimClock`, default ``"realtime"``),
        ``start`` (start time of a manual clock), ``latency`` (real seconds per
        transaction), ``apps`` (an :class:`AppRegistry` for on-ledger progress),
        ``secondary_grace`` (seconds), ``seeds`` (list of str/bytes: deterministic
        accounts to put in the wallet).

        Raises:
            LedgerURLError: ``url`` is not a ledger URL.
            ValueError: a served ledger with keys that only its server can set.
        """
        ledger: SimLedger | LedgerAPI | None = config.get("ledger")
        url = config.get("url")
        if url is not None:
            from perun_sim.remote import RemoteLedger  # noqa: PLC0415 - only remote configurations need it

            if ledger is not None:
                raise ValueError("sim config: give either 'url' or 'ledger', not both")
            server_side = sorted(k for k in ("clock", "start", "latency", "apps") if k in config)
            if server_side:
                raise ValueError(
                    f"sim config: {', '.join(server_side)} of a served ledger are set by its "
                    "server (perun sim serve --manual-clock/--start/--latency), not by clients"
                )
            ledger = RemoteLedger(
                str(url),
                ledger_id=int(config.get("ledger_id", DEFAULT_LEDGER_ID)),
                connect_timeout=float(config.get("connect_timeout", 5.0)),
            )
        elif ledger is None:
            clock_cfg = config.get("clock", "realtime")
            if isinstance(clock_cfg, SimClock):
                clock = clock_cfg
            elif clock_cfg == "manual":
                clock = SimClock.manual(int(config.get("start", 0)))
            elif clock_cfg == "realtime":
                clock = SimClock.realtime()
            else:
                raise ValueError(f"sim clock must be 'manual' or 'realtime', not {clock_cfg!r}")
            apps = config.get("apps")
            if apps is not None and not isinstance(apps, AppRegistry):
                raise TypeError("config 'apps' must be an AppRegistry")
            ledger = SimLedger(
                int(config.get("ledger_id", DEFAULT_LEDGER_ID)),
                clock,
                apps=apps,
                latency=float(config.get("latency", 0.0)),
            )
        elif not isinstance(ledger, SimLedger):
            raise TypeError("config 'ledger' must be a SimLedger")
        wallet = SimWallet()
        for seed in config.get("seeds", ()):
            wallet.add_seed(seed.encode() if isinstance(seed, str) else bytes(seed))
        return cls(
            ledger,
            wallet=wallet,
            secondary_grace=float(config.get("secondary_grace", DEFAULT_SECONDARY_GRACE)),
        )

    @property
    def ledger(self) -> SimLedger:
        """The ledger object, when it lives in this process.

        Raises:
            NotSupportedError: the ledger is served by another process (use :attr:`api`).
        """
        if self._ledger is None:
            raise NotSupportedError(
                f"the sim ledger is served at {self.api.location}, not in this process; "
                "use backend.api (async) instead of backend.ledger"
            )
        return self._ledger

    @property
    def clock(self) -> SimClock:
        """The ledger's clock, when the ledger lives in this process.

        Raises:
            NotSupportedError: the ledger is served by another process (use
                :meth:`advance_time` / :meth:`ledger_time`).
        """
        return self.ledger.clock

    @property
    def is_remote(self) -> bool:
        """Whether the ledger is served by another process."""
        return self._ledger is None

    async def connect(self) -> None:
        """Connect to a served ledger now rather than on first use (no-op when local).

        Raises:
            LedgerConnectionError: the server cannot be reached or serves another ledger.
        """
        await self.api.connect()

    # --- components ---------------------------------------------------------------------------

    def wallet(self) -> SimWallet:
        """The wallet shared by every client of this backend."""
        return self._wallet

    def funder(self, account: Account) -> SimFunder:
        """A funder depositing from ``account``'s ledger balance."""
        return SimFunder(self.api, account)

    def adjudicator(self, account: Account) -> SimAdjudicator:
        """An adjudicator acting (and withdrawing) as ``account``."""
        self.api.add_account(account)  # a served ledger: withdrawals of its holdings need its key
        return SimAdjudicator(self.api, account, secondary_grace=self.secondary_grace)

    # --- cryptography and encodings -----------------------------------------------------------

    def channel_id(self, params: Params) -> bytes:
        """SHA3-256 over the canonical encoding of every params field (``aux`` included)."""
        return encoding.channel_id(params)

    def encode_state(self, state: State) -> bytes:
        """The canonical bytes of every state field (what signatures cover)."""
        return encoding.encode_state(state)

    def hash_state(self, state: State) -> bytes:
        """SHA3-256 of :meth:`encode_state` (the signed digest and the ledger's state hash)."""
        return encoding.hash_state(state)

    def funding_id(self, channel_id: bytes, participant: Address) -> bytes:
        """Where ``participant``'s deposits for a channel are held."""
        return encoding.funding_id(channel_id, participant)

    def sign_state(self, account: Account, state: State) -> bytes:
        """``account``'s signature on ``state`` (65 bytes ``r ‖ s ‖ v``)."""
        if isinstance(account, SimAccount):
            return account.sign_digest(self._digest(state))
        return account.sign(encoding.encode_state(state))

    def verify_state(self, address: Address, state: State, sig: bytes) -> bool:
        """Whether ``sig`` is ``address``'s signature on ``state``.

        Raises:
            MalformedSignatureError: ``sig`` is not a canonical 65-byte sim signature.
        """
        return verify_digest(address, self._digest(state), sig)

    def _digest(self, state: State) -> bytes:
        """:func:`~perun_sim.encoding.hash_state`, remembered for recent state objects.

        Each party of an update hashes the same state object twice: the proposer signs it
        and later checks the peer's signature on it, the responder checks the proposer's
        signature and then signs it. States are immutable, and an entry holds its state, so
        the object ID cannot be reused while the entry lives. The memo is bounded.
        """
        key = id(state)
        memo = self._digests
        hit = memo.get(key)
        if hit is not None and hit[0] is state:
            return hit[1]
        digest = encoding.hash_state(state)
        if len(memo) >= _DIGEST_MEMO:
            # Start afresh (O(1)); evicting the oldest one by one made every insertion scan
            # the dict's deleted slots. The next few lookups miss and hash again.
            memo.clear()
        memo[key] = (state, digest)
        return digest

    def verify_signature(self, address: Address, message: bytes, sig: bytes) -> bool:
        """Whether ``sig`` is ``address``'s signature on ``SHA3-256(message)``.

        Raises:
            MalformedSignatureError: ``sig`` is not a canonical 65-byte sim signature.
        """
        return verify_digest(address, sha3(message), sig)

    def parse_address(self, text: str) -> Address:
        """Parse a 20-byte address in hex (``0x`` prefix optional).

        Raises:
            InvalidStateError: not 40 hex digits.
        """
        t = text.strip()
        t = t[2:] if t[:2] in ("0x", "0X") else t
        try:
            raw = bytes.fromhex(t)
        except ValueError:
            raw = b""
        if len(raw) != ADDRESS_LEN:
            raise InvalidStateError(
                f"{text!r} is not a sim address (20 bytes as 40 hex digits)", rule="address"
            )
        return Address(raw)

    def payment_app_id(self) -> bytes:
        """The sim payment app's AppID (see :data:`perun_sim.encoding.PAYMENT_APP_ID`)."""
        return encoding.PAYMENT_APP_ID

    def app_id(self, name: str) -> bytes:
        """The sim AppID of the app ``name`` (:func:`perun_sim.encoding.sim_app_id`): the sim
        ledger runs every installed app, so every name has one."""
        return encoding.sim_app_id(name)

    def asset(self, symbol: bytes | str = NATIVE_SYMBOL) -> Asset:
        """The asset named ``symbol`` on this backend's ledger (any name is a valid token)."""
        raw = symbol.encode() if isinstance(symbol, str) else symbol
        return Asset(self.api.ledger_id, raw)

    def default_assets(self) -> list[Asset]:
        """``[ETH]``: the ledger's native coin. A second token is ``asset("PRN")``."""
        return [self.asset(NATIVE_SYMBOL)]

    async def balance_of(self, address: Address, asset: Asset) -> int:
        """The ledger account balance of ``address`` in ``asset``."""
        return await self.api.balance_of(address, asset)

    async def faucet(self, address: Address, asset: Asset, amount: int) -> None:
        """Mint ``amount`` of ``asset`` into ``address``'s ledger account."""
        await self.api.mint(address, asset, amount)

    async def advance_time(self, seconds: int) -> None:
        """Move ledger time forward by ``seconds`` (waiters whose deadline passed wake up)."""
        await self.api.advance(seconds)

    async def ledger_time(self) -> int:
        """The ledger's current time in seconds."""
        return await self.api.now()

    async def close(self) -> None:
        """Close the connection to a served ledger (a local ledger needs nothing)."""
        await self.api.close()
