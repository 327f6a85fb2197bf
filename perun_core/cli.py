"""The ``perun`` command.

- ``perun plugins [--json]``: the installed plugins, their versions and what each registers.
- ``perun demo ...``: the end-to-end demo (every argument is passed to
  :func:`perun_core.demo.main`).

Errors of the framework (:class:`~perun_core.errors.PerunError`) are printed as one line on
stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from perun_core.errors import PerunError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from perun_core import __version__

    parser = argparse.ArgumentParser(
        prog="perun", description="perun-py: blockchain-agnostic state channels."
    )
    parser.add_argument("--version", action="version", version=f"perun-core {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    plugins = sub.add_parser("plugins", help="list installed plugins and what they register")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    # add_help=False: `perun demo --help` must reach the demo's own parser
    sub.add_parser("demo", add_help=False, help="run the two-party demo (see `perun demo --help`)")
    return parser


def _cmd_plugins(as_json: bool) -> int:
    from perun_core.plugins import load_plugins

    plugins = load_plugins()
    infos = plugins.plugins_info()
    if as_json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return 0

    from rich.console import Console
    from rich.table import Table

    table = Table(title="perun plugins")
    table.add_column("plugin", style="bold")
    table.add_column("distribution")
    table.add_column("version")
    table.add_column("registers")
    for info in infos:
        table.add_row(
            info.name,
            info.distribution or "-",
            info.version or "-",
            "\n".join(info.registrations) or "(hooks: " + ", ".join(info.hooks) + ")",
        )
    console = Console()
    console.print(table)
    for name, reason in plugins.skipped.items():
        console.print(f"skipped {name}: {reason}", highlight=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``perun`` command with ``argv`` (default: ``sys.argv[1:]``); return the status."""
    parser = _parser()
    args, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "demo":
            # imported on use: the demo pulls in the client and the sim chain
            demo = importlib.import_module("perun_core.demo")
            return int(demo.main(rest))
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        if args.command == "plugins":
            return _cmd_plugins(args.json)
        parser.print_help(sys.stderr)
        return 2
    except PerunError as exc:
        one_line = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"perun: error: {one_line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
