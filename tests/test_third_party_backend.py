"""A chain backend from outside our distributions works like a first-party one.

The module ``acme_perun`` is written to a temporary directory together with the metadata of
an installed distribution ``acme-perun-chain`` 1.0 whose ``perun`` entry point ``acme``
points at it. Its backend wraps the sim ledger under its own name. It is found by the
ordinary entry-point scan, registered by its hook, and then passes the conformance suites
of :mod:`perun_core.testing` and a two-party payment run.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from perun_core.channel.phase import Phase
from perun_core.channel.types import Asset
from perun_core.cli import main
from perun_core.interfaces import ChainBackend
from perun_core.plugins import Plugins, load_plugins
from perun_core.testing.adjudicator import AdjudicatorConformance
from perun_core.testing.chain import ChainConformance
from perun_core.testing.client import TwoPartyConformance
from perun_core.testing.dispute import DisputeConformance
from perun_core.testing.funder import FunderConformance
from perun_core.testing.parties import PartyFactory, open_channel
from perun_core.wire.local_bus import LocalBus

PACKAGE = "acme_perun"
DIST = "acme-perun-chain"

SOURCES = {
    "__init__.py": '''
        """Acme's perun chain backend (a third party's distribution)."""
    ''',
    "backend.py": '''
        from perun_sim import SimBackend


        class AcmeBackend(SimBackend):
            """Acme's ledger: the sim ledger under another name."""

            name = "acme"
    ''',
    "plugin.py": """
        from perun_core import hookimpl


        @hookimpl
        def perun_register_chains(registry):
            from acme_perun.backend import AcmeBackend

            registry.add(AcmeBackend)
    """,
}


@pytest.fixture(scope="module")
def acme_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``acme-perun-chain`` installed (on ``sys.path``) for the tests of this module."""
    root = tmp_path_factory.mktemp("site")
    pkg = root / PACKAGE
    pkg.mkdir()
    for name, source in SOURCES.items():
        (pkg / name).write_text(textwrap.dedent(source).lstrip())
    info = root / f"{DIST.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[perun]\nacme = {PACKAGE}.plugin\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        yield root
    for mod in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[mod]


@pytest.fixture
def acme_plugins(acme_installed: Path) -> Plugins:
    """The acme plugin loaded through the entry-point scan, as users get it."""
    return load_plugins(only=["acme"])


def test_the_backend_is_found_through_its_entry_point(acme_plugins: Plugins) -> None:
    info = {i.name: i for i in acme_plugins.plugins_info()}["acme"]
    assert (info.distribution, info.version, info.module) == (DIST, "1.0", f"{PACKAGE}.plugin")
    assert info.chains == ("acme",)
    assert info.hooks == ("perun_register_chains",)
    backend_cls = acme_plugins.chain("acme")
    assert backend_cls.__module__ == f"{PACKAGE}.backend"
    assert acme_plugins.chains.provider_of("acme") == "acme"
    assert not sys.modules[f"{PACKAGE}.plugin"].__file__.startswith(  # type: ignore[union-attr]
        str(Path(__file__).resolve().parents[1])
    )  # not part of this repository


def test_perun_plugins_lists_it(
    acme_installed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PERUN_PLUGINS", "acme")
    monkeypatch.delenv("PERUN_DISABLE_PLUGINS", raising=False)
    assert main(["plugins", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["acme"]["distribution"] == DIST
    assert rows["acme"]["registers"]["chain"] == ["acme"]


async def test_two_parties_pay_and_settle_on_it(acme_plugins: Plugins) -> None:
    backend = acme_plugins.chain("acme").from_config({"clock": "manual"})
    factory = PartyFactory(backend, acme_plugins.bus("local")())
    try:
        asset = backend.default_assets()[0]
        alice, bob = await factory.make("alice"), await factory.make("bob")
        ch_a, ch_b = await open_channel(alice, bob, asset, (100, 100))
        assert ch_a.params.backend == "acme"
        for _ in range(10):
            await ch_a.send(3)
        await ch_b.send(5)
        await ch_a.settle()
        await ch_b.settle()
        assert ch_a.phase == ch_b.phase == Phase.WITHDRAWN
        assert await backend.balance_of(alice.account.address, asset) == factory.funds - 25
        assert await backend.balance_of(bob.account.address, asset) == factory.funds + 25
    finally:
        await factory.close()
        await backend.close()


class _OnAcme:
    @pytest.fixture
    def backend_config(self) -> dict[str, str]:
        return {"clock": "manual"}

    @pytest.fixture
    async def backend(self, acme_plugins: Plugins) -> AsyncIterator[ChainBackend]:
        b = acme_plugins.chain("acme").from_config({"clock": "manual", "secondary_grace": 0.05})
        yield b
        await b.close()

    @pytest.fixture
    def asset(self, backend: ChainBackend) -> Asset:
        return backend.default_assets()[0]

    @pytest.fixture
    async def parties(self, backend: ChainBackend) -> AsyncIterator[PartyFactory]:
        factory = PartyFactory(backend, LocalBus())
        yield factory
        await factory.close()


class TestAcmeChain(_OnAcme, ChainConformance):
    pass


class TestAcmeFunder(_OnAcme, FunderConformance):
    pass


class TestAcmeAdjudicator(_OnAcme, AdjudicatorConformance):
    pass


class TestAcmeTwoParty(_OnAcme, TwoPartyConformance):
    pass


class TestAcmeDispute(_OnAcme, DisputeConformance):
    pass
