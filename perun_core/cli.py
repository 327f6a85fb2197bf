"""The ``perun`` command.

- ``perun plugins [--json] [--check]``: the installed plugins, their versions and what each
  registers (``--check`` also imports and validates every registration).
- ``perun <command> ...``: a command a plugin registered through the
  ``perun_register_commands`` hook: ``perun demo`` (perun-demo), ``perun sim serve``
  (perun-sim), ``perun eth deploy`` (perun-eth), ...; ``perun --help`` lists them.

``--config PATH`` (before or after the command; default: ``$PERUN_CONFIG``) names a
``perun.toml`` (:mod:`perun_core.configfile`): it is checked before the command runs, the
plugins' ``perun_configure`` hook gets its ``[perun]`` table (so its logger applies to every
command), and commands that build clients build them from it (:func:`config_of`,
:meth:`Client.from_config <perun_core.client.Client.from_config>`).

Logging options, accepted before or after the command: ``-v``/``--verbose`` (info, ``-vv``
debug), ``-q``/``--quiet`` (errors only; commands may also print less) and
``--log-level LEVEL``. Log records go to stderr, one line each.

Errors of the framework (:class:`~perun_core.errors.PerunError`) are printed as one line on
stderr with exit status 2; Ctrl-C ends with status 130; a closed output pipe
(``perun plugins --json | head``) ends quietly with status 141, as a shell reports SIGPIPE.
A plugin command's ``async def`` runner gets a fresh event loop (in a worker thread if
:func:`main` is called from async code).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import inspect
import json
import logging
import os
import sys
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from perun_core.errors import PerunError, PluginNotFoundError
from perun_core.registry import BUILTIN_COMMANDS, Command

if TYPE_CHECKING:
    from perun_core.plugins import Plugins

__all__ = ["LOG_LEVELS", "config_of", "log_level", "main"]

if TYPE_CHECKING:
    from perun_core.configfile import PerunConfig

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""The values of ``--log-level`` (any case)."""

ENV_CONFIG = "PERUN_CONFIG"
"""Environment variable naming the default of ``--config``."""

_PIPE_CLOSED = 141
"""Exit status when the reader of our output went away (128 + SIGPIPE, as shells report)."""


def log_level(args: argparse.Namespace) -> int | None:
    """The log level the user asked for with ``--log-level``, ``-v`` or ``-q``; ``None``
    when they gave none of them (the command's default applies: ``WARNING``).

    ``--log-level`` wins; then ``-v`` (``INFO``; ``-vv`` and more: ``DEBUG``); then ``-q``
    (``ERROR``).
    """
    explicit = getattr(args, "log_level", None)
    if explicit is not None:
        return int(logging.getLevelName(explicit))
    verbose = int(getattr(args, "verbose", 0) or 0)
    if verbose:
        return logging.INFO if verbose == 1 else logging.DEBUG
    if getattr(args, "quiet", False):
        return logging.ERROR
    return None


def config_of(args: argparse.Namespace) -> PerunConfig | None:
    """The configuration named by ``--config`` (or ``$PERUN_CONFIG``), read and checked;
    ``None`` when there is none.

    Raises:
        ConfigError: the file cannot be read, is not TOML or lacks ``perun.backend``.
    """
    path = getattr(args, "config", None)
    if not path:
        return None
    from perun_core.configfile import load_perun_config

    return load_perun_config(path)


def _add_config_option(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--config PATH`` on ``parser`` (on a command's parser its default is suppressed, so
    the option works before or after the command)."""
    default = (os.environ.get(ENV_CONFIG) or None) if top else argparse.SUPPRESS
    with contextlib.suppress(argparse.ArgumentError):  # a command's own --config stays its own
        parser.add_argument(
            "--config",
            default=default,
            metavar="PATH",
            help=f"perun.toml naming backend, bus, persister and logger (default: ${ENV_CONFIG})",
        )


def _level_name(text: str) -> str:
    name = text.upper()
    if name not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"invalid level {text!r} (choose from {', '.join(n.lower() for n in LOG_LEVELS)})"
        )
    return name


def _add_logging_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``-v``/``-q``/``--log-level`` on ``parser``; on a command's parser their defaults are
    suppressed so that options given before the command survive. An option string the
    command defines itself is left to the command."""
    unset = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("logging options")
    options: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (
            ("-v", "--verbose"),
            {
                "action": "count",
                "default": 0 if top else argparse.SUPPRESS,
                "help": "log more: -v info, -vv debug",
            },
        ),
        (
            ("-q", "--quiet"),
            {
                "action": "store_true",
                "default": False if top else argparse.SUPPRESS,
                "help": "print less and log only errors",
            },
        ),
        (
            ("--log-level",),
            {
                "type": _level_name,
                "default": unset,
                "metavar": "LEVEL",
                "help": "debug, info, warning (default), error or critical",
            },
        ),
    ]
    for flags, kwargs in options:
        # An option string the command uses for something of its own stays the command's.
        with contextlib.suppress(argparse.ArgumentError):
            group.add_argument(*flags, **kwargs)


