"""The tower's durable records: one per watched channel, in a key-value store.

Key ``b"t" + channel_id``; value ``[1, owner, idx, request]``: the format version, the wire
address the channel is charged to, the participant index it acts for, and the accepted
:class:`~perun_core.watcher.tower_wire.WatchRequest` in its wire encoding (params, the fully
signed transaction, the parent). Reading a record back runs the strict wire decoder, so a
damaged record is refused, never half-read (LevelDB and RocksDB check block checksums too).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import msgspec

from perun_core.channel.types import Address
from perun_core.errors import StoreCorruptError
from perun_core.persistence.kv import KeyValueStore
from perun_core.watcher.tower_wire import WatchRequest
from perun_core.wire import codec

PREFIX = b"t"
FORMAT = 1


class _RecordWire(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    format: Annotated[int, msgspec.Meta(ge=FORMAT, le=FORMAT)]
    owner: Annotated[bytes, msgspec.Meta(min_length=1, max_length=64)]
    idx: Annotated[int, msgspec.Meta(ge=0, le=(1 << 16) - 1)]
    request: bytes


_DECODER = msgspec.msgpack.Decoder(_RecordWire)
_ENCODER = msgspec.msgpack.Encoder()


@dataclass(frozen=True, slots=True)
class TowerRecord:
    """One watched channel as stored.

    Attributes:
        owner: the client identity the channel is charged to.
        idx: the participant index the owner acts for.
        request: the accepted request (params, latest fully signed transaction, parent).
    """

    owner: Address
    idx: int
    request: WatchRequest

    @property
    def channel_id(self) -> bytes:
        """The channel's ID."""
        return self.request.params.id

    @property
    def version(self) -> int:
        """The version of the stored state."""
        return self.request.tx.state.version


def encode_record(rec: TowerRecord) -> bytes:
    """The stored bytes of a record (the request's request ID is stored as 0)."""
    req = rec.request
    plain = WatchRequest(0, req.params, req.tx, req.parent, req.participant, req.delegation)
    return _ENCODER.encode(_RecordWire(FORMAT, rec.owner.raw, rec.idx, codec.encode(plain)))


def decode_record(data: bytes, *, where: str | None = None) -> TowerRecord:
    """Inverse of :func:`encode_record`.

    Raises:
        StoreCorruptError: the bytes are not a record this build wrote.
    """
    try:
        w = _DECODER.decode(data)
        req = codec.decode(w.request, max_size=codec.MAX_FRAME_LIMIT)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
        raise StoreCorruptError(f"unreadable watchtower record: {e}", path=where) from None
    if not isinstance(req, WatchRequest):
        raise StoreCorruptError("a watchtower record holds no watch request", path=where)
    return TowerRecord(Address(w.owner), w.idx, req)


class TowerStore:
    """The records of a tower over any :class:`~perun_core.persistence.kv.KeyValueStore`.

    Every write is one atomic batch that has reached the store's durability before
    :meth:`put` returns (LevelDB and RocksDB: fsynced by default), which is when the tower
    acknowledges the state.
    """

    def __init__(self, kv: KeyValueStore) -> None:
        self.kv = kv

    async def put(self, channel_id: bytes, value: bytes) -> None:
        """Store a channel's encoded record (:func:`encode_record`) durably."""
        await self.kv.write_batch({PREFIX + channel_id: value})

    async def delete(self, channel_id: bytes) -> None:
        """Forget a channel."""
        await self.kv.write_batch(deletes=[PREFIX + channel_id])

    async def all(self) -> AsyncIterator[tuple[TowerRecord, int]]:
        """Every record with its stored size, in channel-ID order."""
        async for _key, value in self.kv.iterate(PREFIX):
            yield decode_record(value, where=self.kv.path), len(value)

    async def close(self) -> None:
        """Close the underlying store."""
        await self.kv.close()
