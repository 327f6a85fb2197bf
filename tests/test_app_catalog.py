"""Apps as plugins: the ``perun_register_apps`` hook, the catalog and binding per chain."""

from __future__ import annotations

import types
from typing import Any

import pytest
from perun_sim import SimBackend
from perun_sim.encoding import sim_app_id
from perun_sim.ledger import SimLedger

from perun_core import hookimpl
from perun_core.channel.allocation import Allocation
from perun_core.channel.app import App, AppDefinition, AppRegistry, bind_apps
from perun_core.channel.params import Params
from perun_core.channel.state import State
from perun_core.client import LedgerChannelProposal
from perun_core.errors import (
    AppTransitionError,
    PeerRejectedError,
    PluginConflictError,
    PluginValidationError,
    RejectCode,
    UnknownAppError,
)
from perun_core.plugins import ENV_BLOCK, ENV_ONLY, load_plugins
from perun_core.registry import AppCatalog


class _Frozen(App):
    """A test app that refuses every transition."""

    def __init__(self, app_id: bytes) -> None:
        self.app_id = app_id

    def valid_transition(self, params: Params, frm: State, to: State, actor_idx: int) -> None:
        raise AppTransitionError("frozen")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tox env's plugin selection does not apply to these in-memory plugins."""
    monkeypatch.delenv(ENV_ONLY, raising=False)
    monkeypatch.delenv(ENV_BLOCK, raising=False)


FROZEN = AppDefinition("frozen", _Frozen, summary="refuses every move")


def _plugin_with(name: str, definition: object) -> types.ModuleType:
    @hookimpl
    def perun_register_apps(registry: AppCatalog) -> None:
        registry.add(name, definition)  # type: ignore[arg-type]

    mod = types.ModuleType(f"app_plugin_{name}")
    mod.perun_register_apps = perun_register_apps  # type: ignore[attr-defined]
    return mod


def test_an_app_plugin_registers_by_name_and_is_listed() -> None:
    plugins = load_plugins(
        entry_points=False, extra=[("frozen-plugin", _plugin_with("frozen", FROZEN))]
    )
    assert plugins.apps.get("frozen") is FROZEN
    info = next(i for i in plugins.plugins_info() if i.name == "frozen-plugin")
    assert info.apps == ("frozen",)
    assert "app: frozen" in info.registrations


def test_a_reference_is_imported_on_first_use() -> None:
    ref = f"{__name__}:FROZEN"
    plugins = load_plugins(entry_points=False, extra=[("lazy", _plugin_with("frozen", ref))])
    assert not plugins.apps.is_loaded("frozen")
    assert plugins.apps.definitions() == {"frozen": FROZEN}


def test_bad_app_registrations_are_typed_errors() -> None:
    with pytest.raises(PluginValidationError, match="not an AppDefinition"):
        load_plugins(entry_points=False, extra=[("bad", _plugin_with("frozen", object()))])
    with pytest.raises(PluginValidationError, match="named 'frozen'"):
        load_plugins(entry_points=False, extra=[("bad", _plugin_with("other", FROZEN))])
    with pytest.raises(PluginConflictError, match="'frozen'"):
        load_plugins(
            entry_points=False,
            extra=[("a", _plugin_with("frozen", FROZEN)), ("b", _plugin_with("frozen", FROZEN))],
        )


def test_binding_gives_each_chain_its_own_app_ids() -> None:
    sim = bind_apps({"frozen": FROZEN}, sim_app_id)
    app = sim.get(sim_app_id("frozen"))
    assert isinstance(app, _Frozen) and app.app_id == sim_app_id("frozen")
    # a chain that cannot run the app binds nothing
    assert len(bind_apps({"frozen": FROZEN}, lambda name: None)) == 0
    # binding into an existing registry keeps what is there
    reg = AppRegistry()
    reg.register(_Frozen(b"\x01" * 20))
    bind_apps({"frozen": FROZEN}, sim_app_id, reg)
    assert len(reg) == 2


def test_the_sim_backend_names_every_app_and_the_default_ledger_runs_payment() -> None:
    backend = SimBackend(SimLedger())
    assert backend.app_id("payment") == backend.payment_app_id()
    assert backend.app_id("frozen") == sim_app_id("frozen") != backend.app_id("payment")
    assert backend.payment_app_id() in backend.ledger.apps


async def test_client_app_id_refuses_an_unknown_app(make_party: Any) -> None:
    alice = (await make_party("alice")).client
    assert alice.app_id("payment") == alice.backend.payment_app_id()
    with pytest.raises(UnknownAppError, match="'no-such-app'"):
        alice.app_id("no-such-app")


async def test_a_proposal_with_an_app_the_peer_lacks_is_refused_typed(
    make_party: Any, asset: Any
) -> None:
    """Alice knows an app Bob does not: Bob answers INVALID naming it; nothing is created."""
    alice = await make_party("alice")
    bob = await make_party("bob")
    frozen = _Frozen(b"\x77" * 20)
    alice.client.apps.register(frozen)
    prop = LedgerChannelProposal(
        peer=bob.address,
        allocation=Allocation((asset,), ((10, 10),)),
        app=frozen.app_id,
    )
    with pytest.raises(PeerRejectedError) as info:
        await alice.client.propose_channel(prop)
    assert info.value.code == RejectCode.INVALID and "unknown app" in str(info.value)
    assert not alice.client.channels and not bob.client.channels
    # Our own proposal naming an app we lack is refused before anything is sent.
    with pytest.raises(UnknownAppError):
        await bob.client.propose_channel(
            LedgerChannelProposal(
                peer=alice.address,
                allocation=Allocation((asset,), ((10, 10),)),
                app=frozen.app_id,
            )
        )
