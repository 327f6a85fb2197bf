"""Serve one :class:`~perun_sim.ledger.SimLedger` to clients in other processes.

One process owns the ledger and its clock and serves them on loopback TCP or a Unix socket;
clients connect with :class:`~perun_sim.remote.RemoteLedger` (or
``SimBackend.from_config({"url": ...})``). Every ledger rule is checked here, by the ledger
itself; the protocol (:mod:`perun_sim.rpc`) only carries calls, answers and pushed events.

Start one from the shell::

    perun sim serve --port 7545                 # realtime clock
    python -m perun_sim.server --manual-clock --port 0
    python -m perun_sim.server --unix /tmp/ledger.sock

It prints ``perun-sim ledger <id> (<clock> clock) listening on <url>`` once per endpoint and
runs until SIGINT/SIGTERM.

Access. Moving an account's funds — a ``deposit`` from it, a ``withdraw`` of its holdings —
needs a connection that proved control of the account (``login``: a signature over the
connection's own challenge, see :mod:`perun_sim.rpc`); other requests are open to every
connection, as on a chain: views, the faucet (``mint`` creates funds, it takes none), time
(``advance``: it is a simulator) and disputes (their states carry the participants'
signatures). Still, serve it on loopback or a private Unix socket only: it is a simulator.

Robustness. Ledger time never passes ``MAX_LEDGER_TIME``: an ``advance`` beyond it is
answered with :class:`~perun_sim.rpc.ClockRangeError`; arguments nested too deeply to decode are
answered with a malformed-request error; an answer that cannot be encoded becomes an error
answer. No request can stop the server from answering the others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from perun_core.channel.types import Address
from perun_core.errors import (
    FrameTooLargeError,
    MalformedMessageError,
    PerunError,
    ProtocolError,
)
from perun_core.interfaces import (
    AdjudicatorEvent,
    ConcludedEvent,
    ProgressedEvent,
    RegisteredEvent,
)
from perun_sim import rpc
from perun_sim.clock import SimClock
from perun_sim.crypto import verify_message
from perun_sim.ledger import DEFAULT_LEDGER_ID, SimEventSubscription, SimLedger

log = logging.getLogger("perun.sim.server")

MAX_CALLS_IN_FLIGHT: Final = 1024
"""Calls one connection may have unanswered at once (more are refused, not queued)."""

MAX_SUBSCRIPTIONS: Final = 4096
"""Event subscriptions one connection may hold."""

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(list[msgspec.Raw])

Handler = Callable[..., Awaitable[Any]]


def _event(ev: AdjudicatorEvent) -> rpc.WEvent:
    state = None
    actor = 0
    if isinstance(ev, ProgressedEvent):
        kind = rpc.EVENT_PROGRESSED
        state, actor = ev.state, ev.actor_idx
    elif isinstance(ev, RegisteredEvent):
        kind = rpc.EVENT_REGISTERED
        state = ev.state
    elif isinstance(ev, ConcludedEvent):
        kind = rpc.EVENT_CONCLUDED
    else:  # pragma: no cover - the sim ledger emits only these three
        raise TypeError(f"unknown event {type(ev).__name__}")
    return rpc.WEvent(
        kind,
        ev.channel_id,
        rpc.big(ev.version),
        rpc.big(ev.timeout.deadline),
        rpc.w_state(state) if state is not None else None,
        actor,
    )


class LedgerServer:
    """Serves one ledger on any number of TCP and Unix-socket endpoints.

    Args:
        ledger: the ledger to serve (its clock is the clock every client sees).
        max_frame_size: largest frame accepted or sent.

    Use as ``async with LedgerServer(ledger) as server: url = await server.listen_tcp()``.
    """

    def __init__(self, ledger: SimLedger, *, max_frame_size: int = rpc.DEFAULT_MAX_FRAME) -> None:
        self.ledger = ledger
        self.max_frame_size = max_frame_size
        self._servers: list[asyncio.Server] = []
        self._urls: list[str] = []
        self._unix_paths: list[Path] = []
        self._sessions: set[_Session] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def urls(self) -> tuple[str, ...]:
        """Every URL this server listens on, in the order they were opened."""
        return tuple(self._urls)

    @property
    def connections(self) -> int:
        """How many clients are connected right now."""
        return len(self._sessions)

    async def listen_tcp(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on TCP; port 0 picks a free port.

        Returns:
            The URL clients connect to, e.g. ``tcp://127.0.0.1:54321``.
        """
        self._check_open()
        server = await asyncio.start_server(self._accept, host, port)
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        url = rpc.format_tcp_url(sockname[0], sockname[1])
        self._urls.append(url)
        return url

    async def listen_unix(self, path: str | os.PathLike[str]) -> str:
        """Listen on a Unix socket (a leftover socket file is replaced; removed on close).

        Returns:
            The URL clients connect to, ``unix:///absolute/path``.
        """
        self._check_open()
        p = Path(path).absolute()  # noqa: ASYNC240 - resolving the socket path once, when the server starts
        if p.is_socket():
            p.unlink()
        server = await asyncio.start_unix_server(self._accept, str(p))
        self._servers.append(server)
        self._unix_paths.append(p)
        url = f"unix://{p}"
        self._urls.append(url)
        return url

    async def listen(self, url: str) -> str:
        """Listen on ``url`` (``tcp://HOST:PORT`` or ``unix:///path``); returns the bound URL.

        Raises:
            LedgerURLError: not a ledger URL.
        """
        kind, where, port = rpc.parse_url(url)
        if kind == "unix":
            return await self.listen_unix(where)
        return await self.listen_tcp(where, port)

    async def close(self) -> None:
        """Stop listening, drop every connection (pending calls are cancelled)."""
        if self._closed:
            return
        self._closed = True
        for server in self._servers:
            server.close()
        for session in list(self._sessions):
            await session.close()
        # The connection handlers end once their session is closed; wait for them so no
        # task outlives the server.
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        for p in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    async def __aenter__(self) -> LedgerServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ProtocolError("the ledger server is closed")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closed:
            writer.close()
            return
        session = _Session(self, reader, writer)
        self._sessions.add(session)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await session.run()
        except asyncio.CancelledError:
            # Cancelled with the event loop: clean up and end quietly (asyncio's stream
            # server would otherwise report the cancellation as an error in a callback).
            pass
        finally:
            self._sessions.discard(session)
            if task is not None:
                self._handlers.discard(task)
            # Cancelled again while closing (the loop is shutting down): end normally, since
            # Python 3.11's stream server logs a handler task that ends cancelled as an error.
            with contextlib.suppress(asyncio.CancelledError):
                await session.close()


