"""Pure validation of allocations, initial states and updates (see docs/concepts.md).

Every check raises the typed error of the rule it enforces; nothing here does I/O, so the
rules are testable on their own and shared by the client, the sim ledger and other backends.
"""

from __future__ import annotations

from collections.abc import Callable

from perun_core.channel import limits
from perun_core.channel.allocation import Allocation
from perun_core.channel.app import App
from perun_core.channel.params import Params
from perun_core.channel.state import State
from perun_core.errors import (
    ActorMismatchError,
    AppFaultError,
    AppMismatchError,
    AssetsChangedError,
    BalanceOverflowError,
    ChannelIDMismatchError,
    FinalStateError,
    InvalidAllocationError,
    InvalidAppDataError,
    InvalidInitialStateError,
    InvalidUpdateError,
    LockedFundsChangedError,
    NegativeBalanceError,
    TotalsMismatchError,
    VersionError,
)


def next_version(current_version: int, version_floor: int) -> int:
    """The version the next state must carry: above the current one and every burned one."""
    return max(current_version, version_floor) + 1


def check_allocation(
    alloc: Allocation,
    num_parts: int,
    *,
    channel_id: bytes | None = None,
    version: int | None = None,
) -> None:
    """Check that ``alloc`` is well-formed for ``num_parts`` participants (U6, then U7).

    The whole shape is checked before any value, so an allocation breaking both rules
    reports U6 (``InvalidAllocationError``) wherever the faults sit.

    Raises:
        InvalidAllocationError: dimensions, limits, duplicate assets or sub-allocation IDs,
            bad index maps, non-integer amounts.
        NegativeBalanceError: a free or locked amount is negative.
        BalanceOverflowError: an amount or a per-asset total is not below 2**256.
    """

    def malformed(message: str) -> InvalidAllocationError:
        return InvalidAllocationError(message, channel_id=channel_id, version=version)

    _check_balance_rows(alloc, num_parts, malformed)
    _check_suballoc_shapes(alloc, num_parts, channel_id, malformed)
    _check_amounts(alloc, channel_id, version)


def _check_balance_rows(
    alloc: Allocation, num_parts: int, malformed: Callable[[str], InvalidAllocationError]
) -> None:
    """U6 for the assets and the free balances: counts, distinct assets, integers."""
    n_assets = len(alloc.assets)
    if not 1 <= n_assets <= limits.MAX_ASSETS:
        raise malformed(f"{n_assets} assets; 1..{limits.MAX_ASSETS} allowed")
    if len(set(alloc.assets)) != n_assets:
        raise malformed("assets must be pairwise distinct")
    if len(alloc.balances) != n_assets:
        raise malformed(f"{len(alloc.balances)} balance rows for {n_assets} assets")
    for a, row in enumerate(alloc.balances):
        if len(row) != num_parts:
            raise malformed(f"asset {a} has {len(row)} balances for {num_parts} participants")
        for p, b in enumerate(row):
            if not _is_int(b):
                raise malformed(f"balance [{a}][{p}] is not an integer")


def _check_suballoc_shapes(
    alloc: Allocation,
    num_parts: int,
    channel_id: bytes | None,
    malformed: Callable[[str], InvalidAllocationError],
) -> None:
    """U6 for the sub-allocations: count, distinct IDs, balances per asset, index maps."""
    n_assets = len(alloc.assets)
    if len(alloc.locked) > limits.MAX_SUBALLOCS:
        raise malformed(f"more than {limits.MAX_SUBALLOCS} sub-allocations")
    seen: set[bytes] = set()
    for s in alloc.locked:
        if len(s.id) != limits.ID_LEN or s.id in seen or s.id == channel_id:
            raise malformed("sub-allocation IDs must be distinct 32-byte IDs")
        seen.add(s.id)
        if len(s.balances) != n_assets or not all(_is_int(b) for b in s.balances):
            raise malformed("sub-allocation balances must be one integer per asset")
        if (
            not s.index_map
            or not all(_is_int(i) and 0 <= i < num_parts for i in s.index_map)
            or len(set(s.index_map)) != len(s.index_map)
        ):
            raise malformed("a sub-allocation's index map must hold distinct participant indices")


def _check_amounts(alloc: Allocation, cid: bytes | None, ver: int | None) -> None:
    """U7, once the shape is known to be right: no negative amount, every amount and
    per-asset total below 2**256."""
    for a, row in enumerate(alloc.balances):
        for p, b in enumerate(row):
            if b < 0:
                raise NegativeBalanceError(
                    f"balance of participant {p} in asset {a} is {b}", channel_id=cid, version=ver
                )
            if b >= limits.BALANCE_BOUND:
                raise BalanceOverflowError(
                    f"balance of participant {p} in asset {a} is not below 2**256",
                    channel_id=cid,
                    version=ver,
                )
    for s in alloc.locked:
        for b in s.balances:
            if b < 0:
                raise NegativeBalanceError("negative locked balance", channel_id=cid, version=ver)
            if b >= limits.BALANCE_BOUND:
                raise BalanceOverflowError(
                    "locked balance not below 2**256", channel_id=cid, version=ver
                )
    for a, t in enumerate(alloc.totals()):
        if t >= limits.BALANCE_BOUND:
            raise BalanceOverflowError(
                f"total of asset {a} is not below 2**256", channel_id=cid, version=ver
            )


