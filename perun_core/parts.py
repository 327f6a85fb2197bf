"""Typed configuration of the parts a client is built from (buses and persisters).

Every bus and persister class names the options it takes in a ``Config`` class attribute,
a :class:`PartConfig` (a ``msgspec.Struct``) with a default for every optional field, and
builds itself with one signature::

    part = await SomeBus.open(config, account=account, backend=backend)

``config`` may be an instance of the class's ``Config``, a plain mapping (a table of
``perun.toml``) or ``None`` (every default). :func:`load_config` turns a mapping into the
struct and refuses unknown keys and values of the wrong type with a
:class:`~perun_core.errors.ConfigError` naming the part, so a typo in a configuration file
never passes unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

from perun_core.errors import ConfigError, PerunError

__all__ = ["PartConfig", "build_from", "config_fields", "load_config"]


class PartConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the options of a bus or persister (no options: the base itself)."""


C = TypeVar("C", bound=PartConfig)
T = TypeVar("T")


def load_config(config_type: type[C], value: PartConfig | Mapping[str, Any] | None, what: str) -> C:
    """``value`` as a ``config_type``.

    Args:
        config_type: the part's ``Config`` struct.
        value: an instance of it, a mapping of its fields or ``None`` (every default).
        what: the part in messages (``"bus 'tcp'"``).

    Raises:
        ConfigError: a key the part does not know, a required key missing or a value of
            the wrong type; or a struct of another part's ``Config``.
    """
    if value is None:
        value = {}
    if isinstance(value, config_type):
        return value
    if isinstance(value, msgspec.Struct) or not isinstance(value, Mapping):
        raise ConfigError(
            f"{what}: the configuration must be a {config_type.__qualname__} or a mapping, "
            f"not {type(value).__name__}"
        )
    try:
        # strict=False: values written as strings (environment variables) are converted.
        return msgspec.convert(dict(value), config_type, strict=False)
    except msgspec.ValidationError as exc:
        known = ", ".join(config_type.__struct_fields__) or "none"
        raise ConfigError(f"{what}: {exc} (options: {known})") from exc


def config_fields(config: PartConfig) -> dict[str, Any]:
    """The fields of ``config`` as keyword arguments (the default ``open`` passes them to
    the class)."""
    return {name: getattr(config, name) for name in config.__struct_fields__}


def build_from(factory: Callable[..., T], config: PartConfig, what: str, **extra: Any) -> T:
    """``factory(**fields of config, **extra)``; a constructor's ``ValueError`` about an
    option (a size out of range) becomes a :class:`~perun_core.errors.ConfigError`.

    Raises:
        ConfigError: the constructor refused an option.
    """
    try:
        return factory(**config_fields(config), **extra)
    except ValueError as exc:
        if isinstance(exc, PerunError):
            raise
        raise ConfigError(f"{what}: {exc}") from exc
