"""The :class:`~perun_core.interfaces.Persister`, implemented once over a :class:`KeyValueStore`.

Every persistence event is one atomic :meth:`KeyValueStore.write_batch` (after a few point
reads), so a crash at any instant leaves each channel exactly as one of the events left it.
The memory, LevelDB and RocksDB persisters are this class over different stores.

Key schema (version 1; ``cid`` is the 32-byte channel ID, ``u64`` big-endian)::

    "v"                              schema marker b"perun-kv/1"
    "n"                              u64: next creation sequence number
    "c" cid "m"   meta               u64 seq ‖ encode_record(record without current/staging)
    "c" cid "h"   head               struct ">BBBHQ": format 1, phase, needs_sync,
                                     number of participants, version floor
    "c" cid "t"   current tx         encode_transaction(current)     (absent: None)
    "c" cid "s"   staging tx         encode_transaction(staging)     (absent: None)
    "p" len(peer) peer seq cid       peer index entry, empty value

Why this shape:

- The immutable part of a record (params, idx, peers, parent) is written once; the hot events
  rewrite only what changed: ``phase_changed`` a 14-byte head, ``staged``/``enabled`` one
  transaction plus the head, ``sig_added`` one transaction.
- The head carries the participant count so ``sig_added`` and every existence check need only
  this tiny value, never the record.
- Every key belongs to exactly one channel (the peer index includes the channel ID), so
  concurrent events of different channels never write the same key, and ``channel_removed``
  deletes a fixed, known set of keys without scanning.
- The peer index is ordered by (peer, creation sequence): ``restore_peer`` lists a peer's
  channels in creation order with one range scan, and ``active_peers`` skips from one peer to
  the next (one short scan per peer, not per channel). The length byte keeps a peer's entries
  apart from those of a longer address that starts with the same bytes.

Values use the versioned wire codec (:mod:`perun_core.wire.codec`), so a stored record
round-trips exactly and an unreadable value is reported as :class:`StoreCorruptError`.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Final

from perun_core.channel import limits
from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.channel.types import Address
from perun_core.errors import (
    InvalidStateError,
    MalformedMessageError,
    StoreCorruptError,
    UnknownChannelError,
    _short,
)
from perun_core.interfaces.persister import ChannelRecord, Persister
from perun_core.persistence.kv import KeyValueStore, prefix_end
from perun_core.wire.codec import (
    decode_record,
    decode_transaction,
    encode_record,
    encode_transaction,
)

__all__ = ["SCHEMA", "KVPersister"]

SCHEMA: Final = b"perun-kv/1"
"""Value of the ``"v"`` key: the key schema this module reads and writes."""

_K_SCHEMA: Final = b"v"
_K_SEQ: Final = b"n"
_HEAD: Final = struct.Struct(">BBBHQ")
_HEAD_FORMAT: Final = 1
_HEAD_CACHE: Final = 4096
"""Channels whose head a persister keeps decoded (the most recently written ones)."""
_SEQ: Final = struct.Struct(">Q")


def _meta_key(cid: bytes) -> bytes:
    return b"c" + cid + b"m"


def _head_key(cid: bytes) -> bytes:
    return b"c" + cid + b"h"


def _current_key(cid: bytes) -> bytes:
    return b"c" + cid + b"t"


def _staging_key(cid: bytes) -> bytes:
    return b"c" + cid + b"s"


def _peer_prefix(peer: Address) -> bytes:
    raw = peer.raw
    return b"p" + bytes([len(raw)]) + raw


def _peer_key(peer: Address, seq: int, cid: bytes) -> bytes:
    return _peer_prefix(peer) + _SEQ.pack(seq) + cid


class _Head:
    """The decoded head value of one channel."""

    __slots__ = ("floor", "needs_sync", "num_parts", "phase")

    def __init__(self, phase: Phase, needs_sync: bool, num_parts: int, floor: int) -> None:
        self.phase = phase
        self.needs_sync = needs_sync
        self.num_parts = num_parts
        self.floor = floor

    def pack(self) -> bytes:
        return _HEAD.pack(
            _HEAD_FORMAT, int(self.phase), self.needs_sync, self.num_parts, self.floor
        )


class KVPersister(Persister):
    """A :class:`Persister` over any :class:`KeyValueStore` (schema in the module docstring).

    Calls for one channel must not overlap (the client serializes them); calls for different
    channels may. One ``KVPersister`` owns its store: two persisters over the same store would
    hand out the same creation sequence numbers.

    Args:
        store: where the keys go; :meth:`close` closes it.
        name: the persister's name in messages (defaults to the store's name).
    """

    def __init__(self, store: KeyValueStore, *, name: str | None = None) -> None:
        self.store = store
        self.name = name or store.name
        self._next_seq: int | None = None  # loaded on first use
        self._has_schema = False
        self._init_lock = asyncio.Lock()
        # The staged transaction of channels mid-update, as last written: sig_added then needs
        # no read and decode. Entries live from staged() to enabled()/discard, so the cache is
        # bounded by the channels mid-update, and any failed write drops the entry (re-read).
        self._staging: dict[bytes, Transaction] = {}
        # The heads of the channels written last, as stored: an update event then needs no
        # read and decode of the head. Written through after each successful batch and
        # dropped before every write (a failed write leaves no entry, so the next event
        # reads the store); bounded, oldest entries go first.
        self._heads: dict[bytes, _Head] = {}

    # --- helpers ----------------------------------------------------------------------------

    def _where(self) -> str:
        return f" in {self.store.path}" if self.store.path else ""

    def _corrupt(self, key: bytes, why: str) -> StoreCorruptError:
        return StoreCorruptError(
            f"{self.name} persister: the value of key {key[:48].hex()}{self._where()} cannot "
            f"be read ({why}). The store is damaged or was written by other software; restore "
            "it from a backup or point the client at another path.",
            path=self.store.path,
        )

    async def _ensure_ready(self) -> int:
        """Check the schema marker and load the sequence counter (once)."""
        if self._next_seq is not None:
            return self._next_seq
        async with self._init_lock:
            if self._next_seq is None:
                marker = await self.store.get(_K_SCHEMA)
                if marker is not None and marker != SCHEMA:
                    raise StoreCorruptError(
                        f"{self.name} persister: the store{self._where()} uses key schema "
                        f"{marker[:32]!r}, this version reads {SCHEMA!r}. Open it with the "
                        "perun-py version that wrote it, or use another path.",
                        path=self.store.path,
                    )
                self._has_schema = marker is not None
                raw = await self.store.get(_K_SEQ)
                if raw is None:
                    self._next_seq = 0
                elif len(raw) != _SEQ.size:
                    raise self._corrupt(_K_SEQ, "not a sequence number")
                else:
                    (self._next_seq,) = _SEQ.unpack(raw)
        return self._next_seq

    def _unknown(self, cid: bytes, event: str) -> UnknownChannelError:
        return UnknownChannelError(
            f"{self.name} persister: {event} for channel {_short(cid)}, which has no "
            "record; channel_created must be persisted first (or the channel was removed)"
        )

    async def _head(self, cid: bytes, event: str) -> _Head:
        """The channel's head, to change and write back (a copy: the caller mutates it).

        Drops the cached entry: the caller stores it again with :meth:`_cache_head` once
        its write succeeded.
        """
        cached = self._heads.pop(cid, None)
        if cached is not None:
            return cached
        raw = await self.store.get(_head_key(cid))
        if raw is None:
            raise self._unknown(cid, event)
        return self._decode_head(cid, raw)

    def _cache_head(self, cid: bytes, head: _Head) -> None:
        heads = self._heads
        heads[cid] = head
        if len(heads) > _HEAD_CACHE:
            del heads[next(iter(heads))]

    def _decode_head(self, cid: bytes, raw: bytes) -> _Head:
        key = _head_key(cid)
        try:
            fmt, phase, needs_sync, num_parts, floor = _HEAD.unpack(raw)
            if fmt != _HEAD_FORMAT or needs_sync > 1:
                raise ValueError(f"head format {fmt}")
            return _Head(Phase(phase), bool(needs_sync), num_parts, floor)
        except (struct.error, ValueError) as e:
            raise self._corrupt(key, str(e)) from None

    async def _tx(self, key: bytes) -> Transaction | None:
        raw = await self.store.get(key)
        if raw is None:
            return None
        try:
            return decode_transaction(raw)
        except MalformedMessageError as e:
            raise self._corrupt(key, str(e)) from None

    @staticmethod
    def _check_floor(cid: bytes, version_floor: int) -> None:
        if (
            isinstance(version_floor, bool)
            or not isinstance(version_floor, int)
            or not 0 <= version_floor < limits.VERSION_BOUND
        ):
            raise InvalidStateError(
                f"version floor {version_floor!r} is not a version (0 <= floor < 2**64)",
                channel_id=cid,
                rule="persister-version-floor",
            )

    @staticmethod
    def _check_phase(cid: bytes, phase: object) -> Phase:
        if not isinstance(phase, Phase):
            raise InvalidStateError(
                f"phase {phase!r} is not a Phase", channel_id=cid, rule="persister-phase"
            )
        return phase

    # --- events -----------------------------------------------------------------------------

    async def channel_created(self, record: ChannelRecord) -> None:
        """Store the full record and index it under each of its peers.

        Raises:
            InvalidStateError: a record of this channel already exists, or a field is not
                storable (phase, version floor).
            MalformedMessageError: the record does not encode (a field breaks a wire limit).
        """
        cid = record.channel_id
        self._check_phase(cid, record.phase)
        self._check_floor(cid, record.version_floor)
        await self._ensure_ready()
        if await self.store.get(_head_key(cid)) is not None:
            raise InvalidStateError(
                f"{self.name} persister: channel_created for a channel that is already "
                "stored; remove it first or restore it instead",
                channel_id=cid,
                rule="persister-duplicate-channel",
            )
        # Encode everything before taking a sequence number: a bad record changes nothing.
        meta = encode_record(record.evolve(current=None, staging=None))
        puts: dict[bytes, bytes] = {
            _head_key(cid): _Head(
                record.phase, record.needs_sync, record.params.num_parts, record.version_floor
            ).pack()
        }
        if record.current is not None:
            puts[_current_key(cid)] = encode_transaction(record.current)
        if record.staging is not None:
            puts[_staging_key(cid)] = encode_transaction(record.staging)
        # No await between taking the number and queueing the batch, so batches carrying
        # "n" reach the store in increasing order.
        seq = self._next_seq
        assert seq is not None
        self._next_seq = seq + 1
        puts[_meta_key(cid)] = _SEQ.pack(seq) + meta
        puts[_K_SEQ] = _SEQ.pack(seq + 1)
        if not self._has_schema:
            puts[_K_SCHEMA] = SCHEMA
        for peer in record.peers:
            puts[_peer_key(peer, seq, cid)] = b""
        await self.store.write_batch(puts)
        self._has_schema = True

    async def staged(self, channel_id: bytes, staging: Transaction | None, phase: Phase) -> None:
        """Replace the staging transaction (``None`` discards it) and set the phase.

        Raises:
            UnknownChannelError: no record of the channel.
        """
        head = await self._head(channel_id, "staged")
        head.phase = self._check_phase(channel_id, phase)
        puts = {_head_key(channel_id): head.pack()}
        self._staging.pop(channel_id, None)
        if staging is None:
            await self.store.write_batch(puts, (_staging_key(channel_id),))
        else:
            puts[_staging_key(channel_id)] = encode_transaction(staging)
            await self.store.write_batch(puts)
            self._staging[channel_id] = staging
        self._cache_head(channel_id, head)

    async def sig_added(self, channel_id: bytes, version: int, idx: int, sig: bytes) -> None:
        """Set participant ``idx``'s signature on the transaction of ``version``.

        The staged transaction is preferred; a signature for the current version (e.g. a
        late one for an already enabled state) goes there.

        Raises:
            UnknownChannelError: no record of the channel.
            InvalidStateError: neither the staged nor the current transaction has
                ``version``, or ``idx`` is not a participant index.
        """
        head = await self._head(channel_id, "sig_added")
        self._cache_head(channel_id, head)  # read only
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < head.num_parts:
            raise InvalidStateError(
                f"{self.name} persister: sig_added for participant {idx!r}, but the channel "
                f"has {head.num_parts} participants",
                channel_id=channel_id,
                version=version,
                rule="persister-sig-index",
            )
        have: list[str] = []
        for what, key in (
            ("staged", _staging_key(channel_id)),
            ("current", _current_key(channel_id)),
        ):
            staged = what == "staged"
            tx = self._staging.get(channel_id) if staged else None
            if tx is None:
                tx = await self._tx(key)
                if tx is None:
                    continue
            if tx.state.version == version:
                if idx >= len(tx.sigs):
                    raise self._corrupt(key, f"{len(tx.sigs)} signature slots")
                signed = tx.with_sig(idx, sig)
                encoded = encode_transaction(signed)
                self._staging.pop(channel_id, None)
                await self.store.write_batch({key: encoded})
                if staged:
                    self._staging[channel_id] = signed
                return
            have.append(f"{what} v{tx.state.version}")
        raise InvalidStateError(
            f"{self.name} persister: sig_added for a version that is neither staged nor "
            f"current (stored: {', '.join(have) or 'no transaction'})",
            channel_id=channel_id,
            version=version,
            rule="persister-sig-version",
        )

    async def enabled(self, channel_id: bytes, current: Transaction, phase: Phase) -> None:
        """Make ``current`` the current transaction, clear the staging area, set the phase.

        Raises:
            UnknownChannelError: no record of the channel.
        """
        head = await self._head(channel_id, "enabled")
        head.phase = self._check_phase(channel_id, phase)
        self._staging.pop(channel_id, None)
        await self.store.write_batch(
            {
                _head_key(channel_id): head.pack(),
                _current_key(channel_id): encode_transaction(current),
            },
            (_staging_key(channel_id),),
        )
        self._cache_head(channel_id, head)

    async def phase_changed(
        self, channel_id: bytes, phase: Phase, version_floor: int, needs_sync: bool
    ) -> None:
        """Set the phase, the version floor and the sync flag.

        Raises:
            UnknownChannelError: no record of the channel.
            InvalidStateError: the floor is not a version.
        """
        head = await self._head(channel_id, "phase_changed")
        head.phase = self._check_phase(channel_id, phase)
        self._check_floor(channel_id, version_floor)
        head.floor = version_floor
        head.needs_sync = bool(needs_sync)
        await self.store.write_batch({_head_key(channel_id): head.pack()})
        self._cache_head(channel_id, head)

    async def channel_removed(self, channel_id: bytes) -> None:
        """Delete every key of the channel and its peer-index entries.

        Raises:
            UnknownChannelError: no record of the channel.
        """
        raw = await self.store.get(_meta_key(channel_id))
        if raw is None:
            raise self._unknown(channel_id, "channel_removed")
        seq, rec = self._decode_meta(channel_id, raw)
        self._staging.pop(channel_id, None)
        self._heads.pop(channel_id, None)
        deletes = [
            _meta_key(channel_id),
            _head_key(channel_id),
            _current_key(channel_id),
            _staging_key(channel_id),
        ]
        deletes += [_peer_key(peer, seq, channel_id) for peer in rec.peers]
        await self.store.write_batch((), deletes)

    # --- restorer ---------------------------------------------------------------------------

    def _decode_meta(self, cid: bytes, raw: bytes) -> tuple[int, ChannelRecord]:
        try:
            (seq,) = _SEQ.unpack_from(raw)
            return seq, decode_record(memoryview(raw)[_SEQ.size :])
        except (struct.error, MalformedMessageError) as e:
            raise self._corrupt(_meta_key(cid), str(e)) from None

    async def active_peers(self) -> list[Address]:
        """Every peer address with at least one stored channel, sorted by address bytes.

        Raises:
            StoreCorruptError: a stored value cannot be read, or the store uses another schema.
        """
        await self._ensure_ready()
        peers: list[Address] = []
        start: bytes | None = b"p"
        while start is not None:
            first = None
            async for kv in self.store.iterate(b"p", start=start, limit=1):
                first = kv
            if first is None:
                break
            key = first[0]
            n = key[1] if len(key) > 1 else 0
            if not 1 <= n <= len(key) - 2:
                raise self._corrupt(key, "malformed peer-index key")
            peers.append(Address(key[2 : 2 + n]))
            start = prefix_end(key[: 2 + n])  # skip the rest of this peer's entries
        return sorted(peers)

    async def restore_peer(self, peer: Address) -> list[ChannelRecord]:
        """The records shared with ``peer``, in the order the channels were created.

        Raises:
            StoreCorruptError: a stored value cannot be read, or the store uses another schema.
        """
        await self._ensure_ready()
        prefix = _peer_prefix(peer)
        cut = len(prefix) + _SEQ.size
        cids = [key[cut:] async for key, _ in self.store.iterate(prefix)]
        records = []
        for cid in cids:
            rec = await self.restore_channel(cid)
            if rec is None:
                raise self._corrupt(prefix + cid, "peer-index entry of a channel with no record")
            records.append(rec)
        return records

    async def restore_channel(self, channel_id: bytes) -> ChannelRecord | None:
        """The record of ``channel_id``, or ``None``.

        Raises:
            StoreCorruptError: a stored value cannot be read, or the store uses another schema.
        """
        await self._ensure_ready()
        raw = await self.store.get(_meta_key(channel_id))
        if raw is None:
            return None
        _, rec = self._decode_meta(channel_id, raw)
        raw_head = await self.store.get(_head_key(channel_id))
        if raw_head is None:
            raise self._corrupt(_head_key(channel_id), "missing while the channel's meta exists")
        head = self._decode_head(channel_id, raw_head)
        return rec.evolve(
            phase=head.phase,
            version_floor=head.floor,
            needs_sync=head.needs_sync,
            current=await self._tx(_current_key(channel_id)),
            staging=await self._tx(_staging_key(channel_id)),
        )

    async def close(self) -> None:
        """Close the store (durable stores flush and release their lock)."""
        await self.store.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r})"
