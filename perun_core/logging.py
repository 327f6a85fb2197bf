"""Structured context on the core's log records (channel ID, peer, phase, version).

The core logs through the standard library, under loggers named ``perun.<area>``
(``perun.client``, ``perun.channel``, ``perun.watcher``, ...). Log calls about one channel
pass ``extra=channel_extra(ch)``, which puts four attributes on the ``LogRecord``:

============== ================================================ =========================
attribute      value                                            when unknown
============== ================================================ =========================
``channel_id`` ``0x``-prefixed hex of the 32-byte channel ID     ``None``
``peer``       ``0x``-prefixed hex of the peer's wire address   ``None``
``phase``      the :class:`~perun_core.channel.phase.Phase` name ``None``
``version``    the version of the current state (``int``)        ``None``
============== ================================================ =========================

:func:`record_context` reads them back from any record (``None`` for records that carry
none), which is how a handler (perun-loguru's, or your own) forwards them. To use them in a
standard-library format string, add :class:`ContextFilter` to the handler so every record
has all four attributes::

    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(logging.Formatter("%(name)s %(channel_id)s v%(version)s %(message)s"))
    logging.getLogger("perun").addHandler(handler)

The module is named after the standard library's ``logging``; it is always imported by its
full name (``perun_core.logging``), so it never shadows it.
"""

from __future__ import annotations

import logging
from typing import Any, Final, Protocol

from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.channel.types import Address

__all__ = [
    "CONTEXT_FIELDS",
    "ROOT_LOGGER",
    "ContextFilter",
    "channel_extra",
    "log_extra",
    "record_context",
]

ROOT_LOGGER: Final = "perun"
"""The parent of every core logger; route or silence the framework's logging here."""

CONTEXT_FIELDS: Final = ("channel_id", "peer", "phase", "version")
"""The ``LogRecord`` attributes :func:`channel_extra` sets, in display order."""


class _ChannelLike(Protocol):
    """What :func:`channel_extra` reads from a :class:`~perun_core.client.Channel`."""

    @property
    def id(self) -> bytes: ...

    @property
    def peer(self) -> Address: ...

    @property
    def phase(self) -> Phase: ...

    @property
    def transaction(self) -> Transaction | None: ...


def log_extra(
    channel_id: bytes | None = None,
    peer: Address | None = None,
    phase: Phase | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """The ``extra=`` mapping of a log call with the given context.

    Args:
        channel_id: the channel the message is about.
        peer: the peer's wire address.
        phase: the channel's phase.
        version: the version of the channel's current state.

    Returns:
        A mapping with every key of :data:`CONTEXT_FIELDS` (``None`` where not given).
    """
    return {
        "channel_id": "0x" + channel_id.hex() if channel_id is not None else None,
        "peer": peer.hex() if peer is not None else None,
        "phase": phase.name if phase is not None else None,
        "version": version,
    }


def channel_extra(ch: _ChannelLike, *, phase: Phase | None = None) -> dict[str, Any]:
    """The ``extra=`` mapping of a log call about channel ``ch``.

    It never raises: logging must not break the protocol, so a context that cannot be read
    (a channel still being built) is left ``None``.

    Args:
        ch: the channel (a :class:`~perun_core.client.Channel`).
        phase: the phase to report instead of ``ch.phase`` (e.g. the target of a transition).

    Returns:
        A mapping with every key of :data:`CONTEXT_FIELDS`.
    """
    try:
        cid: bytes | None = ch.id
    except Exception:  # noqa: BLE001 - a log line's context must never make the logging call fail
        cid = None
    try:
        peer: Address | None = ch.peer
    except Exception:  # noqa: BLE001 - a log line's context must never make the logging call fail
        peer = None
    try:
        current = phase if phase is not None else ch.phase
    except Exception:  # noqa: BLE001 - a log line's context must never make the logging call fail
        current = None
    try:
        tx = ch.transaction
        version = tx.state.version if tx is not None else None
    except Exception:  # noqa: BLE001 - a log line's context must never make the logging call fail
        version = None
    return log_extra(cid, peer, current, version)


def record_context(record: logging.LogRecord) -> dict[str, Any]:
    """The context fields of ``record``, ``None`` for those it does not carry.

    Args:
        record: any log record (from the core or elsewhere).

    Returns:
        A mapping with every key of :data:`CONTEXT_FIELDS`.
    """
    return {name: getattr(record, name, None) for name in CONTEXT_FIELDS}


class ContextFilter(logging.Filter):
    """Gives every record all :data:`CONTEXT_FIELDS` (``None`` where missing).

    Attach it to a handler whose format string names the fields; it never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Fill in the missing context attributes; always ``True``."""
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, None)
        return True
