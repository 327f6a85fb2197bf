"""Adjudicator events by polling logs (ETHEREUM.md §7.2), and timeouts in block time.

A subscription polls ``eth_getLogs`` for the channel's ``ChannelUpdate`` events in block ranges
of at most :data:`MAX_RANGE` blocks, only up to ``head - confirmations + 1``, drops logs flagged
``removed``, deduplicates by ``(transaction hash, log index)`` and delivers in chain order. The
state of an event is reconstructed from the calldata of the transaction that emitted it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

from eth_abi.abi import decode as abi_decode

from perun_core.channel.state import State
from perun_core.interfaces import EventSubscription, Timeout
from perun_core.interfaces.adjudicator import (
    AdjudicatorEvent,
    ConcludedEvent,
    ProgressedEvent,
    RegisteredEvent,
)
from perun_eth import bindings as b
from perun_eth.chain import EthChain
from perun_eth.encoding import hash_state

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
        while not await self.is_elapsed():
            await asyncio.sleep(interval)

    def __repr__(self) -> str:
        return f"BlockTimeout({self._deadline})"


class EthSubscription(EventSubscription):
    """The ``ChannelUpdate`` events of one channel, oldest first after the latest past one.

    Create with :meth:`start`.

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
    ) -> None:
        self._chain = chain
        self._cid = channel_id
        self._known = known_states
        self._queue: asyncio.Queue[AdjudicatorEvent | None] = asyncio.Queue()
        self._seen: set[tuple[bytes, int]] = set()
        self._next_block = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def start(
        cls,
        chain: EthChain,
        channel_id: bytes,
        known_states: Callable[[], list[State]] | None = None,
    ) -> EthSubscription:
        """Subscribe: queue the latest past event (if any), then poll for new ones."""
        sub = cls(chain, channel_id, known_states)
        head = await sub._confirmed_head()
        past = await chain.dispute(channel_id, block=head)
        if past is not None:
            await sub._deliver_latest_before(head)
        sub._next_block = head + 1
        sub._task = asyncio.create_task(sub._poll(), name=f"eth-events-{channel_id.hex()[:8]}")
        return sub

    async def _confirmed_head(self) -> int:
        conf = max(1, self._chain.node.options.confirmations)
        return max(0, await self._chain.node.block_number() - conf + 1)

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
            logs = self._ordered(await self._chain.node.get_logs(self._filter(frm, to)))
            if logs:
                for lg in logs:  # everything up to the latest counts as seen
                    self._seen.add(_log_key(lg))
                ev = await self._event(logs[-1])
                if ev is not None:
                    self._queue.put_nowait(ev)
                return
            to = frm - 1

    @staticmethod
    def _ordered(logs: list[Any]) -> list[Any]:
        live = [lg for lg in logs if not lg.get("removed", False)]
        return sorted(live, key=lambda lg: (int(lg["blockNumber"]), int(lg["logIndex"])))

    async def _poll(self) -> None:
        interval = self._chain.node.options.poll_interval
        try:
            while not self._closed:
                try:
                    head = await self._confirmed_head()
                    while self._next_block <= head and not self._closed:
                        to = min(head, self._next_block + MAX_RANGE - 1)
                        logs = await self._chain.node.get_logs(self._filter(self._next_block, to))
                        for lg in self._ordered(logs):
                            key = _log_key(lg)
                            if key in self._seen:
                                continue
                            self._seen.add(key)
                            ev = await self._event(lg)
                            if ev is not None:
                                self._queue.put_nowait(ev)
                        self._next_block = to + 1
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the node hiccuped: keep watching
                    log.warning("event polling of 0x%s failed: %s", self._cid.hex()[:8], e)
                await asyncio.sleep(interval)
        finally:
            self._queue.put_nowait(None)

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
        if self._closed:
            return None
        ev = await self._queue.get()
        if ev is None:
            self._queue.put_nowait(None)  # keep answering None
        return None if self._closed else ev

    async def close(self) -> None:
        """Stop polling; a pending :meth:`next` returns ``None``."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        else:
            self._queue.put_nowait(None)


def _log_key(lg: Any) -> tuple[bytes, int]:
    return bytes(lg["transactionHash"]), int(lg["logIndex"])
