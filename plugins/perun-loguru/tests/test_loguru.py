"""perun-loguru: a client run on the sim chain logs to loguru with channel context."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from perun_loguru import (
    LoguruConfigError,
    LoguruHandler,
    RoutingOptions,
    is_routed,
    options_from_config,
    route,
    unroute,
)

from perun_core.channel.phase import Phase
from perun_core.errors import PerunError
from perun_core.plugins import Plugins, load_plugins
from perun_core.testing.parties import PartyFactory, open_channel
from perun_core.wire.local_bus import LocalBus

CORE = Path(__file__).resolve().parents[3] / "perun_core"


@pytest.fixture
def records() -> Iterator[list[dict[str, Any]]]:
    """Every loguru record emitted while the test runs (DEBUG and up)."""
    got: list[dict[str, Any]] = []
    sink = logger.add(lambda m: got.append(m.record), level="DEBUG", format="{message}")
    yield got
    logger.remove(sink)


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    """loguru and sim loaded (routing is on), DEBUG level; routing undone afterwards."""
    loaded = load_plugins(only=["loguru", "sim"])
    loaded.configure({"loguru": {"level": "DEBUG"}})
    yield loaded
    unroute()


@pytest.fixture
async def parties(plugins: Plugins) -> AsyncIterator[PartyFactory]:
    backend = plugins.chain("sim").from_config({"clock": "manual"})
    factory = PartyFactory(backend, LocalBus())
    yield factory
    await factory.close()
    await backend.close()


def from_core(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if str(r["extra"].get("logger", "")).startswith("perun.")]


async def test_a_client_run_logs_with_channel_peer_phase_and_version(
    parties: PartyFactory, records: list[dict[str, Any]]
) -> None:
    alice = await parties.make("alice")
    bob = await parties.make("bob")
    asset = parties.backend.default_assets()[0]
    ch_a, ch_b = await open_channel(alice, bob, asset, (50, 50))
    for _ in range(3):
        await ch_a.send(1)
    await ch_a.settle()
    await ch_b.wait_phase(Phase.WITHDRAWN, timeout=5)

    cid = "0x" + ch_a.id.hex()
    mine = [r for r in from_core(records) if r["extra"]["channel_id"] == cid]
    assert mine, "no record carried the channel ID"
    # Alice's records name Bob as the peer and vice versa.
    peers = {r["extra"]["peer"] for r in mine}
    assert peers == {alice.address.hex(), bob.address.hex()}
    phases = {r["extra"]["phase"] for r in mine}
    assert {"FUNDING", "ACTING", "SIGNING", "FINAL", "WITHDRAWN"} <= phases
    versions = [
        r["extra"]["version"]
        for r in mine
        if r["extra"]["peer"] == bob.address.hex() and r["extra"]["version"] is not None
    ]
    assert versions == sorted(versions) and versions[-1] == 4  # 3 payments + the final state
    # loguru points at the framework's log call, not at the logging machinery.
    transition = next(r for r in mine if r["extra"]["logger"] == "perun.channel")
    assert transition["file"].path.endswith(str(Path("perun_core", "client", "channel.py")))
    assert transition["function"] == "_phase_changed"
    assert transition["level"].name == "DEBUG"


async def test_records_without_context_carry_none_and_exceptions_are_kept(
    plugins: Plugins, records: list[dict[str, Any]]
) -> None:
    log = logging.getLogger("perun.test")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("it failed")
    (rec,) = from_core(records)
    assert rec["message"] == "it failed"
    assert rec["level"].name == "ERROR"
    assert {
        k: rec["extra"][k] for k in ("channel_id", "peer", "phase", "version")
    } == dict.fromkeys(("channel_id", "peer", "phase", "version"))
    assert rec["exception"] is not None and isinstance(rec["exception"].value, RuntimeError)
    assert rec["function"] == "test_records_without_context_carry_none_and_exceptions_are_kept"


def test_loading_the_plugin_changes_no_logging(records: list[dict[str, Any]]) -> None:
    """Installing perun-loguru reroutes nothing: routing starts with ``configure``."""
    base = logging.getLogger("perun")
    before = (base.level, base.propagate, base.handlers[:])
    plugins = load_plugins(only=["loguru"])
    assert not is_routed() and (base.level, base.propagate, base.handlers[:]) == before
    logging.getLogger("perun.test").error("not routed")
    assert from_core(records) == []
    try:
        plugins.configure()
        assert is_routed()
    finally:
        unroute()


def test_configuring_again_does_not_duplicate_records(
    plugins: Plugins, records: list[dict[str, Any]]
) -> None:
    plugins.configure({"loguru": {"level": "DEBUG"}})
    load_plugins(only=["loguru"]).configure()  # a second application routes again
    logging.getLogger("perun.test").warning("once")
    assert [r["message"] for r in from_core(records)] == ["once"]
    assert (
        len([h for h in logging.getLogger("perun").handlers if isinstance(h, LoguruHandler)]) == 1
    )


def test_choosing_another_logger_restores_the_standard_library_setup(
    records: list[dict[str, Any]],
) -> None:
    base = logging.getLogger("perun")
    base.setLevel(logging.ERROR)
    base.propagate = True
    try:
        plugins = load_plugins(only=["loguru"])
        plugins.configure({"loguru": {"level": "DEBUG", "propagate": False}})
        assert is_routed() and base.level == logging.DEBUG and not base.propagate
        plugins.configure({"logger": "stdlib"})
        assert not is_routed()
        assert base.level == logging.ERROR and base.propagate
        logging.getLogger("perun.test").error("not routed")
        assert from_core(records) == []
    finally:
        unroute()
        base.setLevel(logging.NOTSET)


def test_the_level_of_an_unset_logger_defaults_to_info(records: list[dict[str, Any]]) -> None:
    base = logging.getLogger("perun")
    base.setLevel(logging.NOTSET)
    route()
    try:
        assert base.level == logging.INFO
        logging.getLogger("perun.test").debug("dropped")
        logging.getLogger("perun.test").info("kept")
        assert [r["message"] for r in from_core(records)] == ["kept"]
    finally:
        unroute()
    assert base.level == logging.NOTSET


def test_extra_loggers_can_be_routed(records: list[dict[str, Any]]) -> None:
    route(options_from_config({"loguru": {"loggers": ["perun", "my_app"]}}))
    try:
        logging.getLogger("my_app.sub").warning("app message")
        assert [r["extra"]["logger"] for r in records if r["message"] == "app message"] == [
            "my_app.sub"
        ]
    finally:
        unroute()
    assert not is_routed("my_app")


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"loguru": {"level": "LOUD"}}, "not a logging level"),
        ({"loguru": {"level": True}}, "level name or number"),
        ({"loguru": {"loggers": "perun"}}, "list of names"),
        ({"loguru": {"loggers": [""]}}, "non-empty names"),
        ({"loguru": {"propagate": "yes"}}, "true or false"),
        ({"loguru": {"colour": 1}}, "unknown key(s) in the loguru table: colour"),
        ({"loguru": 3}, "must be a table"),
        ({"logger": 1}, "must be a string"),
    ],
)
def test_bad_configuration_is_a_typed_error_and_changes_nothing(
    config: dict[str, Any], needle: str
) -> None:
    plugins = load_plugins(only=["loguru"])
    before = logging.getLogger("perun").handlers[:]
    try:
        with pytest.raises(LoguruConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            plugins.configure(config)
        assert isinstance(LoguruConfigError("x"), PerunError)
        assert logging.getLogger("perun").handlers == before  # still routed as before
    finally:
        unroute()


def test_options_default_to_routing_the_framework_loggers() -> None:
    assert options_from_config({}) == RoutingOptions()
    assert options_from_config({"logger": "LogURU"}).enabled
    assert not options_from_config({"logger": "stdlib"}).enabled
    assert options_from_config({"loguru": {"level": 5}}).level == 5


def test_the_core_never_imports_loguru() -> None:
    """Importing every core module (without loading plugins) leaves loguru unimported."""
    code = (
        "import importlib, pkgutil, sys, perun_core\n"
        "for m in pkgutil.walk_packages(perun_core.__path__, 'perun_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert 'loguru' not in sys.modules, 'loguru was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    for path in CORE.rglob("*.py"):
        text = path.read_text()
        assert "import loguru" not in text and "from loguru" not in text, path
