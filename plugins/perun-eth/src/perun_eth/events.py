"""Adjudicator events by polling logs, and timeouts in block time.

One :class:`LogPoller` per chain polls ``eth_getLogs`` for the adjudicator's ``ChannelUpdate``
events in block ranges of at most :data:`MAX_RANGE` blocks, only up to
``head - confirmations + 1``, and hands each log to the subscriptions of its channel, which drop
logs flagged ``removed``, deduplicate by ``(transaction hash, log index)`` and deliver in chain
order. The state of an event is reconstructed from the calldata of the transaction that
emitted it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

from eth_abi.abi import decode as abi_decode

from perun_core.channel.params import Params
from perun_core.channel.state import State
from perun_core.interfaces import EventSubscription, Timeout
from perun_core.interfaces.adjudicator import (
    AdjudicatorEvent,
    ConcludedEvent,
    ProgressedEvent,
    QueuedChannelEvents,
    RegisteredEvent,
)
from perun_core.queues import ClosableQueue
from perun_eth import bindings as b
from perun_eth.chain import EthChain
from perun_eth.encoding import channel_id, hash_state

log = logging.getLogger("perun.eth")

MAX_RANGE: Final = 2000
"""The most blocks one ``eth_getLogs`` request covers."""


class BlockTimeout(Timeout):
    """A deadline in block time: elapsed once the latest block's timestamp reaches it."""

    __slots__ = ("_chain", "_deadline")

    def __init__(self, chain: EthChain, deadline: int) -> None:
        self._chain = chain
        self._deadline = deadline

    @property
    def deadline(self) -> int:
        """The deadline (a block timestamp, seconds)."""
        return self._deadline

    async def is_elapsed(self) -> bool:
        """Whether the latest block's timestamp is at or past the deadline."""
        return await self._chain.node.timestamp() >= self._deadline

    async def wait(self) -> None:
        """Poll new blocks until one is at or past the deadline (needs blocks to be mined)."""
        interval = self._chain.node.options.poll_interval
        while not await self.is_elapsed():  # noqa: ASYNC110 - block time moves only with new blocks: polling the node is the only way
            await asyncio.sleep(interval)

    def __repr__(self) -> str:
        return f"BlockTimeout({self._deadline})"


def _confirmed_head_of(head: int, confirmations: int) -> int:
    return max(0, head - max(1, confirmations) + 1)


def _ordered(logs: list[Any]) -> list[Any]:
    """Live logs (not ``removed``) in chain order."""
    live = [lg for lg in logs if not lg.get("removed", False)]
    return sorted(live, key=lambda lg: (int(lg["blockNumber"]), int(lg["logIndex"])))


class LogPoller:
    """One ``eth_getLogs`` poll per interval for every subscription of a chain.

    Polls the adjudicator's ``ChannelUpdate`` events of all channels and hands each log to
    the subscriptions of its channel, so watching many channels costs one request per
    interval, not one per channel. Runs while it has subscribers.
    """

    def __init__(self, chain: EthChain) -> None:
        self._chain = chain
        self._subs: dict[bytes, set[EthSubscription]] = {}
        self._cursor: int | None = None  # the next block to read
        self._lock = asyncio.Lock()  # joining and polling exclude each other
        self._task: asyncio.Task[None] | None = None

    async def join(self, sub: EthSubscription, start: int) -> None:
        """Deliver ``sub``'s channel's events from block ``start`` on."""
        async with self._lock:
            if self._cursor is None:
                self._cursor = start
            elif start < self._cursor:
                # The poller is ahead: fetch what it already passed, for this channel only.
                await sub.catch_up(start, self._cursor - 1)
            sub.min_block = start
            sub.poller = self
            self._subs.setdefault(sub.channel_id, set()).add(sub)
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run(), name="perun-eth-log-poller")

    def leave(self, sub: EthSubscription) -> None:
        """Stop delivering to ``sub``; the last one leaving stops the polling."""
        subs = self._subs.get(sub.channel_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.channel_id]
        if not self._subs and self._task is not None:
            self._task.cancel()
            self._task = None
            self._cursor = None

    async def close(self) -> None:
        """Stop polling (the backend is closing)."""
        self._subs.clear()
        task, self._task, self._cursor = self._task, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @property
    def subscriptions(self) -> int:
        """How many subscriptions are served."""
        return sum(len(s) for s in self._subs.values())

    async def _run(self) -> None:
        node = self._chain.node
        interval = node.options.poll_interval
        while True:
            try:
                async with self._lock:
                    await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the node hiccuped: keep watching
                log.warning("event polling failed: %s", e)
            await asyncio.sleep(interval)

    async def _poll_once(self) -> None:
        node = self._chain.node
        head = _confirmed_head_of(await node.block_number(), node.options.confirmations)
        assert self._cursor is not None
        while self._cursor <= head and self._subs:
            to = min(head, self._cursor + MAX_RANGE - 1)
            logs = await node.get_logs(
                {
                    "address": self._chain.adjudicator_hex,
                    "topics": ["0x" + b.CHANNEL_UPDATE_TOPIC.hex()],
                    "fromBlock": self._cursor,
                    "toBlock": to,
                }
            )
            for lg in _ordered(logs):
                cid = bytes(lg["topics"][1])
                for sub in list(self._subs.get(cid, ())):
                    if int(lg["blockNumber"]) >= sub.min_block:
                        await sub.accept(lg)
            self._cursor = to + 1


