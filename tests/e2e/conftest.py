"""Fixtures of the end-to-end tests; the combination comes from the environment
(``PERUN_TEST_CHAIN``, ``PERUN_TEST_BUS``, ``PERUN_TEST_PERSISTER``; see :mod:`e2e_support`)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from e2e_support import E2E, Network, Selection, chain_under_test

from perun_core.plugins import load_plugins


@pytest.fixture(scope="session")
def selection() -> Selection:
    return Selection.from_env()


def pytest_report_header(config: pytest.Config) -> str:
    return f"perun e2e: {Selection.from_env()}"


@pytest.fixture
async def e2e(selection: Selection, tmp_path: Path) -> AsyncIterator[E2E]:
    plugins = load_plugins()
    plugins.persister(selection.persister)  # fail early, naming what is installed
    plugins.bus(selection.bus)
    async with chain_under_test(selection.chain, plugins, tmp_path) as chain:
        net = Network(plugins, selection.bus, chain.backend, selection.bus_config)
        env = E2E(selection, plugins, chain, net, tmp_path)
        try:
            yield env
        finally:
            await env.close()
            # Finalize dropped tasks now, while the loop runs: a task's "exception was never
            # retrieved" report then lands in this test's log. (Left to a later garbage
            # collection, it may run inside pytest's AST rewriting, which CPython 3.11 turns
            # into "SystemError: AST constructor recursion depth mismatch".)
            gc.collect()
