"""An in-memory :class:`~perun_core.interfaces.Persister` (registered as ``"memory"``).

Records live in two dicts: channel records keyed by channel ID, and a peer index keyed by peer
wire address. Every value stored is immutable (a frozen :class:`ChannelRecord` built with
``evolve``), so a record handed out by a restorer can never change under its holder.

The store survives ``close()``: a test can close one client and restore a new one from the same
persister object, which is how crash/restore scenarios run without a disk.
"""

from __future__ import annotations

from perun_core.channel.phase import Phase
from perun_core.channel.state import Transaction
from perun_core.channel.types import Address
from perun_core.errors import InvalidStateError, UnknownChannelError, _short
from perun_core.interfaces.persister import ChannelRecord, Persister

__all__ = ["MemoryPersister"]


class MemoryPersister(Persister):
    """Keeps channel records in process memory; nothing survives the process."""

    name = "memory"

    def __init__(self) -> None:
        self._records: dict[bytes, ChannelRecord] = {}
        # peer -> channel IDs shared with it; dict keys keep creation order for restore_peer
        self._peer_index: dict[Address, dict[bytes, None]] = {}

    def _get(self, channel_id: bytes, event: str) -> ChannelRecord:
        try:
            return self._records[channel_id]
        except KeyError:
            raise UnknownChannelError(
                f"memory persister: {event} for channel {_short(channel_id)}, which has no "
                "record; channel_created must be persisted first (or the channel was removed)"
            ) from None

    # --- events -----------------------------------------------------------------------------

    async def channel_created(self, record: ChannelRecord) -> None:
        """Store the full record and index it under each of its peers.

        Raises:
            InvalidStateError: a record of this channel already exists.
        """
        cid = record.channel_id
        if cid in self._records:
            raise InvalidStateError(
                "memory persister: channel_created for a channel that is already stored; "
                "remove it first or restore it instead",
                channel_id=cid,
                rule="persister-duplicate-channel",
            )
        self._records[cid] = record
        for peer in record.peers:
            self._peer_index.setdefault(peer, {})[cid] = None

    async def staged(self, channel_id: bytes, staging: Transaction | None, phase: Phase) -> None:
        """Replace the staging transaction (``None`` discards it) and set the phase."""
        rec = self._get(channel_id, "staged")
        self._records[channel_id] = rec.evolve(staging=staging, phase=phase)

    async def sig_added(self, channel_id: bytes, version: int, idx: int, sig: bytes) -> None:
        """Set participant ``idx``'s signature on the transaction of ``version``.

        The staged transaction is preferred; a signature for the current version (e.g. a
        late one for an already enabled state) goes there.

        Raises:
            UnknownChannelError: no record of the channel.
            InvalidStateError: neither the staged nor the current transaction has
                ``version``, or ``idx`` is not a participant index.
        """
        rec = self._get(channel_id, "sig_added")
        if not 0 <= idx < rec.params.num_parts:
            raise InvalidStateError(
                f"memory persister: sig_added for participant {idx}, but the channel has "
                f"{rec.params.num_parts} participants",
                channel_id=channel_id,
                version=version,
                rule="persister-sig-index",
            )
        if rec.staging is not None and rec.staging.state.version == version:
            rec = rec.evolve(staging=rec.staging.with_sig(idx, sig))
        elif rec.current is not None and rec.current.state.version == version:
            rec = rec.evolve(current=rec.current.with_sig(idx, sig))
        else:
            have = [
                f"{what} v{tx.state.version}"
                for what, tx in (("staged", rec.staging), ("current", rec.current))
                if tx is not None
            ]
            raise InvalidStateError(
                f"memory persister: sig_added for a version that is neither staged nor current "
                f"(stored: {', '.join(have) or 'no transaction'})",
                channel_id=channel_id,
                version=version,
                rule="persister-sig-version",
            )
        self._records[channel_id] = rec

    async def enabled(self, channel_id: bytes, current: Transaction, phase: Phase) -> None:
        """Make ``current`` the current transaction, clear the staging area, set the phase."""
        rec = self._get(channel_id, "enabled")
        self._records[channel_id] = rec.evolve(current=current, staging=None, phase=phase)

    async def phase_changed(
        self, channel_id: bytes, phase: Phase, version_floor: int, needs_sync: bool
    ) -> None:
        """Set the phase, the version floor and the sync flag."""
        rec = self._get(channel_id, "phase_changed")
        self._records[channel_id] = rec.evolve(
            phase=phase, version_floor=version_floor, needs_sync=needs_sync
        )

    async def channel_removed(self, channel_id: bytes) -> None:
        """Delete the record and every peer-index entry of the channel."""
        rec = self._get(channel_id, "channel_removed")
        del self._records[channel_id]
        for peer in rec.peers:
            chans = self._peer_index.get(peer)
            if chans is None:
                continue
            chans.pop(channel_id, None)
            if not chans:
                # an emptied entry would make active_peers report a peer we share nothing with
                del self._peer_index[peer]

    # --- restorer ---------------------------------------------------------------------------

    async def active_peers(self) -> list[Address]:
        """Every peer address with at least one stored channel, sorted by address bytes."""
        return sorted(self._peer_index)

    async def restore_peer(self, peer: Address) -> list[ChannelRecord]:
        """The records shared with ``peer``, in the order the channels were created."""
        return [self._records[cid] for cid in self._peer_index.get(peer, {})]

    async def restore_channel(self, channel_id: bytes) -> ChannelRecord | None:
        """The record of ``channel_id``, or ``None``."""
        return self._records.get(channel_id)

    # --- introspection ----------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of stored channels."""
        return len(self._records)

    def __repr__(self) -> str:
        return f"MemoryPersister({len(self._records)} channels)"
