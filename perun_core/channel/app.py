"""Apps: rules that constrain channel transitions (see docs/concepts.md).

A channel without an app (``params.app is None``) accepts every transition that passes the
generic update rules. An app adds a rule checked off-chain on every update (and, for backends
with on-chain apps, in ``progress``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from perun_core.errors import AppTransitionError, InvalidAppDataError, PluginConflictError

if TYPE_CHECKING:
    from perun_core.channel.params import Params
    from perun_core.channel.state import State


class App(ABC):
    """A channel app identified by its AppID.

    Implementations raise :class:`AppTransitionError` (with a reason) to refuse.
    """

    #: the AppID this app is registered under
    app_id: bytes

    def valid_init(self, params: Params, state: State) -> None:  # noqa: B027 - optional hook
        """Check the initial state; the default accepts every initial state."""

    @abstractmethod
    def valid_transition(self, params: Params, frm: State, to: State, actor_idx: int) -> None:
        """Check the transition ``frm -> to`` proposed by participant ``actor_idx``."""

    def decode_data(self, data: bytes) -> object:
        """Decode the app's data bytes (raise :class:`InvalidAppDataError` if malformed)."""
        return data

    def valid_progress(
        self, params: Params, frm: State, to: State, actor_idx: int, now: int
    ) -> None:
        """The on-chain rule of ``progress`` at ledger time ``now`` (seconds).

        Off-chain both parties sign every state, so :meth:`valid_transition` needs no clock;
        a transition forced on chain by one party may (an app contract can read the block
        time). The default is :meth:`valid_transition`; apps with deadlines (a hash-time-lock)
        add their time rules here, exactly as their contract does.
        """
        self.valid_transition(params, frm, to, actor_idx)


class PaymentApp(App):
    """The payment rule: the actor's balances may not grow, nobody else's may shrink."""

    def __init__(self, app_id: bytes) -> None:
        self.app_id = app_id

    def decode_data(self, data: bytes) -> object:
        if data:
            raise InvalidAppDataError("the payment app carries no data")
        return None

    def valid_transition(self, params: Params, frm: State, to: State, actor_idx: int) -> None:
        old_rows, new_rows = frm.allocation.balances, to.allocation.balances
        for a, (old, new) in enumerate(zip(old_rows, new_rows, strict=True)):
            for p, (o, n) in enumerate(zip(old, new, strict=True)):
                if p == actor_idx and n > o:
                    raise AppTransitionError(
                        f"payment app: actor {p} may not increase its balance of asset {a}",
                        channel_id=to.channel_id,
                        version=to.version,
                    )
                if p != actor_idx and n < o:
                    raise AppTransitionError(
                        f"payment app: participant {p}'s balance of asset {a} may not decrease",
                        channel_id=to.channel_id,
                        version=to.version,
                    )


class AppRegistry:
    """Maps AppIDs to apps. One per client; plugins and users register their apps."""

    def __init__(self) -> None:
        self._apps: dict[bytes, App] = {}

    def register(self, app: App) -> None:
        """Add an app (``PluginConflictError`` if another app has the same AppID)."""
        existing = self._apps.get(app.app_id)
        if existing is not None and existing is not app:
            raise PluginConflictError(f"an app with AppID 0x{app.app_id.hex()} is registered")
        self._apps[app.app_id] = app

    def get(self, app_id: bytes) -> App | None:
        """The app registered for ``app_id``, or ``None``."""
        return self._apps.get(app_id)

    def __contains__(self, app_id: object) -> bool:
        return app_id in self._apps

    def __len__(self) -> int:
        return len(self._apps)


@dataclass(frozen=True)
class AppDefinition:
    """An app as a plugin ships it: its name, its off-chain rules and its on-chain parts.

    An app's AppID depends on the chain: the sim ledger derives it from the name, on Ethereum
    it is the address of the deployed app contract. A backend's :meth:`ChainBackend.app_id`
    maps the name to the AppID, and :meth:`rules` builds the off-chain rules bound to it.

    Attributes:
        name: what users select the app by (``client.app_id("tictactoe")``).
        rules: builds the app's off-chain rules (an :class:`App`) for a given AppID.
        on_chain: per backend name, what that backend needs to run the app on chain (the
            Ethereum backend takes a compiled contract artifact: a mapping with ``abi`` and
            ``bytecode``; the sim ledger runs ``rules`` itself and needs no entry).
        summary: one line for ``perun plugins``.
    """

    name: str
    rules: Callable[[bytes], App]
    on_chain: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    summary: str = ""


def bind_apps(
    definitions: Mapping[str, AppDefinition],
    app_id: Callable[[str], bytes | None],
    into: AppRegistry | None = None,
) -> AppRegistry:
    """Register the rules of every app a chain knows (``app_id(name)`` is not ``None``).

    Args:
        definitions: the apps by name (e.g. ``dict(plugins.apps.definitions())``).
        app_id: the chain's name-to-AppID mapping (a backend's :meth:`app_id`).
        into: the registry to add to (default: a new one).

    Returns:
        ``into`` (or the new registry) with every bindable app added.
    """
    registry = into if into is not None else AppRegistry()
    for name, definition in definitions.items():
        aid = app_id(name)
        if aid is not None and aid not in registry:
            registry.register(definition.rules(aid))
    return registry
