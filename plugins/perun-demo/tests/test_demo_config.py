"""``perun demo --config perun.toml``: the parts it names are the demo's, their tables
configure them, and a bad table stops the demo with the part named."""

from __future__ import annotations

from pathlib import Path

import pytest

from perun_core.cli import main


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "perun.toml"
    path.write_text(text)
    return str(path)


def test_the_demo_runs_on_the_configured_parts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(
        tmp_path,
        '[perun]\nbackend = "sim"\nbus = "local"\npersister = "memory"\n'
        "[perun.local]\nencode = true\n[perun.client]\nupdate_timeout = 3.0\n",
    )
    assert main(["--config", config, "demo", "--payments", "5", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "on sim / local / memory" in out and "demo OK: 5 payments" in out


def test_a_bus_table_reaches_the_bus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A frame limit below any proposal: the table must have reached the bus to fail this way.
    config = _write(tmp_path, '[perun]\nbackend = "sim"\n[perun.local]\nmax_size = 64\n')
    assert main(["demo", "--config", config, "--payments", "1"]) == 2
    assert "64" in capsys.readouterr().err


def test_a_bad_table_names_the_part(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path, '[perun]\nbackend = "sim"\n[perun.local]\nencoding = false\n')
    assert main(["demo", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "bus 'local'" in err and "encoding" in err