class EthSubscription(EventSubscription):
    """The ``ChannelUpdate`` events of one channel, oldest first after the latest past one.

    Create with :meth:`start`. New events come from the chain's shared :class:`LogPoller`.

    Args:
        chain: the deployment.
        channel_id: the channel.
        known_states: gives states the client holds for the channel (used when an event's
            transaction did not call the adjudicator directly).
    """

    def __init__(
        self,
        chain: EthChain,
        channel_id: bytes,
        known_states: Callable[[], list[State]] | None = None,
        sink: Callable[[AdjudicatorEvent], None] | None = None,
    ) -> None:
        self._chain = chain
        self.channel_id = channel_id
        self._cid = channel_id
        self._known = known_states
        self._queue: ClosableQueue[AdjudicatorEvent] = ClosableQueue()
        # Where events go: this subscription's queue, or a shared stream's (EthChannelEvents).
        self._sink: Callable[[AdjudicatorEvent], None] = sink or self._queue.put
        self._seen: set[tuple[bytes, int]] = set()
        self.min_block = 0
        self.poller: LogPoller | None = None

    @classmethod
    async def start(
        cls,
        chain: EthChain,
        channel_id: bytes,
        known_states: Callable[[], list[State]] | None = None,
        sink: Callable[[AdjudicatorEvent], None] | None = None,
    ) -> EthSubscription:
        """Subscribe: queue the latest past event (if any), then poll for new ones.

        With ``sink``, events go there instead of to :meth:`next`.
        """
        sub = cls(chain, channel_id, known_states, sink)
        node = chain.node
        head = _confirmed_head_of(await node.block_number(), node.options.confirmations)
        past = await chain.dispute(channel_id, block=head)
        if past is not None:
            await sub._deliver_latest_before(head)
        poller = chain.log_poller
        if poller is None:
            poller = chain.log_poller = LogPoller(chain)
        assert isinstance(poller, LogPoller)
        await poller.join(sub, head + 1)
        return sub

    def _filter(self, frm: int, to: int) -> dict[str, Any]:
        return {
            "address": self._chain.adjudicator_hex,
            "topics": ["0x" + b.CHANNEL_UPDATE_TOPIC.hex(), "0x" + self._cid.hex()],
            "fromBlock": frm,
            "toBlock": to,
        }

    async def _deliver_latest_before(self, head: int) -> None:
        """Scan back from ``head`` in chunks to the latest event of the channel."""
        lowest = self._chain.from_block
        to = head
        while to >= lowest:
            frm = max(lowest, to - MAX_RANGE + 1)
            logs = _ordered(await self._chain.node.get_logs(self._filter(frm, to)))
            if logs:
                for lg in logs:  # everything up to the latest counts as seen
                    self._seen.add(_log_key(lg))
                ev = await self._event(logs[-1])
                if ev is not None:
                    self._sink(ev)
                return
            to = frm - 1

    async def catch_up(self, frm: int, to: int) -> None:
        """Deliver this channel's events of blocks ``frm..to`` (the poller passed them)."""
        while frm <= to:
            end = min(to, frm + MAX_RANGE - 1)
            for lg in _ordered(await self._chain.node.get_logs(self._filter(frm, end))):
                await self.accept(lg)
            frm = end + 1

    async def accept(self, lg: Any) -> None:
        """Queue the event of log ``lg`` unless it was delivered already."""
        if self._queue.closed:
            return
        key = _log_key(lg)
        if key in self._seen:
            return
        self._seen.add(key)
        ev = await self._event(lg)
        if ev is not None:
            self._sink(ev)

    async def _event(self, lg: Any) -> AdjudicatorEvent | None:
        version, phase, timeout = abi_decode(["uint64", "uint8", "uint64"], bytes(lg["data"]))
        to = BlockTimeout(self._chain, int(timeout))
        if phase == b.Phase.CONCLUDED:
            return ConcludedEvent(self._cid, int(version), to)
        state, actor = await self._reconstruct(lg, int(version))
        if phase == b.Phase.FORCEEXEC:
            return ProgressedEvent(self._cid, int(version), to, state, actor or 0)
        return RegisteredEvent(self._cid, int(version), to, state)

    async def _reconstruct(self, lg: Any, version: int) -> tuple[State | None, int | None]:
        """The state the event's transaction put on chain, from its calldata."""
        with contextlib.suppress(Exception):
            tx = await self._chain.node.transaction(lg["transactionHash"])
            if str(tx["to"]).lower() == self._chain.adjudicator_hex.lower():
                for called in b.states_in_calldata(bytes(tx["input"])):
                    st = called.state
                    if st.channel_id == self._cid and st.version == version:
                        return st, called.actor_idx
        # Not a direct call (e.g. through a wallet contract): match the stored hash against
        # the states the client holds.
        if self._known is not None:
            with contextlib.suppress(Exception):
                d = await self._chain.dispute(self._cid)
                for st in self._known():
                    if d is not None and hash_state(st) == d.state_hash:
                        return st, None
        log.warning(
            "event of 0x%s v%d: state not reconstructable; delivering version only",
            self._cid.hex()[:8],
            version,
        )
        return None, None

    async def next(self) -> AdjudicatorEvent | None:
        """The next event, or ``None`` once closed."""
        return await self._queue.get()

    def detach(self) -> None:
        """Stop receiving events (synchronous part of :meth:`close`)."""
        if self._queue.closed:
            return
        self._queue.close()
        if self.poller is not None:
            self.poller.leave(self)

    async def close(self) -> None:
        """Stop the subscription; a pending :meth:`next` returns ``None``."""
        self.detach()


