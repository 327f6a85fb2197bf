"""Listening sockets whose accept loop survives running out of file descriptors.

asyncio's own servers react to ``EMFILE``/``ENFILE`` on ``accept()`` by not accepting anything
for a second (and again, as long as the shortage lasts), so every peer that dials meanwhile
waits, the honest ones included. :class:`Listener` asks its owner to free a descriptor instead
(the bus drops its oldest unauthenticated connection) and accepts again at once; when nothing
can be freed it accepts the waiting connection into a descriptor held in reserve for just that
and closes it, so the dialer learns at once that it was refused and the backlog keeps moving.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Callable
from typing import Final

log = logging.getLogger("perun_tcp")

BACKLOG: Final = 512
"""Connections the kernel queues for ``accept()`` (asyncio's default of 100 overflows under a
burst of dialers, and a dropped SYN is retried only after a second)."""

_EXHAUSTED: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_RETRY: Final = 0.05
"""Seconds to wait before accepting again when not even the reserve descriptor helps."""


def bind_tcp(host: str, port: int, backlog: int = BACKLOG) -> list[socket.socket]:
    """Listening sockets for every address ``host`` resolves to, all on one port.

    Raises:
        OSError: the address cannot be resolved or bound.
    """
    infos = socket.getaddrinfo(
        host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    socks: list[socket.socket] = []
    try:
        for family, type_, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, type_, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # One socket per family, as asyncio does (no IPv4-mapped addresses here).
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(socks) > 1:  # the other families take the first one's port
                addr = (addr[0], socks[0].getsockname()[1], *addr[2:])
            sock.bind(addr)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def bind_unix(path: str, backlog: int = BACKLOG) -> socket.socket:
    """A listening Unix-domain socket at ``path`` (a stale socket file there is replaced).

    Raises:
        OSError: the path cannot be bound (also: something other than a socket is there).
    """
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Listener:
    """Accepts connections on ``socks`` and hands each to ``on_connection``.

    Args:
        socks: bound, listening, non-blocking sockets (owned from now on; closed by
            :meth:`close`).
        on_connection: takes each accepted (non-blocking) socket; it owns it from then on.
        free_one: called when the process is out of descriptors; closes one connection it
            can do without (the oldest unauthenticated one) and says whether it did.
    """

    def __init__(
        self,
        socks: list[socket.socket],
        on_connection: Callable[[socket.socket], None],
        free_one: Callable[[], bool],
    ) -> None:
        self.socks = socks
        self._on_connection = on_connection
        self._free_one = free_one
        self._loop = asyncio.get_running_loop()
        self._reserve: int | None = _open_reserve()
        self._closed = False
        self.exhausted = 0
        """How often ``accept()`` found the process out of descriptors."""
        for sock in socks:
            self._loop.add_reader(sock.fileno(), self._readable, sock)

    def close(self) -> None:
        """Stop accepting and close the listening sockets (accepted ones are not affected)."""
        if self._closed:
            return
        self._closed = True
        for sock in self.socks:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())
            sock.close()
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None

    def _readable(self, sock: socket.socket) -> None:
        for _ in range(BACKLOG):
            if self._closed:
                return
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as e:
                if e.errno not in _EXHAUSTED:
                    log.warning("accept() on %s failed: %r", _name(sock), e)
                    return
                self._out_of_descriptors(sock, e)
                return
            conn.setblocking(False)
            self._on_connection(conn)

    def _out_of_descriptors(self, sock: socket.socket, err: OSError) -> None:
        self.exhausted += 1
        # Under a flood this happens for every dialer: log a few lines, not one each.
        say = log.warning if self.exhausted & (self.exhausted - 1) == 0 else log.debug
        if self._free_one():
            # The freed descriptor is released when its transport is torn down, early in the
            # next loop iteration; the waiting connection keeps the socket readable, so the
            # selector calls us again right after.
            say(
                "out of file descriptors (%s, %d times); dropped an unauthenticated connection",
                err,
                self.exhausted,
            )
            return
        if self._reserve is not None:
            # Nothing to drop: refuse the waiting dialer at once rather than leave it (and
            # every dialer behind it) hanging in the backlog.
            os.close(self._reserve)
            self._reserve = None
            with contextlib.suppress(OSError):
                conn, _ = sock.accept()
                conn.close()
            self._reserve = _open_reserve()
            say("out of file descriptors (%s, %d times); refused a connection", err, self.exhausted)
            return
        # Not even that: pause this socket briefly instead of spinning on it.
        log.warning("out of file descriptors (%s); not accepting for %g s", err, _RETRY)
        fd = sock.fileno()
        self._loop.remove_reader(fd)

        def resume() -> None:
            if not self._closed:
                if self._reserve is None:
                    self._reserve = _open_reserve()
                self._loop.add_reader(fd, self._readable, sock)

        self._loop.call_later(_RETRY, resume)


def _open_reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _name(sock: socket.socket) -> str:
    with contextlib.suppress(OSError):
        return str(sock.getsockname())
    return "a listening socket"