class _Session:
    """One client connection: its calls in flight and its event subscriptions."""

    def __init__(
        self, server: LedgerServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.ledger = server.ledger
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = str(peer) if peer else "unix socket"
        self.calls: dict[int, asyncio.Task[None]] = {}
        self.subs: dict[int, tuple[SimEventSubscription, asyncio.Task[None]]] = {}
        self.closed = False
        self.challenge = secrets.token_bytes(rpc.CHALLENGE_LEN)
        self.accounts: set[Address] = set()  # proven by login on this connection
        # method -> (argument types, handler); arguments are decoded before the call
        self.methods: dict[str, tuple[Any, Handler]] = {
            "hello": (tuple[int], self._hello),
            "login": (tuple[bytes, bytes], self._login),
            "now": (tuple[()], self._now),
            "sleep_until": (tuple[rpc.Big], self._sleep_until),
            "advance": (tuple[rpc.Big], self._advance),
            "balance_of": (tuple[bytes, rpc.WAsset], self._balance_of),
            "holdings": (tuple[rpc.WAsset, bytes], self._holdings),
            "dispute": (tuple[bytes], self._dispute),
            "is_settled": (tuple[rpc.WAsset, bytes], self._is_settled),
            "tx_count": (tuple[str | None], self._tx_count),
            "mint": (tuple[bytes, rpc.WAsset, rpc.Big], self._mint),
            "deposit": (tuple[bytes, rpc.WAsset, bytes, rpc.Big], self._deposit),
            "register": (tuple[rpc.WSigned, list[rpc.WSigned]], self._register),
            "progress": (
                tuple[rpc.WParams, rpc.WState, rpc.WState, int, bytes],
                self._progress,
            ),
            "conclude": (tuple[rpc.WParams, rpc.WState, list[rpc.WState]], self._conclude),
            "conclude_final": (
                tuple[rpc.WParams, rpc.WState, list[bytes]],
                self._conclude_final,
            ),
            "withdraw": (tuple[rpc.WAuth, bytes], self._withdraw),
            "subscribe": (tuple[int, bytes], self._subscribe),
            "unsubscribe": (tuple[int], self._unsubscribe),
            "wait_holdings": (
                tuple[list[tuple[rpc.WAsset, bytes, rpc.Big]], rpc.Big],
                self._wait_holdings,
            ),
        }
        self._ledger_id = server.ledger.ledger_id

    # --- connection --------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while not self.closed:
                payload = await rpc.read_frame(self.reader, self.server.max_frame_size)
                if payload is None:
                    return
                self._dispatch(payload)
        except (MalformedMessageError, FrameTooLargeError) as e:
            log.warning("ledger client %s dropped: %s", self.peer, e)
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        tasks = list(self.calls.values())
        for sub, task in self.subs.values():
            await sub.close()
            tasks.append(task)
        self.calls.clear()
        self.subs.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    def _send(self, message: list[Any]) -> None:
        if self.closed or self.writer.is_closing():
            return
        payload = _ENCODER.encode(message)
        if len(payload) > self.server.max_frame_size:
            raise FrameTooLargeError(len(payload), self.server.max_frame_size)
        self.writer.write(rpc.frame(payload))

    def _answer_too_deep(self, payload: bytes) -> None:
        """A frame nested too deeply to even find the call's parts: answer it if it is a
        call, else drop the connection (raises)."""
        head = rpc.call_head(payload)
        if head is None:
            raise MalformedMessageError("undecodable frame: nested too deeply") from None
        call_id, method = head
        if call_id not in self.calls:
            self._reply_error(
                call_id,
                MalformedMessageError(f"arguments of {method[:64]} nested too deeply"),
                method,
            )

    def _dispatch(self, payload: bytes) -> None:
        """Decode one frame and start its call; a frame that is not a message drops the
        connection (raises), a bad call is answered with an error."""
        try:
            parts = _DECODER.decode(payload)
            kind = msgspec.msgpack.decode(parts[0], type=int) if parts else -1
        except msgspec.MsgspecError as e:
            raise MalformedMessageError(f"undecodable frame: {e}") from None
        except RecursionError:
            self._answer_too_deep(payload)
            return
        if kind == rpc.CANCEL and len(parts) == 2:
            task = self.calls.get(_decode_id(parts[1]))
            if task is not None:
                task.cancel()
            return
        if kind != rpc.CALL or len(parts) != 4:
            raise MalformedMessageError(f"expected a call or a cancel, got kind {kind}")
        call_id = _decode_id(parts[1])
        try:
            method = msgspec.msgpack.decode(parts[2], type=str)
        except msgspec.MsgspecError:
            raise MalformedMessageError("a method name is a string") from None
        if call_id in self.calls:
            self._reply_error(call_id, ProtocolError(f"call ID {call_id} is already in use"), "")
            return
        if len(self.calls) >= MAX_CALLS_IN_FLIGHT:
            self._reply_error(call_id, ProtocolError("too many calls in flight"), method)
            return
        spec = self.methods.get(method)
        if spec is None:
            self._reply_error(call_id, ProtocolError(f"unknown method {method[:64]!r}"), method)
            return
        arg_type, handler = spec
        try:
            args = msgspec.msgpack.decode(parts[3], type=arg_type)
        except msgspec.MsgspecError as e:
            self._reply_error(
                call_id, MalformedMessageError(f"bad arguments of {method}: {e}"), method
            )
            return
        except RecursionError:
            self._reply_error(
                call_id, MalformedMessageError(f"arguments of {method} nested too deeply"), method
            )
            return
        task = asyncio.create_task(self._call(call_id, method, handler, args))
        self.calls[call_id] = task

    async def _call(self, call_id: int, method: str, handler: Handler, args: Any) -> None:
        try:
            result = await handler(*args)
        except asyncio.CancelledError:
            self.calls.pop(call_id, None)
            raise
        except Exception as e:
            self.calls.pop(call_id, None)
            if not isinstance(e, PerunError | ValueError):
                log.exception("ledger call %s from %s failed", method, self.peer)
            self._reply_error(call_id, e, method)
            return
        self.calls.pop(call_id, None)
        try:
            self._send([rpc.RESULT, call_id, result])
        except FrameTooLargeError as e:
            self._reply_error(call_id, e, method)
            return
        except (OverflowError, TypeError, ValueError) as e:  # a result the protocol cannot carry
            log.exception("the answer to %s from %s cannot be encoded", method, self.peer)
            self._reply_error(call_id, e, method)
            return
        await self._drain()

    def _reply_error(self, call_id: int, e: BaseException, method: str) -> None:
        self._send([rpc.ERROR, call_id, rpc.w_error(e, method)])

    async def _drain(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.drain()

    # --- methods -----------------------------------------------------------------------------

    async def _hello(self, version: int) -> list[Any]:
        if version != rpc.PROTOCOL_VERSION:
            raise ProtocolError(
                f"ledger protocol version {version} is not supported; "
                f"this server speaks version {rpc.PROTOCOL_VERSION}"
            )
        clock = self.ledger.clock
        return [
            rpc.PROTOCOL_VERSION,
            rpc.big(self._ledger_id),
            clock.is_manual,
            clock.now(),
            self.challenge,
        ]

    async def _login(self, who: bytes, sig: bytes) -> None:
        address = rpc.address(who)
        text = rpc.login_transcript(self._ledger_id, self.challenge, address)
        try:
            ok = verify_message(address, text, sig)
        except PerunError as e:  # a malformed signature
            raise rpc.LedgerAuthError(f"login as {address}: {e}", operation="login") from None
        if not ok:
            raise rpc.LedgerAuthError(
                f"login as {address}: the signature does not verify for that account",
                operation="login",
            )
        self.accounts.add(address)

    def _require_account(self, address: Address, operation: str) -> None:
        if address not in self.accounts:
            raise rpc.LedgerAuthError(
                f"{operation} moves the funds of {address}, and this connection has not proven "
                "control of it (RemoteLedger.add_account(account) logs in)",
                operation=operation,
            )

    async def _now(self) -> int:
        return self.ledger.clock.now()

    async def _sleep_until(self, t: rpc.Big) -> None:
        await self.ledger.clock.sleep_until(_time(rpc.unbig(t)))

    async def _advance(self, seconds: rpc.Big) -> int:
        step = rpc.unbig(seconds)
        clock = self.ledger.clock
        if step > rpc.MAX_LEDGER_TIME - clock.now():  # negative steps: the clock refuses them
            raise rpc.ClockRangeError(
                f"advancing by {step} s would take ledger time past {rpc.MAX_LEDGER_TIME}"
            )
        now = clock.advance(step)
        await asyncio.sleep(0)
        return now

    async def _balance_of(self, who: bytes, asset: rpc.WAsset) -> rpc.Big:
        return rpc.big(self.ledger.balance_of(rpc.address(who), rpc.asset(asset)))

    async def _holdings(self, asset: rpc.WAsset, fid: bytes) -> rpc.Big:
        return rpc.big(self.ledger.holdings(rpc.asset(asset), fid))

    async def _dispute(self, cid: bytes) -> rpc.WDispute | None:
        d = self.ledger.dispute(cid)
        return rpc.w_dispute(d) if d is not None else None

    async def _is_settled(self, asset: rpc.WAsset, cid: bytes) -> bool:
        return self.ledger.is_settled(rpc.asset(asset), cid)

    async def _tx_count(self, operation: str | None) -> int:
        return self.ledger.tx_count(operation)

    async def _mint(self, who: bytes, asset: rpc.WAsset, amount: rpc.Big) -> None:
        self.ledger.mint(rpc.address(who), rpc.asset(asset), rpc.unbig(amount))

    async def _deposit(self, sender: bytes, asset: rpc.WAsset, fid: bytes, amount: rpc.Big) -> None:
        who = rpc.address(sender)
        self._require_account(who, "deposit")
        await self.ledger.deposit(who, rpc.asset(asset), fid, rpc.unbig(amount))

    async def _register(self, channel: rpc.WSigned, subs: list[rpc.WSigned]) -> None:
        await self.ledger.register(rpc.signed(channel), [rpc.signed(s) for s in subs])

    async def _progress(
        self, p: rpc.WParams, old: rpc.WState, new: rpc.WState, actor: int, sig: bytes
    ) -> None:
        await self.ledger.progress(rpc.params(p), rpc.state(old), rpc.state(new), actor, sig)

    async def _conclude(self, p: rpc.WParams, s: rpc.WState, subs: list[rpc.WState]) -> None:
        await self.ledger.conclude(rpc.params(p), rpc.state(s), [rpc.state(x) for x in subs])

    async def _conclude_final(self, p: rpc.WParams, s: rpc.WState, sigs: list[bytes]) -> None:
        await self.ledger.conclude_final(rpc.params(p), rpc.state(s), sigs)

    async def _withdraw(self, auth: rpc.WAuth, sig: bytes) -> None:
        decoded = rpc.auth(auth)
        self._require_account(decoded.participant, "withdraw")
        await self.ledger.withdraw(decoded, sig)

    async def _subscribe(self, sub_id: int, cid: bytes) -> None:
        if sub_id in self.subs:
            raise ProtocolError(f"subscription ID {sub_id} is already in use")
        if len(self.subs) >= MAX_SUBSCRIPTIONS:
            raise ProtocolError("too many subscriptions")
        # Subscribing and answering happen before any event is forwarded, so the client
        # sees the answer first and then the most recent past event (if any).
        sub = self.ledger.subscribe(cid)
        task = asyncio.create_task(self._forward(sub_id, sub))
        self.subs[sub_id] = (sub, task)

    async def _forward(self, sub_id: int, sub: SimEventSubscription) -> None:
        await asyncio.sleep(0)  # let the subscribe answer go out first
        while (ev := await sub.next()) is not None:
            try:
                self._send([rpc.EVENT, sub_id, _event(ev)])
            except FrameTooLargeError as e:  # a state beyond the frame limit: cannot be sent
                log.warning("subscription %d of %s ended: %s", sub_id, self.peer, e)
                await sub.close()
                return
            await self._drain()

    async def _unsubscribe(self, sub_id: int) -> None:
        entry = self.subs.pop(sub_id, None)
        if entry is not None:
            sub, task = entry
            await sub.close()
            await asyncio.gather(task, return_exceptions=True)

    async def _wait_holdings(
        self, seen: list[tuple[rpc.WAsset, bytes, rpc.Big]], until: rpc.Big
    ) -> bool:
        keys = {(rpc.asset(a), fid): rpc.unbig(v) for a, fid, v in seen}
        return await self.ledger.wait_holdings(keys, _time(rpc.unbig(until)))


def _time(t: int) -> int:
    """A time a client waits for. The clock never passes ``MAX_LEDGER_TIME`` (``advance``
    refuses to), so a later time is a wait for ever: the same, without huge numbers."""
    return min(t, rpc.MAX_LEDGER_TIME + 1)


def _decode_id(raw: msgspec.Raw) -> int:
    try:
        value = msgspec.msgpack.decode(raw, type=int)
    except msgspec.MsgspecError:
        raise MalformedMessageError("a call ID is an integer") from None
    return value


# --- command line ------------------------------------------------------------------------------


DESCRIPTION: Final = "Serve a simulated perun ledger to clients in other processes."


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m perun_sim.server", description=DESCRIPTION)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``perun sim serve`` (and ``python -m perun_sim.server``)."""
    p.add_argument("--host", default="127.0.0.1", help="TCP host to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="TCP port (0: a free one)")
    p.add_argument("--unix", default=None, help="also (or only) listen on this Unix socket")
    p.add_argument(
        "--manual-clock",
        action="store_true",
        help="ledger time moves only when a client advances it (tests)",
    )
    p.add_argument("--start", type=int, default=0, help="start time of a manual clock")
    p.add_argument("--ledger-id", type=int, default=DEFAULT_LEDGER_ID, help="the ledger ID")
    p.add_argument(
        "--latency", type=float, default=0.0, help="real seconds of delay per transaction"
    )
    p.add_argument("--verbose", action="store_true", help="log every dropped client")


async def serve(args: argparse.Namespace, *, ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or cancellation), as :func:`main` configures it."""
    clock = SimClock.manual(args.start) if args.manual_clock else SimClock.realtime()
    ledger = SimLedger(args.ledger_id, clock, latency=args.latency)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with LedgerServer(ledger) as server:
        if args.unix is not None:
            await server.listen_unix(args.unix)
        if args.port is not None or args.unix is None:
            await server.listen_tcp(args.host, args.port or 0)
        mode = "manual" if clock.is_manual else "realtime"
        for url in server.urls:
            line = f"perun-sim ledger {ledger.ledger_id} ({mode} clock) listening on {url}"
            (ready or _print)(line)
        await stop.wait()


def _print(line: str) -> None:
    print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perun_sim.server [options]`` (``perun sim serve`` runs :func:`serve`)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["serve"]:
        args_list = args_list[1:]
    args = _parser().parse_args(args_list)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    try:
        asyncio.run(serve(args))
    except (PerunError, OSError) as e:
        print(f"perun-sim: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
