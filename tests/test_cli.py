"""The ``perun`` command line: logging options, ``perun plugins --check``, closed pipes.

Scenarios: an operator turns the log level up (``-v``, ``--log-level debug``) or down
(``-q``) before or after the command; a script pipes ``perun plugins --json`` into
``head``; a plugin author checks that every registration imports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from perun_core.cli import log_level, main
from perun_core.plugins import ENV_BLOCK, ENV_ONLY

LOGGING_PLUGIN = """
    import logging

    from perun_core import hookimpl

    def run(args):
        log = logging.getLogger("perun.talker")
        log.debug("a debug line")
        log.info("an info line")
        log.warning("a warning line")
        log.error("an error line")
        print("done", args.times)

    def configure(parser):
        parser.add_argument("--times", type=int, default=1)

    @hookimpl
    def perun_register_commands(registry):
        registry.add("talk", run, configure=configure, help="log at every level")

    @hookimpl
    def perun_register_persisters(registry):
        registry.add("broken", "perun_no_such_module:Store")
"""


@pytest.fixture
def talker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An installed-looking distribution fake-perun-talker: ``perun talk`` logs one line
    at each level; it also registers a persister whose module does not exist."""
    mod = f"_talker_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{mod}.py").write_text(textwrap.dedent(LOGGING_PLUGIN))
    info = tmp_path / "fake_perun_talker-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-perun-talker\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[perun]\ntalker = {mod}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(ENV_ONLY, "talker")
    monkeypatch.delenv(ENV_BLOCK, raising=False)
    yield
    sys.modules.pop(mod, None)


def _levels(err: str) -> list[str]:
    return [word for word in ("debug", "info", "warning", "error") if f"{word} line" in err]


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["talk"], ["warning", "error"]),
        (["-v", "talk"], ["info", "warning", "error"]),
        (["talk", "-v"], ["info", "warning", "error"]),
        (["talk", "-vv"], ["debug", "info", "warning", "error"]),
        (["--log-level", "debug", "talk"], ["debug", "info", "warning", "error"]),
        (["talk", "--log-level=ERROR"], ["error"]),
        (["-q", "talk"], ["error"]),
        (["talk", "--quiet", "--times", "3"], ["error"]),
        (["-q", "talk", "--log-level", "info"], ["info", "warning", "error"]),
    ],
)
def test_logging_options_before_or_after_the_command(
    talker: None, capsys: pytest.CaptureFixture[str], argv: list[str], shown: list[str]
) -> None:
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("done")
    assert _levels(err) == shown
    assert "WARNING perun.talker: a warning line" in err or "warning" not in shown


def test_a_bad_log_level_is_a_usage_error(talker: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["talk", "--log-level", "loud"])
    assert info.value.code == 2
    assert "invalid level 'loud'" in capsys.readouterr().err


def test_log_level_resolution() -> None:
    ns = argparse.Namespace
    assert log_level(ns(log_level=None, verbose=0, quiet=False)) is None
    assert log_level(ns(log_level="DEBUG", verbose=0, quiet=True)) == 10
    assert log_level(ns(log_level=None, verbose=1, quiet=True)) == 20
    assert log_level(ns(log_level=None, verbose=3, quiet=False)) == 10
    assert log_level(ns(log_level=None, verbose=0, quiet=True)) == 40
    assert log_level(ns()) is None  # a namespace built without the options


def test_the_root_logger_is_left_as_it_was(talker: None) -> None:
    import logging

    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    assert main(["-vv", "talk"]) == 0
    assert (root.level, list(root.handlers)) == before


def test_plugins_check_reports_a_registration_that_does_not_import(
    talker: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins"]) == 0  # listing does not import the registrations
    assert "persister: broken" in capsys.readouterr().out
    assert main(["plugins", "--check"]) == 1
    out, err = capsys.readouterr()
    assert "check failed: persister broken: plugin 'talker' cannot load persister" in err
    assert "No module named 'perun_no_such_module'" in err
    assert "check: every registration" not in out


def test_plugins_check_passes_for_the_builtins(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_ONLY, "")
    assert main(["plugins", "--check"]) == 0
    assert "check: every registration imports and validates" in capsys.readouterr().out
    assert main(["plugins", "--json", "--check"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["builtins"]


def test_a_closed_pipe_ends_quietly() -> None:
    """``perun plugins --json | head -1``: the reader is gone before we write."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "perun_core.cli", "plugins", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PERUN_PLUGINS": ""},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `head` exiting: our writes now fail with EPIPE
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert err == ""  # no traceback, no "Exception ignored" at shutdown
