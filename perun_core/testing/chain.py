"""The chain-backend conformance suite: wallet, accounts, IDs, encodings, signatures and the
optional test-ledger capabilities of a :class:`~perun_core.interfaces.ChainBackend`.

Use it by subclassing :class:`ChainConformance` (and :class:`WalletConformance`, which
:class:`ChainConformance` includes) in a test module and providing one fixture:

``backend``
    the :class:`~perun_core.interfaces.ChainBackend` under test.

Optional fixtures (the defaults suit most backends):

``backend_config``
    a configuration mapping that ``type(backend).from_config`` accepts (default ``{}``).
``address_text``
    a function giving the backend's text form of an :class:`Address`, which
    ``parse_address`` must read back (default: ``Address.hex``, ``0x``-prefixed hex).

Capabilities are checked both ways: a capability the backend declares (``balances``,
``faucet``, ``time_travel``) must work, and the methods of one it does not declare must raise
:class:`~perun_core.errors.NotSupportedError`.

Example::

    class TestMyChain(ChainConformance):
        @pytest.fixture
        def backend(self):
            return MyChainBackend.from_config({"rpc": "http://127.0.0.1:8545"})
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Final

import pytest

from perun_core.channel.allocation import Allocation
from perun_core.channel.params import Params, make_params
from perun_core.channel.state import State
from perun_core.channel.types import Address, Asset
from perun_core.errors import InvalidStateError, MalformedSignatureError, NotSupportedError
from perun_core.interfaces.adjudicator import Adjudicator
from perun_core.interfaces.chain import ChainBackend
from perun_core.interfaces.devledger import DevLedger
from perun_core.interfaces.funder import Funder
from perun_core.interfaces.wallet import Account, Wallet

KNOWN_CAPABILITIES: Final = frozenset(
    {"apps", "sub_channels", "virtual_channels", "balances", "faucet", "time_travel"}
)
"""Every capability name the core knows; a backend declares a subset."""

_MALFORMED_SIGS: Final = (b"", b"\x00", b"\x01" * 3, b"\xff" * 200)


def two_party_params(backend: ChainBackend, a: Address, b: Address, **kw: Any) -> Params:
    """Params of a two-party ledger channel between ``a`` and ``b`` (``kw`` overrides)."""
    fields: dict[str, Any] = {"challenge_duration": 60, "participants": (a, b), "nonce": 7}
    fields.update(kw)
    return make_params(backend, **fields)


def initial_state(
    backend: ChainBackend, params: Params, balances: tuple[int, int] = (10, 20), **kw: Any
) -> State:
    """A state of ``params`` in the backend's first default asset (``kw`` overrides)."""
    asset = backend.default_assets()[0]
    fields: dict[str, Any] = {
        "channel_id": params.id,
        "version": 0,
        "allocation": Allocation((asset,), ((balances[0], balances[1]),)),
        "app": params.app,
    }
    fields.update(kw)
    return State(**fields)


def _verifies(check: Callable[[], bool]) -> bool:
    """``check()``, where a malformed signature counts as "does not verify"."""
    try:
        return check()
    except MalformedSignatureError:
        return False


class WalletConformance:
    """Accounts and wallets: creation, lookup, signing."""

    async def test_new_accounts_are_held_distinct_and_unlockable(
        self, backend: ChainBackend
    ) -> None:
        wallet = backend.wallet()
        assert isinstance(wallet, Wallet)
        a, b = wallet.new_account(), wallet.new_account()
        assert isinstance(a, Account) and isinstance(b, Account)
        assert isinstance(a.address, Address) and a.address != b.address
        held = wallet.accounts()
        assert a.address in held and b.address in held
        unlocked = await wallet.unlock(a.address)
        assert unlocked.address == a.address
        # The unlocked account signs as the address it was created for.
        msg = b"unlock round trip"
        assert backend.verify_signature(a.address, msg, unlocked.sign(msg))

    async def test_unlocking_an_unknown_address_is_a_key_error(self, backend: ChainBackend) -> None:
        wallet = backend.wallet()
        stranger = Address(b"\xee" * len(wallet.new_account().address.raw))
        assert stranger not in wallet.accounts()
        with pytest.raises(KeyError):
            await wallet.unlock(stranger)

    def test_usage_counting_is_accepted(self, backend: ChainBackend) -> None:
        wallet = backend.wallet()
        acct = wallet.new_account()
        wallet.increment_usage(acct.address)
        wallet.decrement_usage(acct.address)
        assert acct.address in wallet.accounts()

    def test_account_signatures_verify_for_their_message_and_signer_only(
        self, backend: ChainBackend
    ) -> None:
        a, b = backend.wallet().new_account(), backend.wallet().new_account()
        sig = a.sign(b"hello")
        assert isinstance(sig, bytes) and sig
        assert backend.verify_signature(a.address, b"hello", sig)
        assert not _verifies(lambda: backend.verify_signature(a.address, b"hellO", sig))
        assert not _verifies(lambda: backend.verify_signature(b.address, b"hello", sig))

    def test_garbage_signatures_never_verify_and_raise_only_malformed(
        self, backend: ChainBackend
    ) -> None:
        a = backend.wallet().new_account()
        for junk in _MALFORMED_SIGS:
            try:
                ok = backend.verify_signature(a.address, b"m", junk)
            except MalformedSignatureError:
                continue
            assert ok is False, f"garbage signature {junk!r} verified"


