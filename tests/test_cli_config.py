"""``perun --config PATH``: the configuration is checked first, the plugins' configure hook
gets its ``[perun]`` table, and commands read it with ``config_of``."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from perun_core.cli import ENV_CONFIG, main
from perun_core.plugins import ENV_BLOCK, ENV_ONLY

PLUGIN = """
    from perun_core import hookimpl
    from perun_core.cli import config_of

    def run(args):
        cfg = config_of(args)
        print("backend", None if cfg is None else cfg.backend, "bus", cfg and cfg.bus)

    @hookimpl
    def perun_register_commands(registry):
        registry.add("whoami", run, help="print the configured parts")

    @hookimpl
    def perun_configure(config):
        if config:
            print("configured with logger", config.get("logger"))
"""


@pytest.fixture
def whoami(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed-looking plugin with the command ``perun whoami``; yields a config file."""
    mod = f"_whoami_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{mod}.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "fake_perun_whoami-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-perun-whoami\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[perun]\nwhoami = {mod}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(ENV_ONLY, "whoami")
    monkeypatch.delenv(ENV_BLOCK, raising=False)
    monkeypatch.delenv(ENV_CONFIG, raising=False)
    config = tmp_path / "perun.toml"
    config.write_text('[perun]\nbackend = "sim"\nbus = "tcp"\nlogger = "stdlib"\n')
    yield config
    sys.modules.pop(mod, None)


def test_config_before_or_after_the_command(
    whoami: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["--config", str(whoami), "whoami"], ["whoami", "--config", str(whoami)]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "configured with logger stdlib" in out and "backend sim bus tcp" in out
    assert main(["whoami"]) == 0
    assert "backend None" in capsys.readouterr().out


def test_config_from_the_environment_and_a_bad_file(
    whoami: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_CONFIG, str(whoami))
    assert main(["whoami"]) == 0
    assert "backend sim bus tcp" in capsys.readouterr().out
    whoami.write_text("[perun]\nbus = 'tcp'\n")
    assert main(["whoami"]) == 2  # checked before the command runs
    captured = capsys.readouterr()
    assert "perun.backend" in captured.err and "backend" not in captured.out
