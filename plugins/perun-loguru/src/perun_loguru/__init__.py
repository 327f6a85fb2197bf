"""perun-loguru: the framework's logging, routed to loguru with channel context.

Loading the plugin changes nothing; the routing starts when the application calls
``plugins.configure(config)`` (``perun_configure``), which applies the user's ``[perun]``
table (``{}``: the defaults)::

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

from __future__ import annotations

from typing import TYPE_CHECKING

from perun_core.lazy import lazy_exports

if TYPE_CHECKING:
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
else:
    # Loading the plugin imports this package: loguru is imported on first use.
    __getattr__ = lazy_exports(
        __name__,
        {
            "DEFAULT_LOGGERS": "perun_loguru.routing",
            "LoguruConfigError": "perun_loguru.routing",
            "LoguruHandler": "perun_loguru.routing",
            "RoutingOptions": "perun_loguru.routing",
            "is_routed": "perun_loguru.routing",
            "options_from_config": "perun_loguru.routing",
            "route": "perun_loguru.routing",
            "unroute": "perun_loguru.routing",
        },
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
