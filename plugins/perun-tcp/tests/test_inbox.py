"""``Inbox``: frames handled in the transport's data callback, over real sockets.

Each test connects two asyncio streams over a real socket pair, lets the inbox take over the
reading side's ``StreamReader`` (as the bus does after the handshake) and writes frames from
the other side.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from perun_tcp.framing import FrameSplitter, frame
from perun_tcp.inbox import MAX_QUEUED, Inbox

from perun_core.errors import FrameTooLargeError
from perun_core.testing.waiting import until


@dataclass
class Pipe:
    reader: asyncio.StreamReader
    transport: asyncio.BaseTransport
    writer: asyncio.StreamWriter  # the other end
    handled: list[bytes] = field(default_factory=list)
    chunks: int = 0
    blocked: bool = False

    def inbox(self, stop_at: bytes | None = None) -> Inbox:
        def handle(payload: bytes) -> bool:
            self.handled.append(payload)
            return payload != stop_at

        def seen() -> None:
            self.chunks += 1

        return Inbox(FrameSplitter(1000), handle, lambda: self.blocked, seen)


@pytest.fixture
async def pipe() -> AsyncIterator[Pipe]:
    a, b = socket.socketpair()
    reader, w_a = await asyncio.open_connection(sock=a)
    _, w_b = await asyncio.open_connection(sock=b)
    yield Pipe(reader, w_a.transport, w_b)
    for w in (w_a, w_b):
        w.close()


async def test_frames_are_handled_as_they_arrive_including_what_the_reader_held(
    pipe: Pipe,
) -> None:
    # Bytes that arrived before the takeover (e.g. right behind the handshake) come first.
    pipe.writer.write(frame(b"one") + frame(b"two")[:3])
    await until(lambda: len(pipe.reader._buffer) == 10, interval=0.001)  # type: ignore[attr-defined]
    inbox = pipe.inbox()
    assert inbox.attach(pipe.reader, pipe.transport)
    assert pipe.handled == [b"one"]
    pipe.writer.write(frame(b"two")[3:] + frame(b"three"))
    await until(lambda: len(pipe.handled) == 3, interval=0.001)
    assert pipe.handled == [b"one", b"two", b"three"]
    assert not inbox.frames and not inbox.done
    assert pipe.chunks >= 2


async def test_blocked_frames_wait_in_order_and_later_chunks_queue_behind_them(
    pipe: Pipe,
) -> None:
    inbox = pipe.inbox()
    assert inbox.attach(pipe.reader, pipe.transport)
    pipe.blocked = True
    pipe.writer.write(frame(b"a") + frame(b"b"))
    await asyncio.wait_for(inbox.wait(), 5)
    assert list(inbox.frames) == [b"a", b"b"] and pipe.handled == []
    pipe.blocked = False  # no longer blocked, but older frames wait: order comes first
    pipe.writer.write(frame(b"c"))
    await until(lambda: len(inbox.frames) == 3, interval=0.001)
    assert list(inbox.frames) == [b"a", b"b", b"c"] and pipe.handled == []


async def test_a_stop_frame_ends_reading_and_later_bytes_are_ignored(pipe: Pipe) -> None:
    inbox = pipe.inbox(stop_at=b"bye")
    assert inbox.attach(pipe.reader, pipe.transport)
    pipe.writer.write(frame(b"x") + frame(b"bye") + frame(b"late"))
    await asyncio.wait_for(inbox.wait(), 5)
    assert inbox.stopped and inbox.done
    pipe.writer.write(frame(b"later"))
    await asyncio.sleep(0.05)
    assert pipe.handled == [b"x", b"bye"]


async def test_an_oversized_frame_is_an_error_and_nothing_after_it_is_handled(
    pipe: Pipe,
) -> None:
    inbox = pipe.inbox()
    assert inbox.attach(pipe.reader, pipe.transport)
    pipe.writer.write(frame(b"ok"))
    await until(lambda: pipe.handled == [b"ok"], interval=0.001)
    pipe.writer.write((5000).to_bytes(4, "big") + b"z" * 10)
    await asyncio.wait_for(inbox.wait(), 5)
    assert isinstance(inbox.error, FrameTooLargeError)
    pipe.writer.write(frame(b"after"))
    await asyncio.sleep(0.05)
    assert pipe.handled == [b"ok"]


async def test_end_of_stream_is_reported_also_when_it_came_before_the_takeover(
    pipe: Pipe,
) -> None:
    pipe.writer.write(frame(b"last"))
    pipe.writer.write_eof()
    await until(lambda: getattr(pipe.reader, "_eof", False), interval=0.001)
    inbox = pipe.inbox()
    assert inbox.attach(pipe.reader, pipe.transport)
    assert pipe.handled == [b"last"] and inbox.eof and inbox.splitter.empty


async def test_the_socket_pauses_while_too_many_frames_wait_and_resumes_after(
    pipe: Pipe,
) -> None:
    inbox = pipe.inbox()
    assert inbox.attach(pipe.reader, pipe.transport)
    assert isinstance(pipe.transport, asyncio.ReadTransport)
    pipe.blocked = True
    pipe.writer.write(b"".join(frame(b"%d" % i) for i in range(MAX_QUEUED + 10)))
    await until(lambda: not pipe.transport.is_reading(), interval=0.001)
    assert len(inbox.frames) > MAX_QUEUED
    inbox.frames.clear()  # what the bus's reader task does once it may deliver them
    inbox.caught_up()
    assert pipe.transport.is_reading()


async def test_a_reader_that_is_not_asyncios_own_is_left_alone(pipe: Pipe) -> None:
    class OtherReader(asyncio.StreamReader):
        pass

    other = OtherReader()
    other.feed_data(frame(b"kept"))
    inbox = pipe.inbox()
    # The bus then reads this reader in its task and feeds the inbox itself.
    assert not inbox.attach(other, pipe.transport)
    assert "feed_data" not in vars(other) and pipe.handled == []
    inbox.feed(await other.read(100))
    assert pipe.handled == [b"kept"]
