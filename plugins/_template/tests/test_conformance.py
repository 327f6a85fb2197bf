"""The template backend, loaded through its entry point, passes every conformance suite.

Keep this file when you copy the template: change the fixtures to build your backend
(against a local test node) and the asset to use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from perun_core.channel.types import Asset
from perun_core.interfaces import ChainBackend
from perun_core.plugins import load_plugins
from perun_core.testing.adjudicator import AdjudicatorConformance
from perun_core.testing.chain import ChainConformance
from perun_core.testing.client import TwoPartyConformance
from perun_core.testing.dispute import DisputeConformance
from perun_core.testing.funder import FunderConformance
from perun_core.testing.parties import PartyFactory
from perun_core.wire.local_bus import LocalBus

CONFIG = {"clock": "manual"}  # ledger time moves only when a test moves it


class _OnTemplate:
    @pytest.fixture
    def backend_config(self) -> dict[str, str]:
        return dict(CONFIG)

    @pytest.fixture
    async def backend(self) -> AsyncIterator[ChainBackend]:
        # Through the entry point, as users get it: this also checks the registration.
        plugins = load_plugins(only=["template"])
        b = plugins.chain("template").from_config(CONFIG)
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


class TestChain(_OnTemplate, ChainConformance):
    pass


class TestFunder(_OnTemplate, FunderConformance):
    pass


class TestAdjudicator(_OnTemplate, AdjudicatorConformance):
    pass


class TestTwoParty(_OnTemplate, TwoPartyConformance):
    pass


class TestDispute(_OnTemplate, DisputeConformance):
    pass


def test_unknown_options_are_refused() -> None:
    from perun_template import TemplateBackend

    with pytest.raises(ValueError, match="unknown template backend option"):
        TemplateBackend.from_config({"clcok": "manual"})