def _parser(
    commands: Mapping[str, Command] | None = None,
    load_error: PerunError | None = None,
    configure: str | None = None,
) -> argparse.ArgumentParser:
    """The ``perun`` parser with a sub-parser per command; only the ``configure`` command's
    own arguments are added (a command's ``configure`` may import its plugin's modules, and
    ``perun --help`` needs no more than the names and summaries)."""
    from perun_core import __version__

    epilog = None
    if load_error is not None:
        epilog = f"Plugin commands are unavailable: {_one_line(load_error)}"
    parser = argparse.ArgumentParser(
        prog="perun", description="perun-py: blockchain-agnostic state channels.", epilog=epilog
    )
    parser.add_argument("--version", action="version", version=f"perun-core {__version__}")
    _add_logging_options(parser, top=True)
    _add_config_option(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    plugins = sub.add_parser("plugins", help="list installed plugins and what they register")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.add_argument(
        "--check",
        action="store_true",
        help="also import and validate every registration (exit status 1 if one fails)",
    )
    _add_logging_options(plugins, top=False)
    _add_config_option(plugins, top=False)
    for name, cmd in sorted((commands or {}).items()):
        p = sub.add_parser(
            name,
            help=cmd.help or None,
            description=cmd.help or None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if cmd.configure is not None and name == configure:
            cmd.configure(p)
        _add_logging_options(p, top=False)
        _add_config_option(p, top=False)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _command_name(argv: Sequence[str]) -> str | None:
    """The subcommand: the first argument that is neither an option nor the value of
    ``--log-level`` or ``--config`` (the options of ``perun`` itself that take a value)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--log-level", "--config"):
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _load() -> Plugins:
    from perun_core.plugins import load_plugins

    return load_plugins()


def _plugin_commands() -> tuple[dict[str, Command], dict[str, str], PerunError | None]:
    """The commands of the installed plugins and the plugins skipped, or none and the reason
    they failed to load."""
    try:
        plugins = _load()
    except PerunError as exc:
        return {}, {}, exc
    registry = plugins.commands
    return {name: registry.get(name) for name in registry.names()}, plugins.skipped, None


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


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain columns, two spaces apart (no terminal library needed)."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


def _cmd_plugins(as_json: bool, check: bool) -> int:
    plugins = _load()
    infos = plugins.plugins_info()
    if as_json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
    else:
        rows = [
            [
                info.name,
                info.distribution or "-",
                info.version or "-",
                ", ".join(info.registrations) or "(hooks: " + ", ".join(info.hooks) + ")",
            ]
            for info in infos
        ]
        print(_table(["plugin", "distribution", "version", "registers"], rows))
        for name, reason in plugins.skipped.items():
            print(f"skipped {name}: {reason}")
    if not check:
        return 0
    failed = plugins.check()
    for what, exc in failed.items():
        print(f"check failed: {what}: {_one_line(exc)}", file=sys.stderr)
    if not as_json and not failed:
        print("check: every registration imports and validates")
    return 1 if failed else 0


class _StderrHandler(logging.Handler):
    """Writes each record as one line to whatever ``sys.stderr`` is at that moment (a
    test's capture may replace it between calls of :func:`main`)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - a log handler must not raise; logging reports it
            self.handleError(record)


@contextlib.contextmanager
def _logging_to_stderr(level: int) -> Iterator[None]:
    """Log records of ``level`` and above to stderr while a command runs; the previous
    root logger setup is restored afterwards (``main`` may run inside an application)."""
    root = logging.getLogger()
    handler = _StderrHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def _stdout_gone() -> None:
    """After the reader of our output went away, point stdout at /dev/null so that the
    interpreter's final flush cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's capture): nothing will be flushed to a pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``perun`` command with ``argv`` (default: ``sys.argv[1:]``); return the status.

    Plugins are loaded only when the command is not a built-in one (or for ``--help``), so
    a broken plugin cannot stop ``perun plugins`` from reporting it.
    """
    try:
        status = _dispatch(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # here, not at exit: a closed pipe is then reported like below
        return status
    except PerunError as exc:
        print(f"perun: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("perun: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _stdout_gone()
        return _PIPE_CLOSED


def _dispatch(args_list: list[str]) -> int:
    command = _command_name(args_list)
    if command == "plugins":
        args = _parser().parse_args(args_list)
        with _logging_to_stderr(log_level(args) or logging.WARNING):
            return _cmd_plugins(args.json, args.check)
    if command is None and "--version" in args_list:
        _parser().parse_args(args_list)  # prints the version and exits: no plugins needed
    commands, skipped, load_error = _plugin_commands()
    parser = _parser(commands, load_error, configure=command)
    if command is None:
        parser.parse_args(args_list)  # --help and --version exit here
        parser.print_help(sys.stderr)
        return 2
    if command not in commands:
        if load_error is not None:
            raise load_error
        raise PluginNotFoundError(
            "command", command, sorted(BUILTIN_COMMANDS | commands.keys()), skipped=skipped
        )
    args = parser.parse_args(args_list)
    config = config_of(args)  # a bad file fails here, before the command starts
    if config is not None:
        _load().configure(config.table)  # e.g. the logger plugin routes the logging now
    with _logging_to_stderr(log_level(args) or logging.WARNING):
        return _run(commands[command], args)


if __name__ == "__main__":
    raise SystemExit(main())
