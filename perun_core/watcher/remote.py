"""The client's side of a remote watchtower (see docs/watchtower.md).

A :class:`RemoteWatcher` implements the :class:`~perun_core.watcher.base.Watcher` interface
by handing every newly enabled, fully signed state to a watchtower service over the perun
bus. The tower stores it durably and acknowledges it; from that acknowledgement on the state
is *protected*: the tower refutes any older registration even while this client is offline.

Delivery: at least once, newest wins. Each channel has at most one request in flight; when
it is answered (or times out) the newest state is sent if it is newer than what the tower
acknowledged. A reconnect to the tower resends every unacknowledged state. A state the tower
refuses is not retried (the refusal is typed and kept in :attr:`RemoteWatcher.refusals`); a
newer state is sent as usual. When a channel has gone unprotected for longer than
``warn_share`` of its challenge duration, a warning is logged (once per episode) and the
channel shows in :meth:`RemoteWatcher.unprotected`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from perun_core.channel.types import Address
from perun_core.errors import (
    WATCH_REFUSALS,
    ConfigError,
    PerunError,
    StaleWatchStateError,
    TowerUnavailableError,
    WatchRefusedError,
    WatchtowerError,
)
from perun_core.logging import log_extra
from perun_core.watcher import tower_wire
from perun_core.watcher.base import Watcher
from perun_core.watcher.tower_wire import (
    StopWatching,
    StopWatchingAck,
    WatchAck,
    WatchRefused,
    WatchRequest,
)
from perun_core.wire.messages import Envelope, Message

if TYPE_CHECKING:
    from perun_core.channel.params import Params
    from perun_core.channel.state import Transaction
    from perun_core.client.client import Client
    from perun_core.interfaces.chain import ChainBackend

log = logging.getLogger("perun.watcher.remote")

DEFAULT_ACK_TIMEOUT = 10.0
DEFAULT_WARN_SHARE = 0.5


class _Handed:
    """What we handed the tower for one channel."""

    __slots__ = (
        "acked",
        "idx",
        "latest",
        "params",
        "parent",
        "pumping",
        "refused",
        "since",
        "warned",
    )

    def __init__(self, params: Params, idx: int, tx: Transaction, parent: bytes | None) -> None:
        self.params = params
        self.idx = idx
        self.parent = parent
        self.latest = tx
        self.acked = -1  # the newest version the tower acknowledged (-1: none)
        self.refused = -1  # the version the tower last refused (-1: none)
        self.pumping = False  # a sender task runs for this channel
        self.since: float | None = time.monotonic()  # unprotected since (None: protected)
        self.warned = False


class RemoteWatcher(Watcher):
    """Hands a client's states to one remote watchtower.

    Args:
        tower: the tower's wire address.
        endpoint: where it listens (``tcp://HOST:PORT``), added to the client's bus address
            book; ``None`` if the bus knows it already.
        ack_timeout: seconds to wait for an answer before sending again.
        warn_share: warn when a channel has been unprotected longer than this share of its
            challenge duration (wall-clock seconds against ledger seconds).
        check_interval: seconds between checks for that warning.

    Pass it to the client: ``Client(..., watchers=[RemoteWatcher(tower, endpoint)])``.
    """

    def __init__(
        self,
        tower: Address,
        endpoint: str | None = None,
        *,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        warn_share: float = DEFAULT_WARN_SHARE,
        check_interval: float = 1.0,
    ) -> None:
        if ack_timeout <= 0 or not 0 < warn_share <= 1 or check_interval <= 0:
            raise ConfigError(
                "RemoteWatcher: ack_timeout and check_interval must be positive and "
                f"warn_share in (0, 1]; got {ack_timeout}, {check_interval}, {warn_share}"
            )
        self.tower = tower
        self.endpoint = endpoint
        self.ack_timeout = ack_timeout
        self.warn_share = warn_share
        self.check_interval = check_interval
        self.refusals: dict[bytes, WatchRefusedError] = {}
        """The last refusal per channel (cleared when a newer state is acknowledged)."""
        self.warnings = 0  # how many unprotected-too-long warnings were logged
        self._client: Client | None = None
        self._chans: dict[bytes, _Handed] = {}
        self._waiting: dict[int, asyncio.Future[Message]] = {}
        self._next_id = 1
        self._delegation: tuple[Address, bytes] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._monitor: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()  # set by a (re)connect to the tower
        self._closed = False

    def __repr__(self) -> str:
        return f"RemoteWatcher({self.tower.short()}, {len(self._chans)} channels)"

    # --- Watcher ----------------------------------------------------------------------------

    def attach(self, client: Client) -> None:
        """Bind to ``client``: its bus, identity and incoming messages."""
        if self._client is not None:
            raise WatchtowerError(f"this RemoteWatcher of {self.tower} is attached already")
        tower_wire.register()
        self._client = client
        if self.endpoint is not None:
            client.bus.add_peer(self.tower, self.endpoint)
        for kind in (WatchAck, WatchRefused, StopWatchingAck):
            client.add_message_handler(kind, self._on_answer)
        client.bus.on_connect(client.address, self._on_connect)

    def is_watching(self, channel_id: bytes) -> bool:
        """Whether the channel's states are handed to the tower."""
        return channel_id in self._chans

    def start_watching(
        self, params: Params, idx: int, tx: Transaction, *, parent: bytes | None = None
    ) -> None:
        """Hand the tower this channel's state (sent in the background); a sub-channel's
        parent is handed over before it."""
        self._hand(params, idx, tx, parent)

    def publish(self, channel_id: bytes, tx: Transaction) -> None:
        """Hand the tower a newer state of a channel it watches (newest wins)."""
        h = self._chans.get(channel_id)
        if h is not None:
            self._hand(h.params, h.idx, tx, h.parent)

    async def stop_watching(self, channel_id: bytes) -> None:
        """Tell the tower to forget the channel (in the background; best effort)."""
        if self._chans.pop(channel_id, None) is not None and not self._closed:
            self._spawn(self._stop(channel_id))

    async def close(self) -> None:
        """Stop sending (the tower keeps watching what it acknowledged)."""
        self._closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for fut in self._waiting.values():
            fut.cancel()
        self._waiting.clear()

    def protected_version(self, channel_id: bytes) -> int | None:
        """The newest version the tower acknowledged for the channel (``None``: none)."""
        h = self._chans.get(channel_id)
        return None if h is None or h.acked < 0 else h.acked

    # --- status -----------------------------------------------------------------------------

    def unprotected(self) -> dict[bytes, float]:
        """Channels whose latest state the tower has not acknowledged, with the seconds
        since they became unprotected."""
        now = time.monotonic()
        return {cid: now - h.since for cid, h in self._chans.items() if h.since is not None}

    async def wait_protected(self, channel_id: bytes, version: int, timeout: float) -> None:  # noqa: ASYNC109 - every wait has a deadline; this one takes it as an argument
        """Wait until the tower acknowledged ``version`` (or newer) of the channel.

        Raises:
            WatchRefusedError: the tower refused that state (the leaf says why).
            TowerUnavailableError: no acknowledgement within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            h = self._chans.get(channel_id)
            if h is not None and h.acked >= version:
                return
            refused = self.refusals.get(channel_id)
            if refused is not None and h is not None and h.refused >= version:
                raise refused
            if loop.time() >= end:
                raise TowerUnavailableError(
                    f"tower {self.tower} did not acknowledge v{version} within {timeout:g}s",
                    channel_id=channel_id,
                )
            await asyncio.sleep(0.01)

    # --- sending ----------------------------------------------------------------------------

    def _hand(self, params: Params, idx: int, tx: Transaction, parent: bytes | None) -> None:
        if self._closed or self._client is None:
            return
        h = self._chans.get(params.id)
        if h is None:
            h = self._chans[params.id] = _Handed(params, idx, tx, parent)
        elif tx.state.version > h.latest.state.version:
            h.latest = tx
            if h.since is None:
                h.since = time.monotonic()
                h.warned = False
        else:
            return
        if self._monitor is None:
            self._monitor = asyncio.ensure_future(self._watch_protection())
            self._tasks.add(self._monitor)
        if not h.pumping:
            h.pumping = True
            self._spawn(self._pump(params.id, h))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(self, cid: bytes, h: _Handed) -> None:
        """Send the channel's newest state until the tower acknowledged it (or refused it)."""
        backoff = 0.05
        try:
            while not self._closed and self._chans.get(cid) is h:
                tx = h.latest
                version = tx.state.version
                if version <= h.acked:
                    return
                if h.refused == version:
                    return  # refused: wait for a newer state
                try:
                    answer = await self._request(self._watch_request(h, tx))
                except (TimeoutError, PerunError) as e:
                    # No answer (tower down, connection lost): resend after a pause; a
                    # reconnect resends at once.
                    log.info(
                        "tower %s: no acknowledgement of v%d (%s); retrying",
                        self.tower,
                        version,
                        e,
                        extra=log_extra(channel_id=cid, version=version),
                    )
                    await self._pause(backoff)
                    backoff = min(backoff * 2, self.ack_timeout)
                    continue
                backoff = 0.05
                if isinstance(answer, WatchAck):
                    self._acked(cid, h, answer.version)
                elif isinstance(answer, WatchRefused):
                    self._refused(cid, h, version, answer)
        finally:
            h.pumping = False

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the tower (re)connects meanwhile."""
        ev = self._connected
        ev.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), seconds)

    def _acked(self, cid: bytes, h: _Handed, version: int) -> None:
        if version > h.acked:
            h.acked = version
        if h.acked >= h.latest.state.version:
            h.since = None
            h.warned = False
            self.refusals.pop(cid, None)

    def _refused(self, cid: bytes, h: _Handed, version: int, answer: WatchRefused) -> None:
        cls = WATCH_REFUSALS.get(answer.refusal, WatchRefusedError)
        if cls is StaleWatchStateError:
            # The tower holds this version or a newer one (e.g. our earlier request's
            # acknowledgement was lost): it is protected.
            self._acked(cid, h, version)
            return
        err = cls(f"tower {self.tower} refused v{version}: {answer.reason}", channel_id=cid)
        h.refused = version
        self.refusals[cid] = err
        log.warning("%s", err, extra=log_extra(channel_id=cid, version=version))

    def _watch_request(self, h: _Handed, tx: Transaction) -> WatchRequest:
        participant, delegation = None, b""
        client = self._client
        assert client is not None
        me = h.params.participants[h.idx]
        if client.address != me:
            # Our wire identity is not the participant: prove that it may act for it.
            if self._delegation is None or self._delegation[0] != me:
                msg = tower_wire.delegation_message(self.tower, client.address)
                self._delegation = (me, client.account.sign(msg))
            participant, delegation = self._delegation
        return WatchRequest(0, h.params, tx, h.parent, participant, delegation)

    async def _request(self, msg: WatchRequest | StopWatching) -> Message:
        """Send ``msg`` with a fresh request ID and wait for its answer."""
        client = self._client
        assert client is not None
        rid = self._next_id
        self._next_id += 1
        if isinstance(msg, WatchRequest):
            msg = WatchRequest(rid, msg.params, msg.tx, msg.parent, msg.participant, msg.delegation)
        else:
            msg = StopWatching(rid, msg.channel_id)
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            await client.bus.publish(Envelope(client.address, self.tower, msg))
            return await asyncio.wait_for(fut, self.ack_timeout)
        finally:
            self._waiting.pop(rid, None)

    async def _stop(self, cid: bytes) -> None:
        for _ in range(3):
            try:
                await self._request(StopWatching(0, cid))
                return
            except (TimeoutError, PerunError) as e:
                log.info("tower %s: stop-watching not acknowledged: %s", self.tower, e)
                await self._pause(0.5)

    # --- incoming ---------------------------------------------------------------------------

    def _on_answer(self, env: Envelope) -> None:
        if env.sender != self.tower:
            return  # another tower's answer (each remote watcher sees them all)
        msg = env.msg
        rid = getattr(msg, "request_id", None)
        fut = self._waiting.get(rid) if isinstance(rid, int) else None
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def _on_connect(self, peer: Address) -> None:
        if peer != self.tower or self._closed:
            return
        self._connected.set()  # wakes pumps that wait to retry
        # Resend what the tower has not acknowledged (it may have lost our requests).
        for cid, h in list(self._chans.items()):
            if h.acked < h.latest.state.version and not h.pumping:
                h.pumping = True
                self._spawn(self._pump(cid, h))

    async def _watch_protection(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.check_interval)
            now = time.monotonic()
            for cid, h in list(self._chans.items()):
                if h.since is None or h.warned:
                    continue
                limit = self.warn_share * h.params.challenge_duration
                if now - h.since > limit:
                    h.warned = True
                    self.warnings += 1
                    log.warning(
                        "channel 0x%s: not protected by tower %s for %.0fs (over %.0f%% of "
                        "its %ds challenge duration); v%d is not acknowledged",
                        cid.hex()[:12],
                        self.tower,
                        now - h.since,
                        self.warn_share * 100,
                        h.params.challenge_duration,
                        h.latest.state.version,
                        extra=log_extra(channel_id=cid, version=h.latest.state.version),
                    )


def towers_from_config(table: Mapping[str, Any], backend: ChainBackend) -> list[RemoteWatcher]:
    """The remote watchers a ``[perun.watchtower]`` table configures.

    ::

        [perun.watchtower]
        towers = [{ address = "0x…", endpoint = "tcp://127.0.0.1:7100" }]
        ack_timeout = 10.0     # optional
        warn_share = 0.5       # optional

    Raises:
        ConfigError: the table is malformed.
    """
    cfg = table.get("watchtower")
    if cfg is None:
        return []
    if not isinstance(cfg, Mapping):
        raise ConfigError("perun.watchtower must be a table")
    unknown = sorted(set(cfg) - {"towers", "ack_timeout", "warn_share"})
    if unknown:
        raise ConfigError(f"perun.watchtower: unknown option(s) {', '.join(unknown)}")
    towers = cfg.get("towers", [])
    if not isinstance(towers, list):
        raise ConfigError("perun.watchtower.towers must be a list of tables")
    out = []
    for i, t in enumerate(towers):
        if not isinstance(t, Mapping) or not isinstance(t.get("address"), str):
            raise ConfigError(f"perun.watchtower.towers[{i}] needs an address (a string)")
        endpoint = t.get("endpoint")
        if endpoint is not None and not isinstance(endpoint, str):
            raise ConfigError(f"perun.watchtower.towers[{i}].endpoint must be a string")
        try:
            address = backend.parse_address(t["address"])
            out.append(
                RemoteWatcher(
                    address,
                    endpoint,
                    ack_timeout=float(cfg.get("ack_timeout", DEFAULT_ACK_TIMEOUT)),
                    warn_share=float(cfg.get("warn_share", DEFAULT_WARN_SHARE)),
                )
            )
        except (ValueError, TypeError) as e:
            raise ConfigError(f"perun.watchtower.towers[{i}]: {e}") from e
    return out


__all__ = ["RemoteWatcher", "towers_from_config"]
