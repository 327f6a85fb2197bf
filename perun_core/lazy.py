"""Lazy package exports: a package ``__init__`` that names its API without importing it.

The plugin loader imports every installed plugin's entry-point module, and with it the
plugin's package; a package that imports its implementation (web3, a database driver) in
``__init__`` makes every ``perun`` command and every ``load_plugins()`` pay for it. With
:func:`lazy_exports` the package lists where each public name lives and imports it on first
use (PEP 562)::

    # perun_mychain/__init__.py
    from typing import TYPE_CHECKING

    from perun_core.lazy import lazy_exports

    if TYPE_CHECKING:  # for type checkers and IDEs
        from perun_mychain.backend import MyBackend

    __all__ = ["MyBackend"]
    __getattr__ = lazy_exports(__name__, {"MyBackend": "perun_mychain.backend"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that imports each name of ``exports``
    (name -> module) from its module the first time it is asked for, and keeps it.

    Raises (from the returned function):
        AttributeError: the name is not exported.
    """
    table = dict(exports)

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