def _check_conserved(
    old_alloc: Allocation,
    new_alloc: Allocation,
    allow_locked_change: bool,
    cid: bytes | None,
    ver: int,
) -> None:
    """An update keeps the assets, each asset's total and (unless allowed) the locked funds."""
    if new_alloc.assets != old_alloc.assets:
        raise AssetsChangedError("assets changed", channel_id=cid, version=ver)
    for a, (o, n) in enumerate(zip(old_alloc.totals(), new_alloc.totals(), strict=True)):
        if o != n:
            raise TotalsMismatchError(
                f"total of asset {a} changed from {o} to {n}",
                asset=a,
                old=o,
                new=n,
                channel_id=cid,
                version=ver,
            )
    if not allow_locked_change and new_alloc.locked != old_alloc.locked:
        raise LockedFundsChangedError("locked funds changed", channel_id=cid, version=ver)


def _is_int(x: object) -> bool:
    # bool is an int subclass, but True is no amount or index.
    return isinstance(x, int) and not isinstance(x, bool)


def _check_app_data(app: App | None, state: State) -> None:
    cid, ver = state.channel_id, state.version
    if len(state.data) > limits.MAX_APP_DATA:
        raise InvalidAppDataError("app data larger than 64 KiB", channel_id=cid, version=ver)
    if app is None:
        if state.data:
            raise InvalidAppDataError(
                "a channel without app carries no data", channel_id=cid, version=ver
            )
        return
    try:
        app.decode_data(state.data)
    except InvalidAppDataError as e:
        e.add_context(channel_id=cid, version=ver)
        raise
    except Exception as e:
        raise InvalidAppDataError(
            f"app data does not decode: {e}", channel_id=cid, version=ver
        ) from e


def check_initial(params: Params, state: State, app: App | None) -> None:
    """Check a version-0 state (raises :class:`InvalidInitialStateError` or a U-rule error)."""
    cid, ver = state.channel_id, state.version
    if state.channel_id != params.id:
        raise InvalidInitialStateError(
            "initial state has another channel ID", channel_id=cid, version=ver
        )
    if state.version != 0:
        raise InvalidInitialStateError(
            f"initial version is {state.version}, not 0", channel_id=cid, version=ver
        )
    if state.is_final:
        raise InvalidInitialStateError(
            "the initial state cannot be final", channel_id=cid, version=ver
        )
    if state.app != params.app:
        raise InvalidInitialStateError(
            "initial state names another app than the params", channel_id=cid, version=ver
        )
    check_allocation(state.allocation, params.num_parts, channel_id=cid, version=ver)
    if state.allocation.locked:
        raise InvalidInitialStateError(
            "the initial state cannot lock funds", channel_id=cid, version=ver
        )
    _check_app_data(app, state)
    if app is not None:
        try:
            app.valid_init(params, state)
        except InvalidUpdateError as e:
            e.add_context(channel_id=cid, version=ver)
            raise
        except Exception as e:
            raise InvalidInitialStateError(
                f"app refused the initial state: {e}", channel_id=cid, version=ver
            ) from e


def check_update(
    params: Params,
    current: State,
    new: State,
    *,
    actor_idx: int,
    expected_actor: int,
    version_floor: int,
    app: App | None,
    allow_locked_change: bool = False,
    progress_at: int | None = None,
) -> None:
    """Check ``new`` as the successor of ``current`` (rules U2-U12; U1 and U13 are the caller's).

    Args:
        params: the channel's params.
        current: the current, fully signed state.
        new: the proposed state.
        actor_idx: the actor index the proposal names.
        expected_actor: the index the actor must have (the sender's, or our own).
        version_floor: the highest burned version (see docs/protocols.md).
        app: the channel's app, or ``None``.
        allow_locked_change: the caller checks the locked funds itself (sub-channel funding
            and settlement updates, which both parties compute exactly; the app rule, which
            governs the channel's own moves, does not apply to them).
        progress_at: for a force update, the ledger time: the app's on-chain rule
            (``valid_progress`` at that time) applies instead of its off-chain one.
    """
    cid, ver = params.id, new.version
    if new.channel_id != params.id:
        raise ChannelIDMismatchError(
            "state belongs to another channel", channel_id=cid, version=ver
        )
    if current.is_final:
        raise FinalStateError("the current state is final", channel_id=cid, version=ver)
    expected = next_version(current.version, version_floor)
    if new.version != expected:
        raise VersionError(
            f"expected version {expected}, got {new.version}",
            expected=expected,
            got=new.version,
            channel_id=cid,
            version=ver,
        )
    if new.app != params.app:
        raise AppMismatchError(
            "state names another app than the channel", channel_id=cid, version=ver
        )
    _check_app_data(app, new)
    check_allocation(new.allocation, params.num_parts, channel_id=cid, version=ver)
    _check_conserved(current.allocation, new.allocation, allow_locked_change, cid, ver)
    if not 0 <= actor_idx < params.num_parts or actor_idx != expected_actor:
        raise ActorMismatchError(
            f"actor index {actor_idx} does not match the proposer ({expected_actor})",
            channel_id=cid,
            version=ver,
        )
    if app is not None and not allow_locked_change:
        try:
            if progress_at is None:
                app.valid_transition(params, current, new, actor_idx)
            else:
                app.valid_progress(params, current, new, actor_idx, progress_at)
        except InvalidUpdateError as e:  # AppTransitionError with the app's reason, usually
            e.add_context(channel_id=cid, version=ver)
            raise
        except Exception as e:
            raise AppFaultError(
                f"app failed: {type(e).__name__}: {e}", channel_id=cid, version=ver
            ) from e
