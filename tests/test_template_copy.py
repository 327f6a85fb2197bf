"""The plugin template works when copied out of the repository, as its README says.

A user copies ``plugins/_template`` anywhere, renames it with the README's two commands,
installs it next to perun-core and perun-sim from this source tree into a fresh virtualenv
and runs its tests. This test does exactly that in a temporary directory (the tox env
``plugin-template`` runs it; it needs uv, or pip and a package index).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "plugins" / "_template"

pytestmark = pytest.mark.timeout(300)


def _uv() -> str | None:
    """The uv executable of this environment or the PATH (``None``: use pip)."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def _rename(tree: Path, name: str, Name: str) -> None:
    """What the README's rename step does: ``template``/``Template`` become the chain's
    name in every file but the license, and the package directory is renamed."""
    (tree / "src" / "perun_template").rename(tree / "src" / f"perun_{name}")
    for path in tree.rglob("*"):
        if not path.is_file() or path.name == "LICENSE":
            continue
        text = path.read_text()
        new = text.replace("template", name).replace("Template", Name)
        if new != text:
            path.write_text(new)


def _run(*args: str | Path, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, f"{args}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_the_template_copied_and_renamed_elsewhere_passes_its_suite(tmp_path: Path) -> None:
    tree = tmp_path / "perun-mychain"
    shutil.copytree(
        TEMPLATE, tree, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", ".*cache")
    )
    _rename(tree, "mychain", "MyChain")
    assert not list(tree.rglob("*template*"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERUN_", "VIRTUAL_ENV"))}
    env["PERUN_PLUGINS"] = "mychain,sim"  # this copy and what it depends on
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    # The README's install line: perun-core and perun-sim from the source tree.
    packages = [str(ROOT), str(ROOT / "plugins" / "perun-sim"), "-e", f"{tree}[testing]"]
    uv = _uv()
    if uv is not None:
        _run(uv, "venv", "-q", "--python", sys.executable, venv, cwd=tmp_path, env=env)
        _run(uv, "pip", "install", "-q", "--python", python, *packages, cwd=tmp_path, env=env)
    else:
        _run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env)
        _run(python, "-m", "pip", "install", "-q", *packages, cwd=tmp_path, env=env)
    # From the copy's own directory, with its own pytest settings: nothing of this
    # repository's configuration applies.
    out = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=tree, env=env)
    summary = out.strip().splitlines()[-1]
    assert re.search(r"^\d+ passed", summary) and "error" not in summary, out
    assert int(summary.split()[0]) > 30  # every conformance suite ran
    listed = _run(python, "-m", "perun_core.cli", "plugins", cwd=tree, env=env)
    assert re.search(r"^mychain\s+perun-mychain\s+0\.1\.0\s+chain: mychain$", listed, re.M)
