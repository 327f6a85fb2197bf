"""Forwarding standard-library log records of the framework to loguru.

The framework logs through :mod:`logging` under ``perun.<area>`` loggers and puts its
context (channel ID, peer, phase, version) on each record (:mod:`perun_core.logging`).
:class:`LoguruHandler` re-emits every record through loguru with that context bound, so it
appears in ``record["extra"]`` and in format strings as ``{extra[channel_id]}``.

State lives only on the routed :class:`logging.Logger` objects (the handler remembers the
level and ``propagate`` flag it found), so routing twice is harmless and :func:`unroute`
restores what was there before.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any, Final

from loguru import logger

from perun_core.errors import PluginError
from perun_core.logging import ROOT_LOGGER, record_context

__all__ = [
    "DEFAULT_LOGGERS",
    "LoguruConfigError",
    "LoguruHandler",
    "RoutingOptions",
    "is_routed",
    "options_from_config",
    "route",
    "unroute",
]

DEFAULT_LOGGERS: Final = (ROOT_LOGGER, "perun_tcp")
"""Standard-library loggers routed by default: the core's and the first-party plugins'."""

DEFAULT_LEVEL: Final = "INFO"
"""Level given to a routed logger whose level is not set (``NOTSET`` would inherit root's)."""

_LOGGING_FILE: Final = logging.__file__


class LoguruConfigError(PluginError, ValueError):
    """The ``loguru`` table of the perun configuration holds a bad value."""


@dataclass(frozen=True, slots=True)
class RoutingOptions:
    """How to route (the ``[perun.loguru]`` table of a configuration).

    Attributes:
        enabled: route at all (``False`` when ``logger`` names something else).
        level: level to set on the routed loggers (``None``: keep a level that is set,
            else :data:`DEFAULT_LEVEL`).
        loggers: names of the standard-library loggers to route.
        propagate: whether routed records still reach the standard library's parent
            handlers (turn off when root logging is configured too, to avoid doubles).
    """

    enabled: bool = True
    level: int | None = None
    loggers: tuple[str, ...] = DEFAULT_LOGGERS
    propagate: bool = True


def _level(value: object) -> int:
    if isinstance(value, bool):
        raise LoguruConfigError(f"loguru level must be a level name or number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        number = logging.getLevelName(value.upper())
        if isinstance(number, int):
            return number
    raise LoguruConfigError(
        f"loguru level {value!r} is not a logging level; use DEBUG, INFO, WARNING, ERROR, "
        "CRITICAL or a number"
    )


def options_from_config(config: Mapping[str, Any]) -> RoutingOptions:
    """Read the routing options from the user's ``[perun]`` configuration table.

    Keys: ``logger`` (routing is on unless it names another logger than ``"loguru"``) and
    the ``loguru`` table with ``level`` (name or number), ``loggers`` (list of names) and
    ``propagate`` (bool). Every key is optional.

    Args:
        config: the mapping passed to ``perun_configure``.

    Returns:
        The options.

    Raises:
        LoguruConfigError: a value has the wrong type or is not a logging level.
    """
    choice = config.get("logger", "loguru")
    if not isinstance(choice, str):
        raise LoguruConfigError(f"perun config 'logger' must be a string, not {choice!r}")
    table = config.get("loguru", {})
    if not isinstance(table, Mapping):
        raise LoguruConfigError(f"perun config 'loguru' must be a table, not {table!r}")
    unknown = sorted(set(table) - {"level", "loggers", "propagate"})
    if unknown:
        raise LoguruConfigError(
            f"unknown key(s) in the loguru table: {', '.join(map(str, unknown))}; "
            "known: level, loggers, propagate"
        )
    level = _level(table["level"]) if "level" in table else None
    names = table.get("loggers", DEFAULT_LOGGERS)
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise LoguruConfigError(f"loguru 'loggers' must be a list of names, not {names!r}")
    loggers = tuple(names)
    if not all(isinstance(n, str) and n for n in loggers):
        raise LoguruConfigError(f"loguru 'loggers' must hold non-empty names: {loggers!r}")
    propagate = table.get("propagate", True)
    if not isinstance(propagate, bool):
        raise LoguruConfigError(f"loguru 'propagate' must be true or false, not {propagate!r}")
    return RoutingOptions(choice.strip().lower() == "loguru", level, loggers, propagate)


def _caller_depth() -> int:
    """How many frames above ``emit`` the code that called the standard-library logger is.

    loguru reports the function and line of the frame ``depth`` levels above its caller, so
    skipping the :mod:`logging` internals makes records point at the framework's log call.
    """
    # The frame walk is what loguru's own intercept recipe does; there is no public API.
    frame: FrameType | None = sys._getframe(1)  # noqa: SLF001 - emit()
    depth = 0
    while frame is not None and (depth == 0 or frame.f_code.co_filename == _LOGGING_FILE):
        frame = frame.f_back
        depth += 1
    return depth


class LoguruHandler(logging.Handler):
    """Re-emits standard-library records through loguru, binding their perun context.

    Bound extra fields: ``channel_id``, ``peer``, ``phase``, ``version`` (``None`` when a
    record has no such context) and ``logger`` (the standard-library logger's name).
    """

    def __init__(self, previous_level: int, previous_propagate: bool) -> None:
        super().__init__(logging.NOTSET)
        self.previous_level = previous_level
        self.previous_propagate = previous_propagate

    def emit(self, record: logging.LogRecord) -> None:
        """Forward ``record`` to loguru (errors go to :meth:`handleError`, never raised)."""
        try:
            level: str | int
            try:
                level = logger.level(record.levelname).name
            except ValueError:  # a custom standard-library level loguru does not know
                level = record.levelno
            message = record.getMessage()
            logger.opt(depth=_caller_depth(), exception=record.exc_info).bind(
                logger=record.name, **record_context(record)
            ).log(level, message)
        except Exception:  # noqa: BLE001 - a log handler must not raise; logging reports it
            self.handleError(record)


def _handlers(log: logging.Logger) -> list[LoguruHandler]:
    return [h for h in log.handlers if isinstance(h, LoguruHandler)]


def route(options: RoutingOptions | None = None) -> None:
    """Route the configured standard-library loggers to loguru (idempotent).

    A previous routing is undone first, so calling it again only applies new options.

    Args:
        options: what to route (default: :class:`RoutingOptions()`).
    """
    opts = options if options is not None else RoutingOptions()
    unroute()
    if not opts.enabled:
        return
    for name in opts.loggers:
        log = logging.getLogger(name)
        handler = LoguruHandler(log.level, log.propagate)
        if opts.level is not None:
            log.setLevel(opts.level)
        elif log.level == logging.NOTSET:
            log.setLevel(DEFAULT_LEVEL)
        log.propagate = opts.propagate
        log.addHandler(handler)


def unroute() -> None:
    """Remove every :class:`LoguruHandler`, restoring each logger's level and ``propagate``."""
    # A copy: the dict may grow while we iterate (another thread creating a logger).
    for log in list(logging.Logger.manager.loggerDict.values()):
        if not isinstance(log, logging.Logger):
            continue  # a placeholder for a logger nobody created yet
        for handler in _handlers(log):
            log.removeHandler(handler)
            log.setLevel(handler.previous_level)
            log.propagate = handler.previous_propagate


def is_routed(name: str = ROOT_LOGGER) -> bool:
    """Whether the standard-library logger ``name`` is routed to loguru."""
    return bool(_handlers(logging.getLogger(name)))
