"""``perun.toml``: which parts a client is built from, and their settings.

::

    [perun]
    backend = "sim"          # chain backend (required)
    bus = "tcp"              # default "local"
    persister = "leveldb"    # default "memory"
    logger = "loguru"        # optional: a plugin that takes over logging
    account = "0x1234..."    # optional: the wallet account to use (text form of the backend)

    [perun.sim]              # settings of each part, under its registered name
    seeds = ["alice"]

    [perun.tcp]
    listen = ["tcp://127.0.0.1:7001"]
    peers = { "0xabcd..." = "tcp://127.0.0.1:7002" }

    [perun.leveldb]
    path = "alice.db"

    [perun.client]           # ClientConfig fields
    update_timeout = 5.0

The table of the chain backend goes to its ``from_config``, a bus's and a persister's to
their ``open`` (each checks it against its typed ``Config``), ``[perun.client]`` becomes a
:class:`~perun_core.client.ClientConfig`, and the whole ``[perun]`` table goes to the
plugins' ``perun_configure`` hook (the logger plugin reads its own table there) when
``logger`` is set; that hook acts on the whole process.
:meth:`Client.from_config <perun_core.client.Client.from_config>` builds a client from it.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from perun_core.errors import ConfigError, PluginNotFoundError

if TYPE_CHECKING:
    from perun_core.client.config import ClientConfig
    from perun_core.interfaces.bus import Bus
    from perun_core.interfaces.chain import ChainBackend
    from perun_core.interfaces.persister import Persister
    from perun_core.interfaces.wallet import Account
    from perun_core.plugins import Plugins

__all__ = ["ConfigSource", "Parts", "PerunConfig", "build_parts", "load_perun_config"]

ConfigSource = str | os.PathLike[str] | Mapping[str, Any]
"""A path of a TOML file, or the parsed document (with a ``perun`` table) or its table."""

_NAMES = ("backend", "bus", "persister", "logger", "account")


@dataclass(frozen=True, slots=True)
class PerunConfig:
    """The ``[perun]`` table of a configuration.

    Attributes:
        backend: the chain backend's registered name.
        bus: the bus's registered name.
        persister: the persister's registered name.
        logger: the logging plugin's name (``None``: the standard library's logging).
        account: the account's address in the backend's text form (``None``: the
            wallet's only account).
        table: the whole ``[perun]`` table (what ``perun_configure`` receives).
        origin: where it was read from, for messages.
    """

    backend: str
    bus: str = "local"
    persister: str = "memory"
    logger: str | None = None
    account: str | None = None
    table: Mapping[str, Any] = field(default_factory=dict)
    origin: str = "<mapping>"

    def settings(self, name: str) -> dict[str, Any]:
        """The ``[perun.<name>]`` table (empty when absent).

        Raises:
            ConfigError: ``perun.<name>`` is not a table.
        """
        value = self.table.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.origin}: perun.{name} must be a table, not {value!r}")
        return dict(value)

    def client_config(self) -> ClientConfig:
        """The ``[perun.client]`` table as a :class:`~perun_core.client.ClientConfig`.

        Raises:
            ConfigError: an unknown key or a value of the wrong type.
        """
        from perun_core.client.config import ClientConfig  # noqa: PLC0415 - the client imports us

        table = self.settings("client")
        known = {f.name for f in dataclasses.fields(ClientConfig)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(
                f"{self.origin}: unknown key(s) in perun.client: {', '.join(unknown)} "
                f"(keys: {', '.join(sorted(known))})"
            )
        try:
            return msgspec.convert(table, ClientConfig, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{self.origin}: perun.client: {exc}") from exc


def load_perun_config(source: ConfigSource) -> PerunConfig:
    """Read a configuration (see the module docstring).

    Args:
        source: a path of a TOML file, a parsed document with a ``perun`` table, or that
            table itself.

    Raises:
        ConfigError: the file cannot be read or is not TOML, the ``perun`` table or
            ``backend`` is missing, or a name is not a string.
    """
    if isinstance(source, Mapping):
        origin = "<mapping>"
        doc: Mapping[str, Any] = source
    else:
        origin = os.fspath(source)
        try:
            doc = tomllib.loads(Path(source).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read the configuration {origin}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{origin} is not valid TOML: {exc}") from exc
    table = doc.get("perun", doc)
    if not isinstance(table, Mapping):
        raise ConfigError(f"{origin}: 'perun' must be a table")
    names: dict[str, str] = {}
    for key in _NAMES:
        value = table.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{origin}: perun.{key} must be a non-empty string, not {value!r}")
        names[key] = value
    if "backend" not in names:
        raise ConfigError(f"{origin}: perun.backend (the chain backend's name) is required")
    return PerunConfig(**names, table=dict(table), origin=origin)


@dataclass(slots=True)
class Parts:
    """What :func:`build_parts` made: a client's parts and the ones it opened itself."""

    account: Account
    backend: ChainBackend
    bus: Bus
    persister: Persister
    client_config: ClientConfig
    owned: list[Bus | Persister | ChainBackend]
    table: Mapping[str, Any] = field(default_factory=dict)
    """The whole ``[perun]`` table (e.g. ``[perun.watchtower]`` for remote watchers)."""

    async def close(self) -> None:
        """Close the parts :func:`build_parts` opened, the last opened first."""
        for part in reversed(self.owned):
            await part.close()


async def build_parts(
    source: ConfigSource,
    *,
    account: Account | None = None,
    backend: ChainBackend | None = None,
    bus: Bus | None = None,
    persister: Persister | None = None,
    plugins: Plugins | None = None,
) -> Parts:
    """The parts of a client as ``source`` configures them; the ones passed in are used
    instead of building them (see :meth:`Client.from_config
    <perun_core.client.Client.from_config>`, which documents the errors).

    On an error, every part opened so far is closed again.
    """
    from perun_core.plugins import load_plugins  # noqa: PLC0415 - loading plugins is on demand

    cfg = load_perun_config(source)
    plugins = plugins if plugins is not None else load_plugins()
    if cfg.logger is not None and cfg.logger not in plugins.names():
        raise PluginNotFoundError("logger plugin", cfg.logger, plugins.names())
    client_config = cfg.client_config()
    if cfg.logger is not None:
        # Process-wide: only when asked for (the perun command does it for --config).
        plugins.configure(cfg.table)
    owned: list[Bus | Persister | ChainBackend] = []
    try:
        if backend is None:
            backend = plugins.chain(cfg.backend).from_config(cfg.settings(cfg.backend))
            owned.append(backend)
        if account is None:
            account = await _account(cfg, backend)
        if bus is None:
            bus = await plugins.buses.open(
                cfg.bus, cfg.settings(cfg.bus), account=account, backend=backend
            )
            owned.append(bus)
        if persister is None:
            persister = await plugins.persisters.open(
                cfg.persister, cfg.settings(cfg.persister), account=account, backend=backend
            )
            owned.append(persister)
    except BaseException:
        for part in reversed(owned):
            await part.close()
        raise
    return Parts(account, backend, bus, persister, client_config, owned, cfg.table)


async def _account(cfg: PerunConfig, backend: ChainBackend) -> Account:
    """``perun.account`` from the backend's wallet, or the wallet's only account."""
    wallet = backend.wallet()
    if cfg.account is not None:
        try:
            address = backend.parse_address(cfg.account)
        except ValueError as exc:
            raise ConfigError(f"{cfg.origin}: perun.account: {exc}") from exc
        try:
            return await wallet.unlock(address)
        except KeyError:
            raise ConfigError(
                f"{cfg.origin}: perun.account {cfg.account} is not in the {cfg.backend} "
                f"wallet; add its key to [perun.{cfg.backend}]"
            ) from None
    held = wallet.accounts()
    if len(held) != 1:
        raise ConfigError(
            f"{cfg.origin}: the {cfg.backend} wallet holds {len(held)} accounts; name the "
            "one to use with perun.account (or pass account=...)"
        )
    return await wallet.unlock(held[0])
