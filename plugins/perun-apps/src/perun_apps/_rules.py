"""What the apps' rules share: refusals with the channel's context, and the comparison of a
proposed state with the one the rules compute."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any, NoReturn, TypeVar

from perun_core.channel.state import State
from perun_core.errors import AppTransitionError, InvalidAppDataError

T = TypeVar("T")


def refuse(app: str, reason: str, state: State | None = None) -> NoReturn:
    """Raise the :class:`AppTransitionError` of ``app`` with ``reason``."""
    if state is None:
        raise AppTransitionError(f"{app}: {reason}")
    raise AppTransitionError(f"{app}: {reason}", channel_id=state.channel_id, version=state.version)


def decoded(app: str, decode: Callable[[bytes], T], state: State) -> T:
    """``decode(state.data)``; malformed data is a refusal of the transition."""
    try:
        return decode(state.data)
    except InvalidAppDataError as e:
        refuse(app, f"version {state.version}: {e}", state)


def require_same_outcome(app: str, expected: State, got: State) -> None:
    """The proposed state ``got`` must carry the data, balances and final flag the rules
    computed (``expected``); versions and signatures are the channel's business."""
    if got.data != expected.data:
        refuse(app, "the app data is not what the move produces", got)
    if got.is_final != expected.is_final:
        want = "final" if expected.is_final else "not final"
        refuse(app, f"the state must be {want}", got)
    if got.allocation.balances != expected.allocation.balances:
        refuse(app, "the balances are not what the move produces", got)


def load_artifact(name: str) -> dict[str, Any]:
    """The compiled contract ``name`` shipped in ``perun_apps/artifacts`` (built by
    ``node contracts/build.mjs``): ``abi``, ``bytecode``, ``deployedBytecode``, ..."""
    text = resources.files("perun_apps").joinpath("artifacts", f"{name}.json").read_text("utf-8")
    artifact: dict[str, Any] = json.loads(text)
    return artifact
