"""The pytest plugin of perun-core (entry point ``pytest11: perun``), loaded automatically.

It keeps to what every plugin's test run wants and imports nothing heavy:

- assertion rewriting for the conformance suites in :mod:`perun_core.testing`, so a failing
  suite test shows the compared values like any test of your own;
- the report header names the installed perun plugins and ``PERUN_PLUGINS``;
- dropped tasks are finalized before the terminal summary (see
  :func:`pytest_sessionfinish`);
- the fixture ``perun_plugins``: :func:`~perun_core.plugins.load_plugins` as the
  environment selects (``PERUN_PLUGINS``, ``PERUN_DISABLE_PLUGINS``).

Disable it with ``-p no:perun`` if it ever gets in the way.
"""

from __future__ import annotations

import gc
import importlib.metadata
import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from perun_core.plugins import Plugins

# The suites are imported by test modules later; rewriting must be registered first.
pytest.register_assert_rewrite(
    "perun_core.testing.adjudicator",
    "perun_core.testing.bus",
    "perun_core.testing.chain",
    "perun_core.testing.client",
    "perun_core.testing.dispute",
    "perun_core.testing.funder",
    "perun_core.testing.ledger",
    "perun_core.testing.parties",
    "perun_core.testing.persister",
)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """One line: the installed perun plugins and the allow-list."""
    names = sorted({ep.name for ep in importlib.metadata.entry_points(group="perun")})
    allow = os.environ.get("PERUN_PLUGINS")
    shown = "(unset)" if allow is None else repr(allow)
    return [f"perun plugins installed: {', '.join(names)}; PERUN_PLUGINS={shown}"]


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Finalize garbage (dropped asyncio tasks) before the terminal summary runs.

    A task whose exception nobody retrieved reports it from its finalizer. Left to a later
    garbage collection, that may run while pytest rewrites a module imported by a summary
    hook, which CPython 3.11 aborts with "AST constructor recursion depth mismatch".
    """
    gc.collect()


@pytest.fixture
def perun_plugins() -> Plugins:
    """The plugins the environment selects (a fresh :class:`~perun_core.plugins.Plugins`)."""
    from perun_core.plugins import load_plugins

    return load_plugins()
