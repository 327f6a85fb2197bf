"""``perun_core.eventloop``: the busy-polling selector and loop, on real sockets."""

from __future__ import annotations

import asyncio
import math
import socket

import pytest

from perun_core import eventloop


def test_polling_returns_a_ready_socket_and_honours_short_timeouts() -> None:
    a, b = socket.socketpair()
    sel = eventloop.BusyPollSelector(spin_us=5_000)
    try:
        sel.register(a, 1)  # EVENT_READ
        # Nothing to read: a timeout shorter than the spin ends the call, empty-handed.
        assert sel.select(0.001) == []
        b.send(b"x")
        ready = sel.select(None)
        assert [key.fileobj for key, _ in ready] == [a]
        sel.spin_us = 0
        assert sel.select(0) == [(ready[0][0], 1)]  # the plain selector path still works
    finally:
        sel.close()
        a.close()
        b.close()


@pytest.mark.parametrize("bad", [-1, math.nan])
def test_a_negative_or_nan_spin_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="spin_us"):
        eventloop.BusyPollSelector(bad)


def test_run_gives_a_loop_whose_polling_can_be_changed() -> None:
    async def main() -> tuple[float | None, bool, float | None, str]:
        loop = asyncio.get_running_loop()
        before = eventloop.busy_poll_us(loop)
        changed = eventloop.set_busy_poll(loop, 50)

        # Timers and socket I/O work as on any loop: an echo over a real TCP connection.
        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(await r.readline())
            await w.drain()
            w.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"ping\n")
        await asyncio.sleep(0.01)
        line = (await r.readline()).decode()
        w.close()
        server.close()
        await server.wait_closed()
        return before, changed, eventloop.busy_poll_us(loop), line

    before, changed, after, line = eventloop.run(main(), busy_poll_us=200)
    assert (before, changed, after, line) == (200, True, 50, "ping\n")


def test_loops_not_made_here_are_left_alone() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert eventloop.set_busy_poll(loop, 100) is False
        assert eventloop.busy_poll_us(loop) is None
    finally:
        loop.close()