def _log_key(lg: Any) -> tuple[bytes, int]:
    return bytes(lg["transactionHash"]), int(lg["logIndex"])


class EthChannelEvents(QueuedChannelEvents):
    """Many channels' events in one stream, all fed by the chain's one :class:`LogPoller`.

    A channel costs one small subscription record (no task of its own once its latest past
    event was looked up).
    """

    def __init__(self, chain: EthChain) -> None:
        super().__init__()
        self._chain = chain
        self._subs: dict[bytes, EthSubscription] = {}
        self._starting: dict[bytes, asyncio.Task[None]] = {}

    def add(self, params: Params) -> None:
        """Start delivering the events of ``params``' channel."""
        cid = params.id or channel_id(params)
        if self._closed or cid in self._subs or cid in self._starting:
            return
        self._starting[cid] = asyncio.ensure_future(self._start(cid))

    async def _start(self, cid: bytes) -> None:
        try:
            sub = await EthSubscription.start(self._chain, cid, sink=lambda ev: self.push(cid, ev))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event subscription of channel 0x%s failed", cid.hex()[:12])
            return
        finally:
            self._starting.pop(cid, None)
        if self._closed:
            await sub.close()
        else:
            self._subs[cid] = sub

    def remove(self, channel_id: bytes) -> None:
        """Stop delivering the events of one channel."""
        task = self._starting.pop(channel_id, None)
        if task is not None:
            task.cancel()
        sub = self._subs.pop(channel_id, None)
        if sub is not None:
            sub.detach()

    async def close(self) -> None:
        """Stop every channel's stream."""
        if not self._end():
            return
        tasks = list(self._starting.values())
        self._starting.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sub in self._subs.values():
            sub.detach()
        self._subs.clear()
