"""The watchtower service: takes clients' signed states, keeps them durably, refutes.

One :class:`Watchtower` serves one wire identity on a bus (perun-tcp: authenticated
connections), keeps one record per watched channel in a key-value store (LevelDB or RocksDB)
and follows the ledger with the core's
:class:`~perun_core.watcher.local.LocalWatcher`, the same refutation logic a client runs
in-process, sending refutations from the tower's own account. It holds no client key: it can
only register states that every participant signed.

Per request (in arrival order for one client):

1. rate quota (before any expensive work), 2. the checks of :mod:`perun_watchtower.checks`,
3. channel and byte quotas for a new or larger record, 4. the durable write (writes of one
channel are chained, so a newer version never gets overwritten by an older one),
5. the state goes to the watcher, 6. :class:`~perun_core.watcher.tower_wire.WatchAck`.
Any refusal is a :class:`~perun_core.watcher.tower_wire.WatchRefused` with the code of its
typed error; the tower keeps what it held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from perun_core.channel.types import Address
from perun_core.errors import (
    NotAParticipantError,
    PersistenceError,
    StaleWatchStateError,
    TowerFailureError,
    WatchRefusedError,
)
from perun_core.interfaces.adjudicator import AdjudicatorEvent, ConcludedEvent, RegisteredEvent
from perun_core.interfaces.bus import Bus, Subscription
from perun_core.interfaces.chain import ChainBackend
from perun_core.interfaces.wallet import Account
from perun_core.logging import log_extra
from perun_core.persistence.kv import KeyValueStore
from perun_core.watcher import tower_wire
from perun_core.watcher.local import LocalWatcher
from perun_core.watcher.tower_wire import (
    StopWatching,
    StopWatchingAck,
    WatchAck,
    WatchRefused,
    WatchRequest,
)
from perun_core.wire.messages import Envelope, Message
from perun_watchtower.checks import check_request
from perun_watchtower.config import TowerConfig
from perun_watchtower.quota import Quotas
from perun_watchtower.records import TowerRecord, TowerStore, encode_record

log = logging.getLogger("perun.watchtower")


class _Entry:
    """The in-memory index of one record (the state itself lives in the watcher)."""

    __slots__ = ("durable", "owner", "parent", "pending", "size", "write")

    def __init__(self, owner: Address, parent: bytes | None) -> None:
        self.owner = owner
        self.parent = parent
        self.durable = -1  # the version stored durably
        self.pending = -1  # the newest version accepted (its write may still run)
        self.size = 0  # stored bytes charged to the owner
        self.write: asyncio.Future[None] | None = None  # the channel's last write


@dataclass(slots=True)
class TowerStats:
    """Counters of a running tower (for logs, tests and the benchmark)."""

    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    registrations_seen: int = 0
    stopped: int = 0
    restored: int = 0
    restore_seconds: float = 0.0


class Watchtower:
    """A remote watchtower serving clients over a bus.

    Args:
        backend: the chain backend (channel IDs, signatures, the adjudicator).
        account: the tower's own account: its wire identity and who pays for refutations.
        bus: the bus it listens on (its subscription is for ``account.address``).
        store: where records go; durable stores acknowledge only fsynced writes.
        config: quotas and limits.

    Use ``async with Watchtower(...) as tower:``; :meth:`start` restores every record and
    resumes watching (the ledger subscription replays the latest event of each channel, so
    a stale registration made while the tower was down is refuted on start).
    """

    def __init__(
        self,
        *,
        backend: ChainBackend,
        account: Account,
        bus: Bus,
        store: KeyValueStore,
        config: TowerConfig | None = None,
    ) -> None:
        self.backend = backend
        self.account = account
        self.address: Address = account.address
        self.bus = bus
        self.store = TowerStore(store)
        self.config = config if config is not None else TowerConfig()
        self.quotas = Quotas(self.config)
        self.stats = TowerStats()
        self.watcher = LocalWatcher(
            backend.adjudicator(account), self._on_event, conclude_final=False
        )
        self._allowed = frozenset(backend.parse_address(a) for a in self.config.clients)
        self._entries: dict[bytes, _Entry] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._sub: Subscription | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore every record, start watching them and serve requests."""
        tower_wire.register()
        t0 = time.perf_counter()
        n = 0
        async for rec, size in self.store.all():
            self._restore(rec, size)
            n += 1
        self.stats.restored = n
        self.stats.restore_seconds = time.perf_counter() - t0
        log.info(
            "watchtower %s restored %d channels in %.2fs", self.address, n, time.perf_counter() - t0
        )
        self._sub = self.bus.subscribe(self.address)
        self._reader = asyncio.create_task(self._read(self._sub), name="perun-watchtower")

    def _restore(self, rec: TowerRecord, size: int) -> None:
        req = rec.request
        e = self._entries[rec.channel_id] = _Entry(rec.owner, req.parent)
        e.durable = e.pending = rec.version
        e.size = size
        self.quotas.charge(rec.owner, 1, size)
        self.watcher.start_watching(req.params, rec.idx, req.tx, parent=req.parent)

    async def close(self) -> None:
        """Stop serving and watching; close the store (records stay)."""
        if self._closed:
            return
        self._closed = True
        if self._sub is not None:
            self._sub.close()
        if self._reader is not None:
            self._reader.cancel()
        await asyncio.gather(*(x for x in [self._reader] if x), return_exceptions=True)
        # Writes in flight finish (their acknowledgements may still go out).
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.watcher.close()
        await self.store.close()

    async def __aenter__(self) -> Watchtower:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- status -------------------------------------------------------------------------------

    def __len__(self) -> int:
        """How many channels the tower watches."""
        return len(self._entries)

    def held_version(self, channel_id: bytes) -> int | None:
        """The version stored durably for a channel (``None``: not watched)."""
        e = self._entries.get(channel_id)
        return None if e is None or e.durable < 0 else e.durable

    @property
    def refutations(self) -> int:
        """How many refutations the tower sent."""
        return self.watcher.refutations

    # --- requests -----------------------------------------------------------------------------

    async def _read(self, sub: Subscription) -> None:
        if sub.set_receiver(self._receive):
            while await sub.next() is not None:
                pass
            return
        while (env := await sub.next()) is not None:
            self._receive(env)

    def _receive(self, env: Envelope) -> None:
        try:
            msg = env.msg
            if isinstance(msg, WatchRequest):
                self._on_watch(env.sender, msg)
            elif isinstance(msg, StopWatching):
                self._on_stop(env.sender, msg)
        except Exception:  # a bug or hostile input must never stop the tower
            log.exception("failed to handle %s from %s", type(env.msg).__name__, env.sender)

    def _on_watch(self, sender: Address, req: WatchRequest) -> None:
        cid = req.params.id
        try:
            self._admit_sender(sender, cid)
            self.quotas.admit_request(sender, cid)
            e = self._entries.get(cid)
            if e is not None and e.durable < req.tx.state.version <= e.pending:
                # A resend of a state whose write still runs: answer once it is durable.
                self._chain(cid, e, self._ack_when_durable(sender, req, e))
                return
            parent_known = req.parent is None or req.parent in self._entries
            idx = check_request(
                self.backend,
                self.address,
                sender,
                req,
                -1 if e is None else e.pending,
                parent_known=parent_known,
            )
            rec = TowerRecord(e.owner if e is not None else sender, idx, req)
            if e is None:
                self.quotas.admit_growth(sender, 1, 0, cid)
                e = self._entries[cid] = _Entry(sender, req.parent)
                self.quotas.charge(sender, 1, 0)
            e.pending = req.tx.state.version
        except WatchRefusedError as err:
            self._refuse(sender, req.request_id, cid, err)
            return
        self._chain(cid, e, self._write(sender, req, rec, e))

    def _admit_sender(self, sender: Address, cid: bytes) -> None:
        if self._allowed and sender not in self._allowed:
            raise NotAParticipantError(f"{sender} is not a client of this tower", channel_id=cid)

    def _chain(self, cid: bytes, e: _Entry, coro: Any) -> None:
        """Run ``coro`` after the channel's previous write (one channel's writes in order)."""
        prev = e.write

        async def after() -> None:
            if prev is not None:
                await asyncio.gather(prev, return_exceptions=True)
            await coro

        task = asyncio.ensure_future(after())
        e.write = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, sender: Address, req: WatchRequest, rec: TowerRecord, e: _Entry) -> None:
        cid = rec.channel_id
        version = rec.version
        try:
            if version <= e.durable:  # overtaken (cannot happen in order, kept for safety)
                raise StaleWatchStateError(f"the tower holds v{e.durable}", channel_id=cid)
            value = encode_record(rec)
            size = len(value)
            self.quotas.admit_growth(e.owner, 0, size - e.size, cid)
            await self.store.put(cid, value)
        except (WatchRefusedError, PersistenceError) as err:
            if isinstance(err, PersistenceError):
                log.error("watchtower store failed: %s", err, extra=log_extra(channel_id=cid))
                err = TowerFailureError(
                    f"the tower could not store the state: {err}", channel_id=cid
                )
            e.pending = max(e.durable, self._pending_after_failure(e, version))
            if e.durable < 0 and e.pending < 0:
                self._forget(cid, e)
            self._refuse(sender, req.request_id, cid, err)
            return
        self.quotas.charge(e.owner, 0, size - e.size)
        e.size = size
        e.durable = version
        # newest wins; a sub-channel joins its tree (a stale registration in it is refuted
        # by registering the tree from its root)
        self.watcher.start_watching(req.params, rec.idx, req.tx, parent=req.parent)
        self.stats.accepted += 1
        await self._send(sender, WatchAck(req.request_id, cid, version))

    @staticmethod
    def _pending_after_failure(e: _Entry, version: int) -> int:
        # A newer accepted version may be queued behind this one; otherwise fall back.
        return e.pending if e.pending > version else e.durable

    async def _ack_when_durable(self, sender: Address, req: WatchRequest, e: _Entry) -> None:
        version = req.tx.state.version
        cid = req.params.id
        if e.durable >= version:
            await self._send(sender, WatchAck(req.request_id, cid, e.durable))
        else:
            err = TowerFailureError("the tower could not store the state", channel_id=cid)
            self._refuse(sender, req.request_id, cid, err)

    def _on_stop(self, sender: Address, msg: StopWatching) -> None:
        cid = msg.channel_id
        try:
            self._admit_sender(sender, cid)
            self.quotas.admit_request(sender, cid)
        except WatchRefusedError as err:
            self._refuse(sender, msg.request_id, cid, err)
            return
        e = self._entries.get(cid)
        if e is None:
            self._spawn(self._send(sender, StopWatchingAck(msg.request_id, cid)))
            return
        if sender != e.owner:
            # Not even the other participant: a cheating peer would stop the watch first.
            # (A concluded channel's record goes by itself.)
            refusal = NotAParticipantError(
                "only the client that handed the channel to the tower may stop watching it",
                channel_id=cid,
            )
            self._refuse(sender, msg.request_id, cid, refusal)
            return
        self._chain(cid, e, self._stop(sender, msg, e))

    async def _stop(self, sender: Address, msg: StopWatching, e: _Entry) -> None:
        cid = msg.channel_id
        try:
            await self.store.delete(cid)
        except PersistenceError as err:
            self._refuse(sender, msg.request_id, cid, TowerFailureError(str(err), channel_id=cid))
            return
        self._forget(cid, e)
        await self.watcher.stop_watching(cid)
        self.stats.stopped += 1
        await self._send(sender, StopWatchingAck(msg.request_id, cid))

    def _forget(self, cid: bytes, e: _Entry) -> None:
        if self._entries.get(cid) is e:
            del self._entries[cid]
            self.quotas.charge(e.owner, -1, -e.size)

    def _refuse(self, to: Address, request_id: int, cid: bytes, err: WatchRefusedError) -> None:
        name = type(err).__name__
        self.stats.refused[name] = self.stats.refused.get(name, 0) + 1
        log.info("refused a request of %s: %s", to, err, extra=log_extra(channel_id=cid, peer=to))
        reason = str(err).encode()[:1000].decode("utf-8", "ignore")
        self._spawn(self._send(to, WatchRefused(request_id, cid, err.code, reason)))

    async def _send(self, to: Address, msg: Message) -> None:
        try:
            await self.bus.publish(Envelope(self.address, to, msg))
        except Exception as e:  # noqa: BLE001 - the client resends; the record is kept
            log.info("cannot answer %s: %s", to, e, extra=log_extra(peer=to))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the ledger ---------------------------------------------------------------------------

    def _on_event(self, cid: bytes, ev: AdjudicatorEvent) -> None:
        """The watcher's sink: log registrations; forget concluded channels."""
        if isinstance(ev, RegisteredEvent):
            self.stats.registrations_seen += 1
            e = self._entries.get(cid)
            log.warning(
                "channel 0x%s: v%d registered on the ledger (the tower holds v%d)",
                cid.hex()[:12],
                ev.version,
                -1 if e is None else e.durable,
                extra=log_extra(channel_id=cid, version=ev.version),
            )
        elif isinstance(ev, ConcludedEvent):
            e = self._entries.get(cid)
            if e is not None:
                # Concluded: nothing is left to refute; free the client's quota.
                self._chain(cid, e, self._concluded(cid, e))

    async def _concluded(self, cid: bytes, e: _Entry) -> None:
        try:
            await self.store.delete(cid)
        except PersistenceError as err:
            log.error("cannot delete the concluded channel's record: %s", err)
            return
        self._forget(cid, e)
        await self.watcher.stop_watching(cid)


__all__ = ["TowerStats", "Watchtower"]
