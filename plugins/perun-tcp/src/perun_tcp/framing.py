"""Stream framing: a 4-byte big-endian length, then that many bytes of codec payload."""

from __future__ import annotations

import asyncio
from typing import Final

from perun_core.errors import FrameTooLargeError, MalformedMessageError

HEADER_LEN: Final = 4


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


class FrameSplitter:
    """Splits a byte stream, fed in chunks of any size, into frame payloads.

    The bus reads whatever the socket holds and splits it here, instead of two reads per
    frame: under load one read carries many frames. A frame's announced length is checked
    against ``max_size`` as soon as its header is in, so at most one read chunk beyond the
    current frame is ever buffered.
    """

    __slots__ = ("_buf", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()

    @property
    def empty(self) -> bool:
        """Whether no partial frame is buffered (the stream is at a frame boundary)."""
        return not self._buf

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; returns the payloads of the frames completed by it, in order.

        Raises:
            FrameTooLargeError: a frame announces more than ``max_size`` bytes.
            MalformedMessageError: a zero-length frame.
        """
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos, end = 0, len(buf)
        while end - pos >= HEADER_LEN:
            size = int.from_bytes(buf[pos : pos + HEADER_LEN], "big")
            if size > self.max_size:
                raise FrameTooLargeError(size, self.max_size)
            if size == 0:
                raise MalformedMessageError("empty frame (length 0)")
            start = pos + HEADER_LEN
            if end - start < size:
                break
            out.append(bytes(buf[start : start + size]))
            pos = start + size
        if pos:
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
