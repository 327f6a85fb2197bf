"""A client of a served sim ledger (:mod:`perun_sim.server`): :class:`RemoteLedger`.

Clients in several OS processes share one ledger by connecting to the process that serves
it. :class:`RemoteLedger` implements :class:`~perun_sim.api.LedgerAPI`, so
:class:`~perun_sim.funder.SimFunder`, :class:`~perun_sim.adjudicator.SimAdjudicator` and
:class:`~perun_sim.backend.SimBackend` work on it unchanged::

    backend = SimBackend.from_config({"url": "tcp://127.0.0.1:7545"})
    await backend.connect()          # optional: the first call connects anyway

Moving an account's funds (``deposit`` from it, ``withdraw`` of its holdings) needs the
account's key: the server serves those requests only on a connection that proved control of
the account. :meth:`RemoteLedger.add_account` hands the client the account (its key stays in
this process); the client then logs in as it, on every connection, before the first such
request. ``SimBackend.funder(account)`` and ``SimBackend.adjudicator(account)`` do this.

Events are pushed by the server (no polling); a subscription's first event is the most
recent past one, as on a local ledger. Event timeouts are :class:`RemoteTimeout`: they ask
the server's clock, so a manual clock moved by any client wakes every waiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from perun_core.channel.params import Params
from perun_core.channel.state import SignedState, State
from perun_core.channel.types import Address, Asset
from perun_core.errors import FrameTooLargeError, MalformedMessageError
from perun_core.interfaces import (
    Account,
    AdjudicatorEvent,
    ConcludedEvent,
    EventSubscription,
    ProgressedEvent,
    RegisteredEvent,
    Timeout,
)
from perun_core.queues import ClosableQueue
from perun_sim import rpc
from perun_sim.api import LedgerAPI
from perun_sim.ledger import DEFAULT_LEDGER_ID, Dispute, HoldingKey, WithdrawalAuth

log = logging.getLogger("perun.sim.remote")

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(list[msgspec.Raw])


class RemoteTimeout(Timeout):
    """A deadline on a served ledger's clock.

    ``is_elapsed()`` asks the server for the time; ``wait()`` is answered by the server when
    its clock reaches the deadline (a cancelled wait is cancelled on the server too).
    """

    __slots__ = ("_deadline", "_ledger")

    def __init__(self, ledger: RemoteLedger, deadline: int) -> None:
        self._ledger = ledger
        self._deadline = int(deadline)

    @property
    def deadline(self) -> int:
        """The deadline in ledger seconds."""
        return self._deadline

    async def is_elapsed(self) -> bool:
        """Whether the served ledger's time has reached the deadline."""
        return await self._ledger.now() >= self._deadline

    async def wait(self) -> None:
        """Return once the served ledger's time has reached the deadline."""
        await self._ledger.sleep_until(self._deadline)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemoteTimeout):
            return NotImplemented
        return self._deadline == other._deadline and self._ledger is other._ledger

    def __hash__(self) -> int:
        return hash(self._deadline)

    def __repr__(self) -> str:
        return f"RemoteTimeout(deadline={self._deadline})"


class RemoteEventSubscription(EventSubscription):
    """Events of one channel pushed by the server (queue-fed, no polling).

    Ends (``next()`` returns ``None``) when closed or when the connection is lost.
    """

    def __init__(self, ledger: RemoteLedger, sub_id: int, cid: bytes) -> None:
        self._ledger = ledger
        self.sub_id = sub_id
        self.channel_id = cid
        self._queue: ClosableQueue[AdjudicatorEvent] = ClosableQueue()

    def push(self, ev: AdjudicatorEvent | None) -> None:
        """Queue an event (``None``: the end) for :meth:`next` (called by the ledger)."""
        if ev is None:
            self._queue.end()
        else:
            self._queue.put(ev)

    async def next(self) -> AdjudicatorEvent | None:
        """The next event, or ``None`` once the subscription is closed or disconnected."""
        return await self._queue.get()

    async def close(self) -> None:
        """Stop the subscription (also on the server); a pending ``next()`` returns ``None``."""
        if self._queue.closed:
            return
        self._queue.close()
        await self._ledger.unsubscribe(self)


