"""Check that a tox environment's ``PERUN_PLUGINS`` names exactly the plugins it installs.

Run by tox before each environment's tests (``commands_pre``)::

    python tests/check_tox_env.py

Exit status 0 when the installed ``perun`` entry points (``builtins`` aside) and the
comma-separated ``PERUN_PLUGINS`` are the same set, 1 (with both sets printed) otherwise. A
mismatch means an environment tests a combination other than the one it claims.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys


def installed() -> set[str]:
    """Names of the installed ``perun`` entry points, without the core's ``builtins``."""
    names = {ep.name for ep in importlib.metadata.entry_points(group="perun")}
    return names - {"builtins"}


def declared() -> set[str] | None:
    """The plugin names in ``PERUN_PLUGINS`` (``None`` when it is not set)."""
    value = os.environ.get("PERUN_PLUGINS")
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def main() -> int:
    """Compare the two sets; print the verdict."""
    env = os.environ.get("TOX_ENV_NAME", "?")
    want, have = declared(), installed()
    if want is None:
        print(f"{env}: PERUN_PLUGINS is not set; it must list exactly: {sorted(have)}")
        return 1
    if want != have:
        print(
            f"{env}: PERUN_PLUGINS={sorted(want)} but the installed plugins are {sorted(have)}; "
            "make the env's deps and PERUN_PLUGINS agree"
        )
        return 1
    print(f"{env}: plugins {', '.join(sorted(have)) or '(builtins only)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
