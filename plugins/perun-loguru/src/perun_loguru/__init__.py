"""perun-loguru: the framework's logging, routed to loguru with channel context.

Installed, the plugin routes on every ``load_plugins()`` (which calls ``perun_configure``
with ``{}``); ``plugins.configure(config)`` applies the user's ``[perun]`` table::

    from loguru import logger
    from perun_core import load_plugins

    plugins = load_plugins()
    plugins.configure({"loguru": {"level": "DEBUG"}})
    logger.add("perun.log", format="{time} {level} {extra[channel_id]} v{extra[version]} "
               "{extra[phase]} {message}", filter=lambda r: r["extra"].get("logger"))

Every record from a ``perun.*`` logger carries ``extra`` fields ``channel_id``, ``peer``,
``phase``, ``version`` (``None`` where a message is not about a channel) and ``logger``.
``{"logger": "stdlib"}`` (anything but ``"loguru"``) undoes the routing.
"""

from perun_loguru.routing import (
    DEFAULT_LOGGERS,
    LoguruConfigError,
    LoguruHandler,
    RoutingOptions,
    is_routed,
    options_from_config,
    route,
    unroute,
)

__all__ = [
    "DEFAULT_LOGGERS",
    "LoguruConfigError",
    "LoguruHandler",
    "RoutingOptions",
    "is_routed",
    "options_from_config",
    "route",
    "unroute",
]
