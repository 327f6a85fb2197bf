"""The ``template`` chain backend: every method a backend implements, with its contract.

The ledger behind it is a stand-in: each ledger operation is delegated to perun-sim (an
in-process ledger with real secp256k1 signatures), so the template runs as it is. When you
copy it, replace every ``self._node`` call with your chain's cryptography and node calls;
the docstrings say what each method must guarantee (the full list is in
``docs/plugins/writing-a-chain-backend.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

from perun_sim import SimBackend

from perun_core.channel.params import Params
from perun_core.channel.state import SignedState, State
from perun_core.channel.types import Address, Asset
from perun_core.errors import NotSupportedError
from perun_core.interfaces import (
    Account,
    Adjudicator,
    AdjudicatorReq,
    ChainBackend,
    EventSubscription,
    Funder,
    Wallet,
)

_CONFIG_KEYS = frozenset({"clock", "seeds"})


class TemplateAdjudicator(Adjudicator):
    """Disputes and payouts of one account.

    Args:
        inner: the stand-in ledger's adjudicator for the same account.
    """

    def __init__(self, inner: Adjudicator) -> None:
        self._inner = inner

    async def register(
        self, req: AdjudicatorReq, sub_states: Mapping[bytes, SignedState] | None = None
    ) -> None:
        """Register ``req.tx`` for dispute; the same state again is a no-op.

        Raises:
            StaleStateError: the ledger holds the same or a newer version.
            RefutationClosedError: the refutation window is over.
            ChainError: another refusal: raise the :mod:`perun_core.errors` leaf of the rule.
        """
        await self._inner.register(req, sub_states)

    async def withdraw(
        self, req: AdjudicatorReq, sub_states: Mapping[bytes, SignedState] | None = None
    ) -> None:
        """Conclude unless concluded, then withdraw our outcome; idempotent. On a concluded
        channel the outcome is paid out whichever state ``req.tx`` carries.

        Raises:
            TimeoutNotElapsedError: the dispute's timeout has not passed.
            StateMismatchError: ``req.tx.state`` is not the registered state (not concluded).
            ChainError: another refusal: raise the :mod:`perun_core.errors` leaf of the rule.
        """
        await self._inner.withdraw(req, sub_states)

    async def progress(self, req: AdjudicatorReq, new_state: State, sig: bytes) -> None:
        """On-chain apps are not offered (no ``"apps"`` capability).

        Raises:
            NotSupportedError: always.
        """
        raise NotSupportedError("the template backend has no on-chain apps (progress)")

    async def subscribe(self, params: Params) -> EventSubscription:
        """The channel's events, the most recent past one first."""
        return await self._inner.subscribe(params)


class TemplateBackend(ChainBackend):
    """A chain backend named ``template``.

    Args:
        node: the stand-in ledger (replace it with your chain's node client).
    """

    name: ClassVar[str] = "template"
    capabilities: ClassVar[frozenset[str]] = frozenset({"balances", "faucet", "time_travel"})

    def __init__(self, node: SimBackend) -> None:
        self._node = node

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        """Build the backend from a plain mapping.

        Keys (optional): ``clock`` (``"realtime"`` or ``"manual"``: ledger time moves only
        through :meth:`advance_time`), ``seeds`` (deterministic accounts for the wallet).

        Raises:
            ValueError: an unknown key (a typo must not be ignored silently).
        """
        unknown = sorted(set(config) - _CONFIG_KEYS)
        if unknown:
            raise ValueError(
                f"unknown template backend option(s): {', '.join(unknown)}; "
                f"known: {', '.join(sorted(_CONFIG_KEYS))}"
            )
        return cls(SimBackend.from_config(dict(config)))

    # --- components ----------------------------------------------------------------------

    def wallet(self) -> Wallet:
        """The wallet holding this backend's accounts."""
        return self._node.wallet()

    def funder(self, account: Account) -> Funder:
        """A funder depositing from ``account`` (idempotent, waits in ledger time)."""
        return self._node.funder(account)

    def adjudicator(self, account: Account) -> TemplateAdjudicator:
        """An adjudicator sending transactions as ``account``."""
        return TemplateAdjudicator(self._node.adjudicator(account))

    # --- cryptography and encodings ------------------------------------------------------

    def channel_id(self, params: Params) -> bytes:
        """The 32-byte ID binding every params field but ``backend`` and ``id``."""
        return self._node.channel_id(params)

    def encode_state(self, state: State) -> bytes:
        """The canonical, injective encoding of a state (what signatures cover)."""
        return self._node.encode_state(state)

    def sign_state(self, account: Account, state: State) -> bytes:
        """``account``'s signature on :meth:`encode_state`."""
        return self._node.sign_state(account, state)

    def verify_state(self, address: Address, state: State, sig: bytes) -> bool:
        """Whether ``sig`` is ``address``'s signature on ``state``.

        Raises:
            MalformedSignatureError: ``sig`` cannot be a signature of the scheme.
        """
        return self._node.verify_state(address, state, sig)

    def verify_signature(self, address: Address, message: bytes, sig: bytes) -> bool:
        """Whether ``sig`` is ``address``'s signature on the raw ``message``."""
        return self._node.verify_signature(address, message, sig)

    def parse_address(self, text: str) -> Address:
        """An address from its text form.

        Raises:
            InvalidStateError: ``text`` is not an address of this chain.
        """
        return self._node.parse_address(text)

    def default_assets(self) -> list[Asset]:
        """The assets for demos and tests, the native currency first."""
        return self._node.default_assets()

    # --- test-ledger capabilities ("balances", "faucet", "time_travel") ----------------------

    async def balance_of(self, address: Address, asset: Asset) -> int:
        """On-ledger balance of ``address`` in ``asset``."""
        return await self._node.balance_of(address, asset)

    async def faucet(self, address: Address, asset: Asset, amount: int) -> None:
        """Credit test funds."""
        await self._node.faucet(address, asset, amount)

    async def advance_time(self, seconds: int) -> None:
        """Move ledger time forward."""
        await self._node.advance_time(seconds)

    async def ledger_time(self) -> int:
        """The ledger's current time in seconds."""
        return await self._node.ledger_time()

    async def close(self) -> None:
        """Release the node connection."""
        await self._node.close()