class RemoteLedger(LedgerAPI):
    """:class:`LedgerAPI` over a connection to a ledger served by :mod:`perun_sim.server`.

    Connects on first use (or :meth:`connect`). A lost connection fails the calls in flight
    with :class:`~perun_sim.rpc.LedgerConnectionError` and ends every subscription; the next
    call connects again.

    Args:
        url: ``tcp://HOST:PORT``, ``tcp://[IPv6]:PORT`` or ``unix:///absolute/path``.
        ledger_id: the ledger ID expected from the server (its assets' ``ledger_id``); a
            server with another ID is refused when connecting.
        connect_timeout: seconds for opening the connection and the ``hello`` exchange.
        max_frame_size: largest frame sent or accepted.

    Raises:
        LedgerURLError: ``url`` is not one of the forms above.
    """

    def __init__(
        self,
        url: str,
        *,
        ledger_id: int = DEFAULT_LEDGER_ID,
        connect_timeout: float = 5.0,
        max_frame_size: int = rpc.DEFAULT_MAX_FRAME,
    ) -> None:
        self._kind, self._where, self._port = rpc.parse_url(url)
        self.url = url
        self._ledger_id = ledger_id
        self.connect_timeout = connect_timeout
        self.max_frame_size = max_frame_size
        self.server_manual_clock: bool | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._connect_lock: asyncio.Lock | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[msgspec.Raw], str]] = {}
        self._subs: dict[int, RemoteEventSubscription] = {}
        self._closed = False
        self._accounts: dict[Address, Account] = {}
        self._challenge = b""  # the current connection's, from hello
        self._logged_in: set[Address] = set()  # on the current connection

    @property
    def ledger_id(self) -> int:
        """The ledger's ID (checked against the server's when connecting)."""
        return self._ledger_id

    @property
    def location(self) -> str:
        """The server's URL."""
        return self.url

    @property
    def connected(self) -> bool:
        """Whether a connection is up."""
        return self._writer is not None and not self._writer.is_closing()

    def add_account(self, account: Account) -> None:
        """Let this client move ``account``'s funds (deposit from it, withdraw its holdings).

        The key stays here: before the first such request on each connection, the client
        signs the connection's challenge with it (``login``).
        """
        self._accounts[account.address] = account

    # --- connection ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect (if not connected) and check protocol version and ledger ID.

        Raises:
            LedgerConnectionError: the server cannot be reached in time, speaks another
                protocol version or serves a ledger with another ID.
        """
        if self._closed:
            raise rpc.LedgerConnectionError(f"the ledger client for {self.url} is closed")
        if self.connected:
            return
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self.connected:
                return
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await self._open()
                    hello = await self._call("hello", [rpc.PROTOCOL_VERSION], list[Any])
            except TimeoutError:
                await self._drop("connect timed out")
                raise rpc.LedgerConnectionError(
                    f"the sim ledger at {self.url} did not answer within {self.connect_timeout:g}s",
                    operation="connect",
                ) from None
            except OSError as e:
                await self._drop(str(e))
                raise rpc.LedgerConnectionError(
                    f"cannot reach the sim ledger at {self.url}: {e}", operation="connect"
                ) from None
            except Exception as e:
                await self._drop(str(e))
                if isinstance(e, rpc.LedgerConnectionError):
                    raise
                raise rpc.LedgerConnectionError(
                    f"the sim ledger at {self.url} refused the connection: {e}",
                    operation="connect",
                ) from None
            server_id = rpc.unbig(hello[1]) if len(hello) == 5 else None
            if server_id != self._ledger_id:
                await self._drop("wrong ledger")
                raise rpc.LedgerConnectionError(
                    f"the server at {self.url} serves ledger {server_id}, "
                    f"not the configured ledger {self._ledger_id}",
                    operation="connect",
                )
            self.server_manual_clock = bool(hello[2])
            self._challenge = bytes(hello[4]) if len(hello) >= 5 else b""
            self._logged_in = set()

    async def _open(self) -> None:
        if self._kind == "unix":
            reader, writer = await asyncio.open_unix_connection(self._where)
        else:
            reader, writer = await asyncio.open_connection(self._where, self._port)
        self._reader, self._writer = reader, writer
        self._read_task = asyncio.create_task(self._read_loop(reader), name="perun-sim-remote")

    async def close(self) -> None:
        """Close the connection; calls in flight fail, subscriptions end."""
        self._closed = True
        await self._drop("closed")
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._read_task
            self._read_task = None

    async def _drop(self, why: str) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        self._logged_in = set()
        self._fail_all(why)
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def _fail_all(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        for fut, method in pending.values():
            if not fut.done():
                fut.set_exception(
                    rpc.LedgerConnectionError(
                        f"lost the connection to the sim ledger at {self.url} ({why})",
                        operation=method,
                    )
                )
        subs, self._subs = self._subs, {}
        for sub in subs.values():
            sub.push(None)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        why = "the server closed the connection"
        try:
            while True:
                payload = await rpc.read_frame(reader, self.max_frame_size)
                if payload is None:
                    break
                self._on_frame(payload)
        except (MalformedMessageError, FrameTooLargeError) as e:
            why = f"bad frame from the server: {e}"
            log.warning("sim ledger %s: %s", self.url, why)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            why = f"connection broken: {e}"
        if self._reader is reader:
            writer, self._writer, self._reader = self._writer, None, None
            self._logged_in = set()
            if writer is not None:
                writer.close()
            self._fail_all(why)

    def _on_frame(self, payload: bytes) -> None:
        try:
            parts = _DECODER.decode(payload)
            kind = msgspec.msgpack.decode(parts[0], type=int) if len(parts) == 3 else -1
            ident = msgspec.msgpack.decode(parts[1], type=int) if kind != -1 else 0
        except msgspec.MsgspecError as e:
            raise MalformedMessageError(f"undecodable frame: {e}") from None
        except RecursionError:
            raise MalformedMessageError("undecodable frame: nested too deeply") from None
        if kind == rpc.EVENT:
            sub = self._subs.get(ident)
            if sub is not None:
                sub.push(self._event(parts[2]))
            return
        if kind not in (rpc.RESULT, rpc.ERROR):
            raise MalformedMessageError(f"unexpected message kind {kind}")
        entry = self._pending.pop(ident, None)
        if entry is None:
            return  # the caller gave up (cancelled) before the answer came
        fut, _method = entry
        if fut.done():
            return
        if kind == rpc.RESULT:
            fut.set_result(parts[2])
        else:
            try:
                err = msgspec.msgpack.decode(parts[2], type=rpc.WError)
            except (msgspec.MsgspecError, RecursionError) as e:
                raise MalformedMessageError(f"undecodable error answer: {e}") from None
            fut.set_exception(rpc.error(err))

    def _event(self, raw: msgspec.Raw) -> AdjudicatorEvent:
        try:
            w = msgspec.msgpack.decode(raw, type=rpc.WEvent)
        except (msgspec.MsgspecError, RecursionError) as e:
            raise MalformedMessageError(f"undecodable event: {e}") from None
        timeout = RemoteTimeout(self, rpc.unbig(w.deadline))
        version = rpc.unbig(w.version)
        st = rpc.state(w.state) if w.state is not None else None
        if w.kind == rpc.EVENT_REGISTERED:
            return RegisteredEvent(w.channel_id, version, timeout, state=st)
        if w.kind == rpc.EVENT_PROGRESSED:
            return ProgressedEvent(w.channel_id, version, timeout, state=st, actor_idx=w.actor_idx)
        if w.kind == rpc.EVENT_CONCLUDED:
            return ConcludedEvent(w.channel_id, version, timeout)
        raise MalformedMessageError(f"unknown event kind {w.kind}")

    # --- calls ---------------------------------------------------------------------------------

    async def _call(self, method: str, args: list[Any], result_type: Any) -> Any:
        """Send one call and wait for its answer (decoded as ``result_type``)."""
        writer = self._writer
        if writer is None or writer.is_closing():
            raise rpc.LedgerConnectionError(
                f"not connected to the sim ledger at {self.url}", operation=method
            )
        call_id = next(self._ids)
        payload = _ENCODER.encode([rpc.CALL, call_id, method, args])
        if len(payload) > self.max_frame_size:
            raise FrameTooLargeError(len(payload), self.max_frame_size)
        fut: asyncio.Future[msgspec.Raw] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = (fut, method)
        try:
            writer.write(rpc.frame(payload))
            await writer.drain()
            raw = await fut
        except asyncio.CancelledError:
            # Tell the server to stop working on it (e.g. a sleep_until far in the future).
            self._pending.pop(call_id, None)
            if self._writer is writer and not writer.is_closing():
                writer.write(rpc.frame(_ENCODER.encode([rpc.CANCEL, call_id])))
            raise
        except (ConnectionError, OSError) as e:
            self._pending.pop(call_id, None)
            raise rpc.LedgerConnectionError(
                f"lost the connection to the sim ledger at {self.url}: {e}", operation=method
            ) from None
        try:
            return msgspec.msgpack.decode(raw, type=result_type)
        except (msgspec.MsgspecError, RecursionError) as e:
            raise MalformedMessageError(f"bad answer to {method}: {e}") from None

    async def call(self, method: str, args: list[Any], result_type: Any = Any) -> Any:
        """Connect if needed, then call ``method`` (the raw RPC; prefer the typed methods)."""
        await self.connect()
        return await self._call(method, args, result_type)

    async def _act_as(self, address: Address, method: str, args: list[Any]) -> None:
        """Call ``method``, which moves ``address``'s funds, logged in as ``address``.

        An account not given to :meth:`add_account` is not logged in: the server then
        refuses with :class:`~perun_sim.rpc.LedgerAuthError`.
        """
        await self.connect()
        account = self._accounts.get(address)
        if account is not None and address not in self._logged_in:
            text = rpc.login_transcript(self._ledger_id, self._challenge, address)
            await self._call("login", [address.raw, account.sign(text)], None)
            self._logged_in.add(address)
        await self._call(method, args, None)

    # --- LedgerAPI -----------------------------------------------------------------------------

    async def now(self) -> int:
        """The served ledger's current time."""
        result: int = await self.call("now", [], int)
        return result

    async def sleep_until(self, t: int) -> None:
        """Return once the served ledger's time is ``>= t`` (the server answers then)."""
        await self.call("sleep_until", [rpc.big(t)], None)

    async def advance(self, seconds: int) -> int:
        """Move the served ledger's time forward; returns the new time.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        result: int = await self.call("advance", [rpc.big(seconds)], int)
        return result

    def timeout(self, deadline: int) -> Timeout:
        """A :class:`RemoteTimeout` at ``deadline``."""
        return RemoteTimeout(self, deadline)

    async def balance_of(self, address: Address, asset: Asset) -> int:
        """The account balance of ``address`` in ``asset`` on the served ledger."""
        v = await self.call("balance_of", [address.raw, rpc.w_asset(asset)], rpc.Big)
        return rpc.unbig(v)

    async def holdings(self, asset: Asset, fid: bytes) -> int:
        """What funding ID ``fid`` holds of ``asset``."""
        v = await self.call("holdings", [rpc.w_asset(asset), fid], rpc.Big)
        return rpc.unbig(v)

    async def dispute(self, cid: bytes) -> Dispute | None:
        """The dispute record of channel ``cid``."""
        w = await self.call("dispute", [cid], rpc.WDispute | None)
        return rpc.dispute(w) if w is not None else None

    async def is_settled(self, asset: Asset, cid: bytes) -> bool:
        """Whether channel ``cid``'s outcome of ``asset`` has been set."""
        result: bool = await self.call("is_settled", [rpc.w_asset(asset), cid], bool)
        return result

    async def tx_count(self, operation: str | None = None) -> int:
        """How many transactions succeeded on the served ledger (of one ``operation``)."""
        result: int = await self.call("tx_count", [operation], int)
        return result

    async def mint(self, address: Address, asset: Asset, amount: int) -> None:
        """The served ledger's faucet."""
        await self.call("mint", [address.raw, rpc.w_asset(asset), rpc.big(amount)], None)

    async def deposit(self, sender: Address, asset: Asset, fid: bytes, amount: int) -> None:
        """:meth:`SimLedger.deposit` on the served ledger, logged in as ``sender``.

        Raises:
            LedgerAuthError: ``sender`` was not given to :meth:`add_account`.
        """
        args = [sender.raw, rpc.w_asset(asset), fid, rpc.big(amount)]
        await self._act_as(sender, "deposit", args)

    async def register(
        self, channel: SignedState, sub_channels: Sequence[SignedState] = ()
    ) -> None:
        """:meth:`SimLedger.register` on the served ledger."""
        args = [rpc.w_signed(channel), [rpc.w_signed(s) for s in sub_channels]]
        await self.call("register", args, None)

    async def progress(
        self, params: Params, old_state: State, new_state: State, actor_idx: int, sig: bytes
    ) -> None:
        """:meth:`SimLedger.progress` on the served ledger."""
        args = [
            rpc.w_params(params),
            rpc.w_state(old_state),
            rpc.w_state(new_state),
            actor_idx,
            sig,
        ]
        await self.call("progress", args, None)

    async def conclude(
        self, params: Params, state: State, sub_states: Sequence[State] = ()
    ) -> None:
        """:meth:`SimLedger.conclude` on the served ledger."""
        args = [rpc.w_params(params), rpc.w_state(state), rpc.w_states(sub_states)]
        await self.call("conclude", args, None)

    async def conclude_final(self, params: Params, state: State, sigs: Sequence[bytes]) -> None:
        """:meth:`SimLedger.conclude_final` on the served ledger."""
        args = [rpc.w_params(params), rpc.w_state(state), list(sigs)]
        await self.call("conclude_final", args, None)

    async def withdraw(self, auth: WithdrawalAuth, sig: bytes) -> None:
        """:meth:`SimLedger.withdraw` on the served ledger, logged in as the participant.

        Raises:
            LedgerAuthError: ``auth.participant`` was not given to :meth:`add_account`.
        """
        await self._act_as(auth.participant, "withdraw", [rpc.w_auth(auth), sig])

    async def subscribe(self, cid: bytes) -> EventSubscription:
        """Events of channel ``cid`` pushed by the server: the most recent past one first."""
        await self.connect()
        sub_id = next(self._ids)
        sub = RemoteEventSubscription(self, sub_id, cid)
        # Registered before asking, so no pushed event can arrive for an unknown ID.
        self._subs[sub_id] = sub
        try:
            await self._call("subscribe", [sub_id, cid], None)
        except BaseException:
            self._subs.pop(sub_id, None)
            raise
        return sub

    async def unsubscribe(self, sub: RemoteEventSubscription) -> None:
        """Stop delivering to ``sub`` (called by the subscription when it closes)."""
        if self._subs.pop(sub.sub_id, None) is None or not self.connected:
            return
        with contextlib.suppress(rpc.LedgerConnectionError):
            await self._call("unsubscribe", [sub.sub_id], None)

    async def wait_holdings(self, seen: Mapping[HoldingKey, int], until: int) -> bool:
        """:meth:`SimLedger.wait_holdings`, waited for on the server."""
        keys = [[rpc.w_asset(a), fid, rpc.big(v)] for (a, fid), v in seen.items()]
        result: bool = await self.call("wait_holdings", [keys, rpc.big(until)], bool)
        return result

    def __repr__(self) -> str:
        return f"RemoteLedger({self.url})"
