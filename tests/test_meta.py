"""Meta-tests: the plugin surface cannot drift from its documentation and its tests.

- every hook of ``hookspecs.py`` is documented in docs/plugins.md with its exact signature,
  implemented by a first-party plugin, and really called by the loader on every installed
  implementer;
- every first-party entry point (from ``plugins/*/pyproject.toml``) is well-formed, and the
  installed ones load and register what their distribution promises;
- every abstract method of every interface in ``perun_core.interfaces`` is called by a
  conformance suite of ``perun_core.testing`` while the suites run against the sim backend,
  the local bus and the memory persister (measured by instrumenting the implementations in
  a child pytest run, not by reading names);
- every page under docs/ is in the mkdocs navigation.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from perun_core import hookspecs, interfaces
from perun_core.plugins import BUILTINS, Plugins, hook_names, load_plugins

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HOOK_DOC = DOCS / "plugins.md"
BUILTINS_MODULE = ROOT / "perun_core" / "builtins" / "plugin.py"


@dataclass(frozen=True)
class FirstParty:
    """One first-party plugin as its ``pyproject.toml`` declares it."""

    directory: Path
    distribution: str
    entry: str
    module: str

    @property
    def module_file(self) -> Path:
        return self.directory / "src" / Path(*self.module.split(".")).with_suffix(".py")

    @property
    def installed(self) -> bool:
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return False
        # Installed from this checkout (not some other copy), so it is what we test.
        return any(ep.group == "perun" and ep.name == self.entry for ep in dist.entry_points)


def first_party() -> list[FirstParty]:
    """Every plugin directory under plugins/ that declares a ``perun`` entry point."""
    found = []
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        meta = tomllib.loads(pyproject.read_text())
        project = meta["project"]
        eps = project.get("entry-points", {}).get("perun", {})
        for entry, module in eps.items():
            found.append(FirstParty(pyproject.parent, project["name"], entry, module))
    return found


PLUGINS = first_party()


def implemented_hooks(path: Path) -> set[str]:
    """Names of the ``perun_*`` functions decorated with ``hookimpl`` in a plugin module."""
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("perun_"):
            names = {ast.unparse(d).split("(")[0].split(".")[-1] for d in node.decorator_list}
            if "hookimpl" in names:
                out.add(node.name)
    return out


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERUN_PLUGINS", raising=False)
    monkeypatch.delenv("PERUN_DISABLE_PLUGINS", raising=False)


# --- hooks -------------------------------------------------------------------------------------


def _signature(hook: str) -> str:
    sig = inspect.signature(getattr(hookspecs, hook))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{hook}({params}) -> {sig.return_annotation}"


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented_with_its_exact_signature_and_summary(hook: str) -> None:
    text = HOOK_DOC.read_text()
    assert f"### `{_signature(hook)}`" in text, f"docs/plugins.md lacks a section `{hook}`"
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert doc, f"{hook} has no docstring"
    assert doc.splitlines()[0] in text


def test_no_hook_is_documented_that_does_not_exist() -> None:
    documented = set(re.findall(r"^### `(perun_\w+)\(", HOOK_DOC.read_text(), re.M))
    assert documented == set(hook_names())


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_has_a_first_party_implementation(hook: str) -> None:
    implementers = [
        p.distribution
        for p in PLUGINS
        if p.module_file.exists() and hook in implemented_hooks(p.module_file)
    ]
    if hook in implemented_hooks(BUILTINS_MODULE):
        implementers.append("perun-core (builtins)")
    assert implementers, f"no first-party plugin implements {hook}, so no real code exercises it"


def test_the_loader_calls_every_hook_on_every_installed_implementer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Instrument pluggy during a real load: each installed first-party implementer of each
    registration hook is called by the load, and of ``perun_configure`` by
    ``Plugins.configure`` (never by the load itself: loading has no side effects)."""
    calls: set[tuple[str, str]] = set()

    def before(hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        calls.update((hook_name, impl.plugin_name) for impl in impls)

    def after(outcome: Any, hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        pass

    original = Plugins.register_all

    def monitored(self: Plugins) -> None:
        # Monitoring starts before the first hook runs and stays on for perun_configure.
        self.manager.add_hookcall_monitoring(before, after)
        original(self)

    monkeypatch.setattr(Plugins, "register_all", monitored)
    try:
        plugins = load_plugins(only=[p.entry for p in PLUGINS if p.installed])
        assert {hook for hook, _ in calls} <= {h for h in hook_names() if "register" in h}
        plugins.configure()
    finally:
        _unroute_loguru()
    expected = {
        (hook, info.name)
        for info in plugins.plugins_info()
        for hook in info.hooks
        if hook in hook_names()
    }
    assert expected, "no plugin implements any hook"
    missing = expected - calls
    assert not missing, f"hooks never called: {sorted(missing)}"
    # And the registration hooks had their effect: each implementer registered something.
    for info in plugins.plugins_info():
        kinds = {
            "perun_register_chains": info.chains,
            "perun_register_buses": info.buses,
            "perun_register_persisters": info.persisters,
            "perun_register_commands": info.commands,
        }
        for hook, registered in kinds.items():
            if hook in info.hooks:
                assert registered, f"{info.name} implements {hook} but registered nothing"


def _unroute_loguru() -> None:
    try:
        from perun_loguru import unroute
    except ImportError:
        return
    unroute()


# --- first-party entry points ------------------------------------------------------------------


def test_first_party_plugins_are_found() -> None:
    entries = {p.entry for p in PLUGINS}
    assert {"sim", "tcp", "loguru"} <= entries


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.entry for p in PLUGINS])
def test_first_party_entry_point_is_well_formed(plugin: FirstParty) -> None:
    if not plugin.directory.name.startswith("_"):  # the template keeps a neutral name
        assert plugin.distribution == f"perun-{plugin.entry}", (
            "a plugin's entry-point name is its distribution name without 'perun-' (the "
            "loader's install hint relies on it)"
        )
    assert plugin.module_file.exists(), f"{plugin.module} has no file {plugin.module_file}"
    hooks = implemented_hooks(plugin.module_file)
    assert hooks, f"{plugin.module} implements no hook"
    assert hooks <= set(hook_names()), f"unknown hooks: {hooks - set(hook_names())}"


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.entry for p in PLUGINS])
def test_installed_first_party_entry_point_loads(plugin: FirstParty) -> None:
    if not plugin.installed:
        pytest.skip(f"{plugin.distribution} is not installed in this environment")
    plugins = load_plugins(only=[plugin.entry])
    try:
        info = {i.name: i for i in plugins.plugins_info()}[plugin.entry]
        assert info.distribution == plugin.distribution
        assert info.module == plugin.module
        assert set(info.hooks) == implemented_hooks(plugin.module_file)
    finally:
        _unroute_loguru()