class ChainConformance(WalletConformance):
    """IDs, encodings, state signatures, parsing, components and capabilities."""

    @pytest.fixture
    def backend_config(self) -> Mapping[str, Any]:
        """A configuration ``from_config`` accepts (override for backends that need one)."""
        return {}

    @pytest.fixture
    def address_text(self) -> Callable[[Address], str]:
        """The backend's text form of an address (override if it is not ``0x`` hex)."""
        return Address.hex

    def test_is_a_complete_backend(self, backend: ChainBackend) -> None:
        cls = type(backend)
        assert isinstance(backend, ChainBackend) and not inspect.isabstract(cls)
        assert isinstance(cls.name, str) and cls.name and "," not in cls.name
        assert isinstance(cls.capabilities, frozenset)
        assert cls.capabilities <= KNOWN_CAPABILITIES, cls.capabilities - KNOWN_CAPABILITIES

    async def test_from_config_builds_the_same_kind_of_backend(
        self, backend: ChainBackend, backend_config: Mapping[str, Any]
    ) -> None:
        other = type(backend).from_config(backend_config)
        try:
            assert type(other) is type(backend)
        finally:
            await other.close()

    def test_components_are_bound_to_an_account(self, backend: ChainBackend) -> None:
        acct = backend.wallet().new_account()
        assert isinstance(backend.funder(acct), Funder)
        assert isinstance(backend.adjudicator(acct), Adjudicator)

    def test_default_assets_and_payment_app(self, backend: ChainBackend) -> None:
        assets = backend.default_assets()
        assert assets and all(isinstance(a, Asset) for a in assets)
        assert len(set(assets)) == len(assets)
        app = backend.payment_app_id()
        assert app is None or (isinstance(app, bytes) and 1 <= len(app) <= 64)
        backend.check_aux(b"")  # empty aux is always acceptable

    def test_channel_id_is_deterministic_and_binds_every_field(self, backend: ChainBackend) -> None:
        a, b = backend.wallet().new_account().address, backend.wallet().new_account().address
        base = two_party_params(backend, a, b)
        assert isinstance(base.id, bytes) and len(base.id) == 32
        assert two_party_params(backend, a, b).id == base.id
        variants = {
            "participants": two_party_params(backend, b, a),
            "challenge_duration": two_party_params(backend, a, b, challenge_duration=61),
            "nonce": two_party_params(backend, a, b, nonce=8),
            "ledger_channel": two_party_params(backend, a, b, ledger_channel=False),
            "virtual_channel": two_party_params(
                backend, a, b, ledger_channel=False, virtual_channel=True
            ),
        }
        app = backend.payment_app_id()
        if app is not None:
            variants["app"] = two_party_params(backend, a, b, app=app)
        try:
            backend.check_aux(b"\x01")
        except InvalidStateError:
            pass  # the backend forbids aux bytes, so it need not bind them
        else:
            variants["aux"] = two_party_params(backend, a, b, aux=b"\x01")
        ids = {name: p.id for name, p in variants.items()}
        for name, cid in ids.items():
            assert cid != base.id, f"the channel ID does not bind {name}"
        assert len(set(ids.values())) == len(ids)

    def test_state_encoding_is_deterministic_and_injective_over_every_field(
        self, backend: ChainBackend
    ) -> None:
        a, b = backend.wallet().new_account().address, backend.wallet().new_account().address
        params = two_party_params(backend, a, b)
        base = initial_state(backend, params)
        enc = backend.encode_state(base)
        assert isinstance(enc, bytes) and enc == backend.encode_state(
            initial_state(backend, params)
        )
        other = two_party_params(backend, a, b, nonce=9)
        variants = {
            "channel_id": initial_state(backend, other),
            "version": base.replace(version=1),
            "balances": initial_state(backend, params, (11, 19)),
            "is_final": base.replace(is_final=True),
        }
        assets = backend.default_assets()
        if len(assets) > 1:
            variants["assets"] = base.replace(
                allocation=Allocation((assets[1],), base.allocation.balances)
            )
        app = backend.payment_app_id()
        if app is not None:
            with_app = two_party_params(backend, a, b, app=app)
            # A state's app is its params' app, which the channel ID binds (Ethereum encodes
            # the app only there), so the app variant has its own params' ID.
            variants["app"] = initial_state(backend, with_app)
            variants["data"] = variants["app"].replace(data=b"\x01")
        encodings = {name: backend.encode_state(s) for name, s in variants.items()}
        for name, e in encodings.items():
            assert e != enc, f"the state encoding ignores {name}"
        assert len(set(encodings.values())) == len(encodings)

    def test_state_signatures_verify_for_signer_and_state_only(self, backend: ChainBackend) -> None:
        wa, wb = backend.wallet().new_account(), backend.wallet().new_account()
        params = two_party_params(backend, wa.address, wb.address)
        state = initial_state(backend, params)
        sig = backend.sign_state(wa, state)
        assert isinstance(sig, bytes)
        assert backend.verify_state(wa.address, state, sig)
        assert not _verifies(lambda: backend.verify_state(wb.address, state, sig))
        changed = state.replace(version=1)
        assert not _verifies(lambda: backend.verify_state(wa.address, changed, sig))

    def test_malformed_state_signatures_raise_malformed_signature_error(
        self, backend: ChainBackend
    ) -> None:
        wa, wb = backend.wallet().new_account(), backend.wallet().new_account()
        state = initial_state(backend, two_party_params(backend, wa.address, wb.address))
        for junk in _MALFORMED_SIGS:
            try:
                ok = backend.verify_state(wa.address, state, junk)
            except MalformedSignatureError:
                continue
            assert ok is False, f"garbage signature {junk!r} verified"

    def test_addresses_parse_from_their_text_form(
        self, backend: ChainBackend, address_text: Callable[[Address], str]
    ) -> None:
        addr = backend.wallet().new_account().address
        assert backend.parse_address(address_text(addr)) == addr
        for junk in ("", "not an address", "0x", "0xzz"):
            with pytest.raises(InvalidStateError):
                backend.parse_address(junk)

    async def test_balances_capability(self, backend: ChainBackend) -> None:
        acct = backend.wallet().new_account()
        asset = backend.default_assets()[0]
        if "balances" not in backend.capabilities:
            with pytest.raises(NotSupportedError):
                await backend.balance_of(acct.address, asset)
            return
        assert await backend.balance_of(acct.address, asset) >= 0

    async def test_faucet_capability(self, backend: ChainBackend) -> None:
        acct = backend.wallet().new_account()
        asset = backend.default_assets()[0]
        if "faucet" not in backend.capabilities:
            with pytest.raises(NotSupportedError):
                await backend.faucet(acct.address, asset, 1)
            return
        if "balances" in backend.capabilities:
            before = await backend.balance_of(acct.address, asset)
            await backend.faucet(acct.address, asset, 1234)
            assert await backend.balance_of(acct.address, asset) == before + 1234
        else:
            await backend.faucet(acct.address, asset, 1234)

    async def test_time_travel_capability(self, backend: ChainBackend) -> None:
        if "time_travel" not in backend.capabilities:
            with pytest.raises(NotSupportedError):
                await backend.advance_time(1)
            with pytest.raises(NotSupportedError):
                await backend.ledger_time()
            return
        before = await backend.ledger_time()
        await backend.advance_time(100)
        after = await backend.ledger_time()
        assert after >= before + 100

    async def test_dev_ledger_funds_accounts_and_moves_time(self, backend: ChainBackend) -> None:
        cls = type(backend)
        if not {"faucet", "time_travel"} <= cls.capabilities:
            # Without the controls there is no development ledger to speak of.
            with pytest.raises(NotSupportedError):
                async with cls.dev_ledger() as dev:
                    acct = dev.backend.wallet().new_account()
                    await dev.faucet(acct.address, dev.asset, 1)
                    await dev.advance_time(1)
            return
        async with cls.dev_ledger() as dev:
            assert isinstance(dev, DevLedger) and isinstance(dev.backend, cls)
            acct = dev.backend.wallet().new_account()
            before = await dev.backend.balance_of(acct.address, dev.asset)
            await dev.faucet(acct.address, dev.asset, 777)
            assert await dev.backend.balance_of(acct.address, dev.asset) == before + 777
            start = await dev.ledger_time()
            await dev.advance_time(50)
            assert await dev.ledger_time() >= start + 50
