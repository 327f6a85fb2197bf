"""perun-core is lean, and loading plugins is cheap and free of side effects.

- The core depends on pluggy and msgspec only, and no module of it imports a plugin (or the
  libraries plugins wrap).
- ``import perun_core`` imports no plugin; loading every installed plugin and listing what
  each registers imports none of their implementations (web3, plyvel, rich, ...) and leaves
  the recursion limit and the logging setup as they were.
- Every first-party ``plugin.py`` keeps its imports inside its hooks.
- Every distribution carries the license, its metadata and a compatible perun-core pin.
"""

from __future__ import annotations

import ast
import gc
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "perun_core"
PLUGIN_DIRS = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())

# What plugins wrap; the core never imports any of it.
PLUGIN_PACKAGES = {
    "perun_sim",
    "perun_tcp",
    "perun_eth",
    "perun_leveldb",
    "perun_rocksdb",
    "perun_loguru",
    "perun_demo",
    "perun_template",
}
WRAPPED_LIBRARIES = {"rich", "web3", "eth_account", "eth_abi", "plyvel", "rocksdict", "loguru"}


def _pyproject(path: Path) -> dict[str, object]:
    with open(path / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _requirement_name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()


def test_perun_core_depends_on_pluggy_and_msgspec_only() -> None:
    project = _pyproject(ROOT)["project"]
    assert isinstance(project, dict)
    assert {_requirement_name(r) for r in project["dependencies"]} == {"pluggy", "msgspec"}
    installed = importlib.metadata.requires("perun-core") or []
    unconditional = {_requirement_name(r) for r in installed if "extra ==" not in r}
    assert unconditional == {"pluggy", "msgspec"}


def _imported_roots(path: Path) -> set[str]:
    # No garbage collection while parsing: on CPython 3.11 a finalizer that logs a traceback
    # (an un-awaited task's exception from an earlier test) re-enters ast.parse and breaks
    # it with "AST constructor recursion depth mismatch".
    gc_on = gc.isenabled()
    gc.disable()
    try:
        tree = ast.parse(path.read_text(), str(path))
    finally:
        if gc_on:
            gc.enable()
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_core_module_imports_a_plugin_or_a_wrapped_library() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(found)
        for path in CORE.rglob("*.py")
        if (found := _imported_roots(path) & (PLUGIN_PACKAGES | WRAPPED_LIBRARIES))
    }
    assert offenders == {}


def _in_fresh_interpreter(code: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_importing_perun_core_imports_no_plugin() -> None:
    seen = _in_fresh_interpreter(
        "import json, sys, perun_core\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    assert isinstance(seen, list)
    assert not set(seen) & (PLUGIN_PACKAGES | WRAPPED_LIBRARIES)


def test_loading_and_listing_every_plugin_imports_no_implementation() -> None:
    """What ``perun plugins`` does, with whatever is installed here (all of it in the dev
    environment): the registrations are listed without importing what they name."""
    code = """
import json, logging, sys
before = (sys.getrecursionlimit(), logging.getLogger().handlers[:],
          logging.getLogger("perun").handlers[:], logging.getLogger("perun").level)
from perun_core.plugins import load_plugins
plugins = load_plugins()
infos = [i.as_dict() for i in plugins.plugins_info()]
after = (sys.getrecursionlimit(), logging.getLogger().handlers[:],
         logging.getLogger("perun").handlers[:], logging.getLogger("perun").level)
print(json.dumps({"modules": sorted(sys.modules), "plugins": [i["name"] for i in infos],
                  "unchanged": before == after}))
"""
    seen = _in_fresh_interpreter(code)
    modules = set(seen["modules"])  # type: ignore[call-overload]
    assert seen["unchanged"] is True  # no recursion limit raised, no logging rerouted
    heavy = {m for m in modules if m.split(".")[0] in WRAPPED_LIBRARIES}
    assert heavy == set()
    implementations = {
        "perun_core.client",
        "perun_core.wire.local_bus",
        "perun_core.persistence.memory",
        "perun_sim.backend",
        "perun_sim.server",
        "perun_tcp.bus",
        "perun_eth.backend",
        "perun_eth.node",
        "perun_leveldb.store",
        "perun_rocksdb.store",
        "perun_loguru.routing",
        "perun_demo.run",
    }
    assert modules & implementations == set()
    assert "builtins" in seen["plugins"]  # type: ignore[operator]


def _plugin_modules() -> list[Path]:
    mods = [CORE / "builtins" / "plugin.py"]
    mods += sorted((ROOT / "plugins").glob("*/src/*/plugin.py"))
    return mods


@pytest.mark.parametrize("path", _plugin_modules(), ids=lambda p: p.parent.name)
def test_plugin_modules_import_only_the_hook_marker_at_module_level(path: Path) -> None:
    """Loading a plugin imports its ``plugin.py``: what that module imports at its top
    level is paid by every ``perun`` command, so implementations are imported in the
    hooks (or registered as ``"module:Name"`` references)."""
    allowed = {"__future__", "typing", "perun_core", "perun_core.hookspecs"}
    tree = ast.parse(path.read_text(), str(path))
    for node in tree.body:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks cost nothing at run time
            assert ast.unparse(node.test) == "TYPE_CHECKING", ast.unparse(node)
            continue
        if isinstance(node, ast.ImportFrom):
            assert node.module in allowed, f"{path}: {ast.unparse(node)}"
        assert not isinstance(node, ast.Import), f"{path}: {ast.unparse(node)}"


# --- packaging ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dist", [ROOT, *PLUGIN_DIRS], ids=lambda p: p.name)
def test_every_distribution_carries_license_metadata_and_a_compatible_core_pin(
    dist: Path,
) -> None:
    project = _pyproject(dist)["project"]
    assert isinstance(project, dict)
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert (dist / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    assert project["authors"] and project["keywords"]
    classifiers = project["classifiers"]
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "Typing :: Typed" in classifiers
    build = _pyproject(dist)["build-system"]
    assert isinstance(build, dict) and "hatchling>=1.27" in build["requires"]  # PEP 639
    core_pins = [r for r in project.get("dependencies", []) if _requirement_name(r) == "perun-core"]
    if dist != ROOT:
        # 0.x: a minor release of the core may change the plugin interfaces.
        assert core_pins == ["perun-core>=0.1.0,<0.2"]
        assert (dist / "README.md").exists()


def test_the_core_sdist_holds_the_core_only() -> None:
    hatch = _pyproject(ROOT)["tool"]["hatch"]["build"]["targets"]  # type: ignore[index]
    included = set(hatch["sdist"]["only-include"])
    assert included == {"perun_core", "README.md", "CHANGELOG.md", "SECURITY.md", "LICENSE"}
    assert all((ROOT / name).exists() for name in included)


def test_changelog_and_security_notice_are_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "(CHANGELOG.md)" in readme and "(SECURITY.md)" in readme
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()
    security = (ROOT / "SECURITY.md").read_text()
    assert "not audited" in security and "Reporting a vulnerability" in security
