"""A connection's incoming frames, handled in the transport's own data callback.

After the handshake the bus no longer reads through the ``StreamReader``: :class:`Inbox`
takes over the reader's input (``feed_data``, ``feed_eof``, ``set_exception``), splits each
chunk into frames at once and hands them to the bus's frame handler in the same event-loop
turn. Reading through the stream instead wakes the connection's reader task once per chunk,
which is one event-loop turn per received batch on each side, i.e. two per round trip.

Frames that cannot be handled at once (a retired connection's frames must come first, see
``perun_tcp.bus``) wait in :attr:`Inbox.frames`, in order, for the reader task; later chunks
queue behind them, and the socket is paused while more than :data:`MAX_QUEUED` wait.

A frame must be complete within ``frame_timeout`` seconds of its first byte, or the inbox
fails with :class:`~perun_tcp.framing.FrameTimeoutError` (otherwise a peer dripping a byte now
and then would hold the connection and its partial frame for ever). :meth:`Inbox.release`
drops every buffer and reference when the connection closes, so nothing waits for the cyclic
garbage collector.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Final

from perun_core.errors import ProtocolError
from perun_tcp.framing import FrameSplitter, FrameTimeoutError

MAX_QUEUED: Final = 4096
"""Queued frames above which the transport stops reading until the reader task catches up."""


class Inbox:
    """Splits a connection's bytes into frames and handles them as they arrive.

    Args:
        splitter: the connection's frame splitter (checks the frame size limit).
        handle: handles one frame's payload; returns ``False`` when the connection is to be
            read no further (the peer shut it down). May raise :class:`ProtocolError`.
        blocked: whether frames must wait for the reader task now (checked per frame).
        on_data: called with nothing for every chunk received (liveness bookkeeping).
        frame_timeout: seconds a frame may take from its first byte to its last (``None``:
            no limit).
    """

    def __init__(
        self,
        splitter: FrameSplitter,
        handle: Callable[[bytes], bool],
        blocked: Callable[[], bool],
        on_data: Callable[[], None],
        frame_timeout: float | None = None,
    ) -> None:
        self.splitter = splitter
        self.frames: collections.deque[bytes] = collections.deque()
        self.error: BaseException | None = None
        self.eof = False
        self.stopped = False
        self._handle = handle
        self._blocked = blocked
        self._on_data = on_data
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._paused = False
        self._reader: asyncio.StreamReader | None = None
        self._loop = asyncio.get_running_loop()
        self._frame_timeout = frame_timeout
        self._frame_start = 0.0  # loop time the partial frame's first byte arrived
        self._timer: asyncio.TimerHandle | None = None

    @property
    def done(self) -> bool:
        """Whether nothing more will be read (end of stream, an error, or stopped)."""
        return self.eof or self.stopped or self.error is not None

    def attach(self, reader: asyncio.StreamReader, transport: asyncio.BaseTransport) -> bool:
        """Take over ``reader``'s input; what it holds already is fed first.

        Returns ``False`` (and changes nothing) for a reader that is not asyncio's own
        ``StreamReader``; the caller then reads it and calls :meth:`feed` and :meth:`end`.
        """
        buffered = getattr(reader, "_buffer", None)
        if type(reader) is not asyncio.StreamReader or not isinstance(buffered, bytearray):
            return False
        # Pausing needs a readable transport (asyncio's socket transports are).
        self._transport = transport if isinstance(transport, asyncio.ReadTransport) else None
        # The protocol calls these on the reader; instance attributes take precedence.
        reader.feed_data = self.feed  # type: ignore[method-assign, assignment]
        reader.feed_eof = self.end  # type: ignore[method-assign]
        reader.set_exception = self.fail  # type: ignore[method-assign]
        self._reader = reader
        held = bytes(buffered)
        buffered.clear()
        resume = getattr(reader, "_maybe_resume_transport", None)
        if callable(resume):
            resume()  # the reader may have paused the socket while its buffer was full
        if held:
            self.feed(held)
        exc = reader.exception()
        if exc is not None:
            self.fail(exc)
        elif reader.at_eof():
            self.end()
        return True

    def feed(self, data: bytes) -> None:
        """Bytes from the stream: handle every complete frame now, or queue it."""
        if self.done:
            return
        self._on_data()
        splitter = self.splitter
        was_partial = not splitter.empty
        try:
            payloads = splitter.feed(data)
        except ProtocolError as e:
            self.fail(e)
            return
        if not splitter.empty and self._frame_timeout is not None:
            if payloads or not was_partial:  # a new frame began in this chunk
                self._frame_start = self._loop.time()
            if self._timer is None:
                self._timer = self._loop.call_at(
                    self._frame_start + self._frame_timeout, self._frame_due
                )
        if self.frames:
            self._queue(payloads, 0)
            return
        blocked, handle = self._blocked, self._handle
        for i, payload in enumerate(payloads):
            if blocked():
                self._queue(payloads, i)
                return
            try:
                keep = handle(payload)
            except ProtocolError as e:
                self.fail(e)
                return
            if not keep:
                self.stopped = True
                self._wake()
                return

    def _frame_due(self) -> None:
        """The timer of the partial frame (one timer, moved on lazily as frames complete)."""
        self._timer = None
        if self.done or self.splitter.empty or self._frame_timeout is None:
            return
        due = self._frame_start + self._frame_timeout
        if self._loop.time() < due:  # the frame it was set for completed; a later one is due
            self._timer = self._loop.call_at(due, self._frame_due)
            return
        self.fail(
            FrameTimeoutError(
                f"a frame was not complete {self._frame_timeout:g} s after its first byte"
            )
        )

    def release(self) -> None:
        """The connection is closed: drop buffers, timers and every reference (also the
        reader's to us), so that the memory is freed now and not by the cyclic collector."""
        self.stopped = True
        self.splitter.clear()
        self.frames.clear()
        self.error = None  # its traceback holds the reading task's frame, which holds us
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        reader, self._reader = self._reader, None
        if reader is not None:
            for name in ("feed_data", "feed_eof", "set_exception"):
                reader.__dict__.pop(name, None)
        self._handle = _ignore_frame
        self._blocked = _never
        self._on_data = _nothing
        self._transport = None
        self._wake()

    def end(self) -> None:
        """The stream ended."""
        self.eof = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        """The stream broke, or its bytes broke the protocol (the first error is kept)."""
        if self.error is None:
            self.error = exc
        self._wake()

    async def wait(self) -> None:
        """Until frames are queued or nothing more will be read."""
        if self.frames or self.done:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def caught_up(self) -> None:
        """The reader task emptied the queue: read the socket again if it was paused."""
        if self._paused and not self.frames:
            self._paused = False
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()
            if not self.splitter.empty:  # we held the partial frame up, not the peer
                self._frame_start = self._loop.time()

    def _queue(self, payloads: list[bytes], start: int) -> None:
        self.frames.extend(payloads[start:])
        self._wake()
        if len(self.frames) > MAX_QUEUED and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _ignore_frame(payload: bytes) -> bool:
    return False


def _never() -> bool:
    return False


def _nothing() -> None:
    pass
