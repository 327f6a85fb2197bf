"""What the tower checks before it accepts a state (pure: no I/O, no store).

The tower registers only states it checked here, and it checks what the adjudicator would
check of a registration: the params match the channel ID, the state belongs to the channel
and carries a valid signature of every participant. So a hostile client cannot make it spend
gas on a registration the ledger refuses, and it never holds a state that was not signed by
both parties. The requester must be a participant (or act for one with a delegation the
participant signed), and versions only increase.
"""

from __future__ import annotations

from perun_core.channel.types import Address
from perun_core.errors import (
    InvalidWatchStateError,
    MalformedSignatureError,
    NotAParticipantError,
    StaleWatchStateError,
    UnknownWatchedChannelError,
)
from perun_core.interfaces.chain import ChainBackend
from perun_core.watcher.tower_wire import WatchRequest, delegation_message


def check_request(
    backend: ChainBackend,
    tower: Address,
    sender: Address,
    req: WatchRequest,
    held: int,
    *,
    parent_known: bool = True,
) -> int:
    """Check a watch request; returns the participant index the sender acts for.

    Cheap checks run first; signatures last (they cost the most).

    Args:
        backend: the tower's chain backend (IDs and signatures).
        tower: the tower's own wire address (delegations are bound to it).
        sender: the authenticated wire address the request came from.
        req: the request.
        held: the version the tower holds for the channel (-1: none).
        parent_known: whether the tower watches ``req.parent`` (sub-channels only).

    Raises:
        InvalidWatchStateError: the state would not be accepted by the adjudicator.
        NotAParticipantError: the sender is neither a participant nor authorized by one.
        StaleWatchStateError: the tower holds this version or a newer one.
        UnknownWatchedChannelError: a sub-channel whose parent the tower does not watch.
    """
    _check_shape(backend, req, parent_known=parent_known)
    idx = _check_requester(backend, tower, sender, req)
    st = req.tx.state
    if st.version <= held:
        raise StaleWatchStateError(
            f"the tower holds v{held}; v{st.version} is not newer", channel_id=req.params.id
        )
    _check_signatures(backend, req)
    return idx


def _check_shape(backend: ChainBackend, req: WatchRequest, *, parent_known: bool) -> None:
    """The params, the ID and the state's form, as the adjudicator checks them."""
    p, st = req.params, req.tx.state
    cid = p.id
    if p.backend != backend.name:
        raise InvalidWatchStateError(
            f"the channel is on backend {p.backend!r}; this tower watches {backend.name!r}",
            channel_id=cid,
        )
    if backend.channel_id(p) != cid:
        raise InvalidWatchStateError("the params do not hash to the channel ID", channel_id=cid)
    if st.channel_id != cid:
        raise InvalidWatchStateError("the state belongs to another channel", channel_id=cid)
    if req.parent is None and not p.ledger_channel:
        raise InvalidWatchStateError(
            "a sub- or virtual channel needs its parent's ID", channel_id=cid
        )
    if req.parent is not None:
        if p.ledger_channel:
            raise InvalidWatchStateError("a ledger channel has no parent", channel_id=cid)
        if not parent_known:
            raise UnknownWatchedChannelError(
                f"the parent 0x{req.parent.hex()[:12]} is not watched here; hand it first",
                channel_id=cid,
            )
    if st.app != p.app:
        raise InvalidWatchStateError("the state's app is not the channel's", channel_id=cid)
    n = len(p.participants)
    if any(len(row) != n for row in st.balances):
        raise InvalidWatchStateError(
            f"the balances do not have one entry per participant ({n})", channel_id=cid
        )


def _check_requester(
    backend: ChainBackend, tower: Address, sender: Address, req: WatchRequest
) -> int:
    """The participant index the sender acts for (itself, or by a valid delegation)."""
    p = req.params
    who = sender if req.participant is None else req.participant
    if who not in p.participants:
        raise NotAParticipantError(f"{who} is not a participant of the channel", channel_id=p.id)
    if req.participant is not None and req.participant != sender:
        try:
            ok = backend.verify_signature(who, delegation_message(tower, sender), req.delegation)
        except (MalformedSignatureError, ValueError):
            ok = False
        if not ok:
            raise NotAParticipantError(
                f"{sender} presents no valid delegation of participant {who}", channel_id=p.id
            )
    return p.participants.index(who)


def _check_signatures(backend: ChainBackend, req: WatchRequest) -> None:
    """Every participant signed the state (the check that costs the most)."""
    p, tx = req.params, req.tx
    st, cid, n = tx.state, p.id, len(p.participants)
    if len(tx.sigs) != n:
        raise InvalidWatchStateError(
            f"{len(tx.sigs)} signatures for {n} participants", channel_id=cid
        )
    for i, (addr, sig) in enumerate(zip(p.participants, tx.sigs, strict=True)):
        if sig is None:
            raise InvalidWatchStateError(
                f"participant {i} has not signed v{st.version}", channel_id=cid
            )
        try:
            ok = backend.verify_state(addr, st, sig)
        except (MalformedSignatureError, ValueError):
            ok = False
        if not ok:
            raise InvalidWatchStateError(
                f"participant {i}'s signature on v{st.version} does not verify", channel_id=cid
            )