def test_perun_plugins_lists_every_installed_first_party_plugin() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "perun_core.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PERUN_")},
    )
    listed = {row["name"] for row in json.loads(out.stdout)}
    assert {p.entry for p in PLUGINS if p.installed} | {BUILTINS} <= listed


# --- every abstract method is exercised by a suite ---------------------------------------------

PROBE = '''
"""Records which abstract interface methods run during conformance-suite tests."""

import functools
import inspect
import json
import os

import pytest

from perun_core import interfaces

CALLED = set()
ACTIVE = [False]


def _abcs():
    return [
        c for c in vars(interfaces).values()
        if inspect.isclass(c) and getattr(c, "__abstractmethods__", None)
    ]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _wrap(fn, keys):
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def awrapper(*args, **kwargs):
            if ACTIVE[0]:
                CALLED.update(keys)
            return await fn(*args, **kwargs)
        return awrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if ACTIVE[0]:
            CALLED.update(keys)
        return fn(*args, **kwargs)
    return wrapper


def pytest_collection_finish(session):
    owners = {}
    for abc in _abcs():
        for sub in _subclasses(abc):
            for name in abc.__abstractmethods__:
                if name in vars(sub):
                    owners.setdefault((sub, name), set()).add(f"{abc.__name__}.{name}")
    for (cls, name), keys in owners.items():
        attr = vars(cls)[name]
        if getattr(attr, "__isabstractmethod__", False):
            continue
        if isinstance(attr, property):
            new = property(_wrap(attr.fget, keys), attr.fset, attr.fdel, attr.__doc__)
        elif isinstance(attr, classmethod):
            new = classmethod(_wrap(attr.__func__, keys))
        elif isinstance(attr, staticmethod):
            new = staticmethod(_wrap(attr.__func__, keys))
        elif callable(attr):
            new = _wrap(attr, keys)
        else:
            continue
        setattr(cls, name, new)


def _from_suite(item):
    cls = getattr(item, "cls", None)
    return cls is not None and any(
        c.__module__.startswith("perun_core.testing.") for c in cls.__mro__
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    ACTIVE[0] = _from_suite(item)
    try:
        return (yield)
    finally:
        ACTIVE[0] = False


def pytest_sessionfinish(session, exitstatus):
    with open(os.environ["PERUN_META_PROBE_OUT"], "w") as f:
        json.dump(sorted(CALLED), f)
'''

SUITE_RUNS = [
    "plugins/perun-sim/tests/test_sim_conformance.py",
    "tests/test_bus_conformance.py",
    "tests/test_persister_conformance.py",
]


def abstract_methods() -> set[str]:
    return {
        f"{cls.__name__}.{name}"
        for cls in vars(interfaces).values()
        if inspect.isclass(cls)
        for name in getattr(cls, "__abstractmethods__", ())
    }


@pytest.fixture(scope="module")
def exercised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """The ``Interface.method`` names the suites call, from an instrumented child run."""
    tmp = tmp_path_factory.mktemp("probe")
    (tmp / "perun_meta_probe.py").write_text(textwrap.dedent(PROBE))
    out = tmp / "called.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PERUN_META_PROBE_OUT"] = str(out)
    env["PERUN_PLUGINS"] = "sim"
    env.pop("PERUN_DISABLE_PLUGINS", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "perun_meta_probe",
            *SUITE_RUNS,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"the suites failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    yield set(json.loads(out.read_text()))


def test_the_interfaces_have_abstract_methods_to_check() -> None:
    assert {"ChainBackend.channel_id", "Persister.staged", "Bus.publish"} <= abstract_methods()


def test_every_abstract_method_is_exercised_by_a_suite(exercised: set[str]) -> None:
    missing = sorted(abstract_methods() - exercised)
    assert not missing, f"no conformance suite calls: {', '.join(missing)}"


# --- docs --------------------------------------------------------------------------------------


def test_every_docs_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:", 1)[1]
    listed = set(re.findall(r":\s*([\w./-]+\.md)\s*$", nav, re.M))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages - listed == set(), "pages missing from the mkdocs nav"
    assert listed - pages == set(), "nav entries without a page"


def test_every_interface_module_is_in_the_api_reference() -> None:
    text = (DOCS / "reference" / "interfaces.md").read_text()
    for path in sorted((ROOT / "perun_core" / "interfaces").glob("[!_]*.py")):
        assert f"::: perun_core.interfaces.{path.stem}" in text
