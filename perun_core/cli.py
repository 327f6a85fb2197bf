"""The ``perun`` command.

- ``perun plugins [--json]``: the installed plugins, their versions and what each registers.
- ``perun demo ...``: the end-to-end demo (every argument is passed to
  :func:`perun_core.demo.main`).
- ``perun <command> ...``: a command a plugin registered through the
  ``perun_register_commands`` hook (e.g. ``perun eth deploy``); ``perun --help`` lists them.

Errors of the framework (:class:`~perun_core.errors.PerunError`) are printed as one line on
stderr with exit status 2; Ctrl-C ends with status 130. A plugin command's ``async def``
runner gets a fresh event loop (in a worker thread if :func:`main` is called from async
code).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib
import inspect
import json
import sys
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from perun_core.errors import PerunError, PluginNotFoundError
from perun_core.registry import BUILTIN_COMMANDS, Command

__all__ = ["main"]


def _parser(
    commands: Mapping[str, Command] | None = None, load_error: PerunError | None = None
) -> argparse.ArgumentParser:
    from perun_core import __version__

    epilog = None
    if load_error is not None:
        epilog = f"Plugin commands are unavailable: {_one_line(load_error)}"
    parser = argparse.ArgumentParser(
        prog="perun", description="perun-py: blockchain-agnostic state channels.", epilog=epilog
    )
    parser.add_argument("--version", action="version", version=f"perun-core {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    plugins = sub.add_parser("plugins", help="list installed plugins and what they register")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    # add_help=False: `perun demo --help` must reach the demo's own parser
    sub.add_parser("demo", add_help=False, help="run the two-party demo (see `perun demo --help`)")
    for name, cmd in sorted((commands or {}).items()):
        p = sub.add_parser(name, help=cmd.help or None, description=cmd.help or None)
        if cmd.configure is not None:
            cmd.configure(p)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _command_name(argv: Sequence[str]) -> str | None:
    """The subcommand: the first argument that is not an option (``perun`` has no option
    taking a value, so nothing else can come first)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _plugin_commands() -> tuple[dict[str, Command], PerunError | None]:
    """The commands of the installed plugins, or none and the reason they failed to load."""
    from perun_core.plugins import load_plugins

    try:
        registry = load_plugins().commands
    except PerunError as exc:
        return {}, exc
    return {name: registry.get(name) for name in registry.names()}, None


async def _awaited(result: Awaitable[Any]) -> Any:
    return await result


def _run(cmd: Command, args: argparse.Namespace) -> int:
    """Run a plugin command (a coroutine runs in a fresh event loop); ``None`` means 0."""
    result: Any = cmd.run(args)
    if inspect.isawaitable(result):
        coro = _awaited(result)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: no loop in this thread
            result = asyncio.run(coro)
        else:
            # main() called from async code (an embedding application, a test): the
            # command gets its own loop in a worker thread instead of failing.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                result = pool.submit(asyncio.run, coro).result()
    return 0 if result is None else int(result)


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
    """Run the ``perun`` command with ``argv`` (default: ``sys.argv[1:]``); return the status.

    Plugins are loaded only when the command is not a built-in one (or for ``--help``), so
    a broken plugin cannot stop ``perun plugins`` from reporting it.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = _command_name(args_list)
    try:
        if command == "demo":
            # imported on use: the demo pulls in the client and the sim chain
            _, rest = _parser().parse_known_args(args_list)
            demo = importlib.import_module("perun_core.demo")
            return int(demo.main(rest))
        if command == "plugins":
            return _cmd_plugins(_parser().parse_args(args_list).json)
        if command is None and "--version" in args_list:
            _parser().parse_args(args_list)  # prints the version and exits: no plugins needed
        commands, load_error = _plugin_commands()
        parser = _parser(commands, load_error)
        if command is None:
            parser.parse_args(args_list)  # --help and --version exit here
            parser.print_help(sys.stderr)
            return 2
        if command not in commands:
            if load_error is not None:
                raise load_error
            raise PluginNotFoundError(
                "command", command, sorted(BUILTIN_COMMANDS | commands.keys())
            )
        return _run(commands[command], parser.parse_args(args_list))
    except PerunError as exc:
        print(f"perun: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("perun: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
