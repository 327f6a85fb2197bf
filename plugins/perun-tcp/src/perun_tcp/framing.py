"""Stream framing: a 4-byte big-endian length, then that many bytes of codec payload."""

from __future__ import annotations

import asyncio
import mmap
from typing import Final

from perun_core.errors import FrameTooLargeError, MalformedMessageError, ProtocolError

HEADER_LEN: Final = 4


class FrameTimeoutError(ProtocolError, TimeoutError):
    """A frame was not complete within the frame timeout after its first byte arrived.

    Without it a peer could keep a connection, and the partial frame buffered for it, alive
    for ever by sending one byte now and then.
    """


class ConnectionEndedError(ConnectionError):
    """The peer closed the stream (``clean``: at a frame boundary, not in the middle of one)."""

    def __init__(self, clean: bool) -> None:
        self.clean = clean
        super().__init__(
            "connection closed by peer" + ("" if clean else " in the middle of a frame")
        )


def frame(payload: bytes) -> bytes:
    """``payload`` with its length header."""
    return len(payload).to_bytes(HEADER_LEN, "big") + payload


SPILL_ABOVE: Final = 1 << 16
"""Frames of at least this many bytes are collected in memory of their own (see
:class:`FrameSplitter`)."""


class FrameSplitter:
    """Splits a byte stream, fed in chunks of any size, into frame payloads.

    The bus reads whatever the socket holds and splits it here, instead of two reads per
    frame: under load one read carries many frames. A frame's announced length is checked
    against ``max_size`` as soon as its header is in, so at most one read chunk beyond the
    current frame is ever buffered.

    A large frame (``spill_above`` bytes or more) that does not arrive in one chunk is
    collected in an anonymous memory map of its announced size: pages are committed only as
    bytes arrive, and :meth:`clear` returns them to the operating system at once. (Grown in
    the heap instead, the buffers of many unfinished frames could stay resident long after
    their connections closed, depending on how the allocator reuses freed memory.)
    """

    __slots__ = ("_big", "_big_have", "_buf", "max_size", "spill_above")

    def __init__(self, max_size: int, spill_above: int = SPILL_ABOVE) -> None:
        self.max_size = max_size
        self.spill_above = spill_above
        self._buf = bytearray()
        self._big: mmap.mmap | None = None  # the payload of the large frame being received
        self._big_have = 0

    @property
    def empty(self) -> bool:
        """Whether no partial frame is buffered (the stream is at a frame boundary)."""
        return not self._buf and self._big is None

    @property
    def buffered(self) -> int:
        """Bytes of the partial frame held (its header included)."""
        if self._big is not None:
            return HEADER_LEN + self._big_have
        return len(self._buf)

    def clear(self) -> None:
        """Drop the partial frame, releasing its memory at once."""
        self._buf = bytearray()
        if self._big is not None:
            self._big.close()
            self._big = None
            self._big_have = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; returns the payloads of the frames completed by it, in order.

        Raises:
            FrameTooLargeError: a frame announces more than ``max_size`` bytes.
            MalformedMessageError: a zero-length frame.
        """
        out: list[bytes] = []
        big = self._big
        if big is not None:
            have, need = self._big_have, len(big) - self._big_have
            view = memoryview(data)
            if len(view) < need:
                big[have : have + len(view)] = view
                self._big_have = have + len(view)
                return out
            big[have:] = view[:need]
            out.append(big[:])
            big.close()
            self._big, self._big_have = None, 0
            data = view[need:].tobytes()
            if not data:
                return out
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        while end - pos >= HEADER_LEN:
            size = int.from_bytes(buf[pos : pos + HEADER_LEN], "big")
            if size > self.max_size:
                raise FrameTooLargeError(size, self.max_size)
            if size == 0:
                raise MalformedMessageError("empty frame (length 0)")
            start = pos + HEADER_LEN
            if end - start < size:
                if size >= self.spill_above:
                    big = mmap.mmap(-1, size)
                    big[: end - start] = buf[start:end]
                    self._big, self._big_have = big, end - start
                    pos = end
                break
            out.append(bytes(buf[start : start + size]))
            pos = start + size
        if pos == end:
            self._buf = bytearray()  # a fresh one: an emptied bytearray keeps its allocation
        elif pos:
            del buf[:pos]
        return out


async def read_frame(reader: asyncio.StreamReader, max_size: int) -> bytes:
    """Read one frame's payload.

    The length is checked against ``max_size`` before a single payload byte is read, so a
    peer cannot make us buffer more than ``max_size`` bytes.

    Raises:
        FrameTooLargeError: the announced length exceeds ``max_size``.
        MalformedMessageError: a zero-length frame.
        ConnectionEndedError: the stream ended.
    """
    try:
        head = await reader.readexactly(HEADER_LEN)
    except asyncio.IncompleteReadError as e:
        raise ConnectionEndedError(clean=not e.partial) from None
    size = int.from_bytes(head, "big")
    if size > max_size:
        raise FrameTooLargeError(size, max_size)
    if size == 0:
        raise MalformedMessageError("empty frame (length 0)")
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ConnectionEndedError(clean=False) from None
